//! The load generator: a fixed number of keep-alive HTTP/1.1 connections to
//! 127.0.0.1, each sending requests back to back for a bounded time, with
//! latencies recorded in an HDR histogram. Redirects are never followed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpStream;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path and query.
    pub path: String,
    /// JSON body for POST.
    pub body: Option<String>,
    /// Statuses that count as success.
    pub expect: &'static [u16],
}

/// Picks the next request; called per request with a per-connection RNG.
pub type Picker = Arc<dyn Fn(&mut SmallRng) -> Call + Send + Sync>;

/// What one measured interval produced.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// Connections held open.
    pub connections: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Requests answered with an expected status.
    pub ok: u64,
    /// Failures by kind (`status 500`, `connect`, `io`, …).
    pub errors: BTreeMap<String, u64>,
    /// Successful requests per second.
    pub throughput: f64,
    /// Latency percentiles in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
}

impl Measurement {
    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

struct ConnectionResult {
    histogram: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

/// Holds `connections` connections to `address` for `duration`, sending what
/// `picker` chooses. Everything stops by itself when the time is up.
pub async fn run(
    address: SocketAddr,
    connections: usize,
    duration: Duration,
    picker: Picker,
) -> Measurement {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for index in 0..connections {
        let stop = stop.clone();
        let picker = picker.clone();
        tasks.push(tokio::spawn(drive_connection(
            address,
            index as u64,
            stop,
            picker,
        )));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Release);
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut ok = 0;
    let mut errors = BTreeMap::new();
    for task in tasks {
        // A task that does not finish within a few seconds of the stop is stuck
        // on a dead connection; count it and move on.
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(result)) => {
                histogram.add(&result.histogram).expect("same bounds");
                ok += result.ok;
                for (kind, n) in result.errors {
                    *errors.entry(kind).or_default() += n;
                }
            }
            _ => *errors.entry("stuck connection".to_owned()).or_default() += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Measurement {
        connections,
        seconds,
        ok,
        errors,
        throughput: ok as f64 / seconds,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
    }
}

async fn drive_connection(
    address: SocketAddr,
    seed: u64,
    stop: Arc<AtomicBool>,
    picker: Picker,
) -> ConnectionResult {
    let mut result = ConnectionResult {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        ok: 0,
        errors: BTreeMap::new(),
    };
    let mut rng =
        SmallRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ rand::random::<u64>());
    let fail = |result: &mut ConnectionResult, kind: String| {
        *result.errors.entry(kind).or_default() += 1;
    };
    'reconnect: while !stop.load(Ordering::Acquire) {
        let stream = match TcpStream::connect(address).await {
            Ok(stream) => stream,
            Err(_) => {
                fail(&mut result, "connect".into());
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            match hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
            {
                Ok(pair) => pair,
                Err(_) => {
                    fail(&mut result, "handshake".into());
                    continue;
                }
            };
        tokio::spawn(async move {
            let _ = connection.await;
        });
        while !stop.load(Ordering::Acquire) {
            let call = picker(&mut rng);
            let mut builder = Request::builder()
                .method(call.method)
                .uri(&call.path)
                .header("host", "127.0.0.1")
                .header("user-agent", "kadi-loadtest");
            let body = match call.body {
                Some(body) => {
                    builder = builder.header("content-type", "application/json");
                    Full::new(Bytes::from(body))
                }
                None => Full::new(Bytes::new()),
            };
            let request = builder.body(body).expect("valid request");
            if sender.ready().await.is_err() {
                fail(&mut result, "connection closed".into());
                continue 'reconnect;
            }
            let sent = Instant::now();
            match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if response.into_body().collect().await.is_err() {
                        fail(&mut result, "body".into());
                        continue 'reconnect;
                    }
                    let micros = sent.elapsed().as_micros().max(1) as u64;
                    if call.expect.contains(&status) {
                        result.ok += 1;
                        let _ = result.histogram.record(micros);
                    } else {
                        fail(&mut result, format!("status {status}"));
                    }
                }
                Err(_) => {
                    fail(&mut result, "io".into());
                    continue 'reconnect;
                }
            }
        }
    }
    result
}

/// A picker that sends one of `codes` as a redirect, uniformly.
pub fn redirects(codes: Arc<Vec<String>>) -> Picker {
    Arc::new(move |rng: &mut SmallRng| Call {
        method: "GET",
        path: format!("/{}", codes[rng.random_range(0..codes.len())]),
        body: None,
        expect: &[301, 302, 307, 308],
    })
}
