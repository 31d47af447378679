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
    /// What the request is, for latency by kind: `redirect`, `create`, `read`.
    pub kind: &'static str,
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
    /// Latency of each kind of request, when a scenario mixes kinds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_kind: Vec<KindLatency>,
}

/// The latency of one kind of request within a measurement.
#[derive(Debug, Clone, Serialize)]
pub struct KindLatency {
    /// `redirect`, `create`, `read`, …
    pub kind: String,
    /// Requests of this kind answered with an expected status.
    pub ok: u64,
    /// Median, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
}

/// Microseconds from 1 µs to a minute, three significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Histograms by kind of request, in the order the kinds first came;
/// scenarios have at most a handful of kinds, so a list beats a map.
type ByKind = Vec<(&'static str, Histogram<u64>)>;

/// The histogram of `kind` in `by_kind`, added empty when it is new.
fn histogram_of<'a>(by_kind: &'a mut ByKind, kind: &'static str) -> &'a mut Histogram<u64> {
    let at = match by_kind.iter().position(|(k, _)| *k == kind) {
        Some(at) => at,
        None => {
            by_kind.push((kind, new_histogram()));
            by_kind.len() - 1
        }
    };
    &mut by_kind[at].1
}

/// Latency percentiles of `histogram` in milliseconds: p50, p90, p99, p99.9.
fn percentiles(histogram: &Histogram<u64>) -> [f64; 4] {
    [0.5, 0.9, 0.99, 0.999].map(|q| histogram.value_at_quantile(q) as f64 / 1000.0)
}

impl Measurement {
    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

struct ConnectionResult {
    /// Latency of each kind of request.
    by_kind: ByKind,
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
    let mut by_kind = ByKind::new();
    let mut ok = 0;
    let mut errors = BTreeMap::new();
    for task in tasks {
        // A task that does not finish within a few seconds of the stop is stuck
        // on a dead connection; count it and move on.
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(result)) => {
                for (kind, histogram) in &result.by_kind {
                    histogram_of(&mut by_kind, kind)
                        .add(histogram)
                        .expect("same bounds");
                }
                ok += result.ok;
                for (kind, n) in result.errors {
                    *errors.entry(kind).or_default() += n;
                }
            }
            _ => *errors.entry("stuck connection".to_owned()).or_default() += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut all = new_histogram();
    for (_, histogram) in &by_kind {
        all.add(histogram).expect("same bounds");
    }
    let [p50_ms, p90_ms, p99_ms, p999_ms] = percentiles(&all);
    let by_kind = if by_kind.len() > 1 {
        by_kind
            .iter()
            .map(|(kind, histogram)| {
                let [p50_ms, p90_ms, p99_ms, p999_ms] = percentiles(histogram);
                KindLatency {
                    kind: (*kind).to_owned(),
                    ok: histogram.len(),
                    p50_ms,
                    p90_ms,
                    p99_ms,
                    p999_ms,
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Measurement {
        connections,
        seconds,
        ok,
        errors,
        throughput: ok as f64 / seconds,
        p50_ms,
        p90_ms,
        p99_ms,
        p999_ms,
        by_kind,
    }
}

async fn drive_connection(
    address: SocketAddr,
    seed: u64,
    stop: Arc<AtomicBool>,
    picker: Picker,
) -> ConnectionResult {
    let mut result = ConnectionResult {
        by_kind: Vec::new(),
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
                        let _ = histogram_of(&mut result.by_kind, call.kind).record(micros);
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
        kind: "redirect",
        method: "GET",
        path: format!("/{}", codes[rng.random_range(0..codes.len())]),
        body: None,
        expect: &[301, 302, 307, 308],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;
    use std::sync::atomic::AtomicU64;

    /// How long the test server holds every `read`.
    const SLOW: Duration = Duration::from_millis(20);

    /// A server on a free loopback port that answers `/r` with a 302 at once
    /// and `/slow` with a 200 after [`SLOW`], counting what it answered.
    async fn server() -> (SocketAddr, Arc<[AtomicU64; 2]>) {
        let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let (fast, slow) = (counts.clone(), counts.clone());
        let app = axum::Router::new()
            .route(
                "/r",
                get(move || async move {
                    fast[0].fetch_add(1, Ordering::Relaxed);
                    (StatusCode::FOUND, [("location", "http://127.0.0.1:9/")])
                }),
            )
            .route(
                "/slow",
                get(move || async move {
                    tokio::time::sleep(SLOW).await;
                    slow[1].fetch_add(1, Ordering::Relaxed);
                    StatusCode::OK
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (address, counts)
    }

    fn call(kind: &'static str, path: &str, expect: &'static [u16]) -> Call {
        Call {
            kind,
            method: "GET",
            path: path.to_owned(),
            body: None,
            expect,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_kind_of_request_gets_its_own_latency() {
        let (address, counts) = server().await;
        let picker: Picker = Arc::new(|rng: &mut SmallRng| {
            if rng.random_bool(0.5) {
                call("redirect", "/r", &[302])
            } else {
                call("read", "/slow", &[200])
            }
        });
        let m = run(address, 4, Duration::from_millis(800), picker).await;

        assert_eq!(m.error_count(), 0, "{:?}", m.errors);
        let kind = |name: &str| {
            m.by_kind
                .iter()
                .find(|k| k.kind == name)
                .unwrap_or_else(|| panic!("no {name} in {:?}", m.by_kind))
        };
        let (redirect, read) = (kind("redirect"), kind("read"));
        assert_eq!(m.by_kind.len(), 2);
        // Every answer the server gave is counted under its own kind.
        assert_eq!(redirect.ok, counts[0].load(Ordering::Relaxed));
        assert_eq!(read.ok, counts[1].load(Ordering::Relaxed));
        assert_eq!(redirect.ok + read.ok, m.ok);
        assert!(redirect.ok > 0 && read.ok > 0);
        // Reads wait at least SLOW on the server, so none of them can land
        // below it; the whole run's median mixes both kinds.
        let slow_ms = SLOW.as_secs_f64() * 1000.0;
        assert!(read.p50_ms >= slow_ms, "read p50 {} ms", read.p50_ms);
        assert!(redirect.p50_ms <= read.p50_ms);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_kind_reports_no_split() {
        let (address, counts) = server().await;
        let picker: Picker = Arc::new(|_: &mut SmallRng| call("redirect", "/r", &[302]));
        let m = run(address, 2, Duration::from_millis(300), picker).await;
        assert_eq!(m.ok, counts[0].load(Ordering::Relaxed));
        assert!(m.ok > 0);
        assert!(m.by_kind.is_empty());
        let json = serde_json::to_value(&m).unwrap();
        assert!(json.get("by_kind").is_none(), "{json}");
    }
}
