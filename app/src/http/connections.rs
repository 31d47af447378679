//! Accepts TCP connections and serves the public service on them with hyper, with the
//! limits that keep slow or idle clients from holding connections: a deadline
//! for request headers (which is also the keep-alive idle timeout), a deadline
//! for request bodies, and bounded header sizes. Shutdown is graceful.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::time::Sleep;

use super::public::PublicService;

/// Bytes of request line and headers an HTTP/1 client may send (hyper's
/// smallest read buffer is 8 KiB). Real requests need well under 8 KiB; this
/// leaves room for long cookies or tokens and refuses header floods.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Headers one request may carry; browsers send about 20.
const MAX_HEADERS: usize = 64;

/// Seconds an HTTP/1 client gets to send a whole request head, and that an
/// idle keep-alive connection stays open: long enough for any real client on
/// a slow network, short enough that a slow-loris client holds a connection
/// for no more than this.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds a client gets to send a whole request body once its head arrived:
/// the largest body (a 16 MiB CSV upload) still fits at about 300 KiB/s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How often an HTTP/2 connection is pinged, and how long an answer may take
/// before the connection counts as dead.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Pause after an accept error such as running out of file descriptors, so
/// that the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time to send a request head; also how long an idle HTTP/1 keep-alive
    /// connection stays open.
    pub header_read_timeout: Duration,
    /// Time to send a request body, from the end of its head.
    pub body_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
        }
    }
}

/// Serves `public` on `listener` until `shutdown` resolves, then stops
/// accepting, lets every open connection finish its requests and returns once
/// all are closed. Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    public: PublicService,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let builder = connection_builder(limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    pause_after_accept_error(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Redirects are small responses: send them without Nagle's delay.
        let _ = stream.set_nodelay(true);
        let service = connection_service(public.clone(), peer, limits.body_read_timeout);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "Connection closed with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn connection_builder(limits: ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Limitation: hyper's header timer also runs while an HTTP/1 connection
    // waits for its next request, so the idle keep-alive timeout is the header
    // timeout. Behind a proxy that keeps upstream connections open longer, the
    // flag has to be raised above the proxy's idle timeout, which lets a slow
    // client hold a connection that long; such a proxy buffers headers itself.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(HTTP2_KEEP_ALIVE)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE);
    builder
}

/// The hyper service of one connection: the public service, with the peer
/// address and a deadline on the request body.
fn connection_service(
    public: PublicService,
    peer: SocketAddr,
    body_read_timeout: Duration,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let public = public.clone();
        async move {
            if public.takes(&request) {
                let (parts, _) = request.into_parts();
                return Ok(public.redirect(parts, peer).await);
            }
            let request = request.map(|body| {
                if hyper::body::Body::is_end_stream(&body) {
                    Body::new(body)
                } else {
                    Body::new(DeadlineBody::new(body, body_read_timeout))
                }
            });
            Ok(public.route(request, peer).await)
        }
    })
}

async fn pause_after_accept_error(error: std::io::Error) {
    use std::io::ErrorKind;
    // A client that gave up between connect and accept is no server trouble.
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(error = %error, "Cannot accept connections");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}

/// Failures of reading a request body.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The connection failed while the body was read.
    #[error("cannot read the request body")]
    Read(#[source] hyper::Error),
    /// The body did not arrive in time.
    #[error("request body took too long")]
    TimedOut,
}

/// A request body that fails once its deadline passes, so that a client
/// dripping a body byte by byte cannot hold a handler and a connection.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(BodyError::Read)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyError::TimedOut)));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
