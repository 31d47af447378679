//! Prometheus metrics of the `kadi` binary, registered once and handed to the
//! parts that record them as ready-made handles, so that hot paths do no label
//! lookup. Every metric is listed in `docs/monitoring.md`.

use std::sync::Arc;

use crate::http::REDIRECT_ROUTE;

use prometheus::core::Collector;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, from 50 µs for a cached redirect to 5 s for a
/// request stuck behind a database outage.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

/// Every metric `kadi` exports, as one shared set. Cloning is a single
/// reference count: every request clones the state that holds it, so a copy of
/// each handle per clone would cost dozens of contended atomic operations on
/// the redirect path.
#[derive(Clone)]
pub struct Metrics(Arc<MetricSet>);

impl std::ops::Deref for Metrics {
    type Target = MetricSet;

    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

/// The metric handles behind [`Metrics`].
pub struct MetricSet {
    registry: Registry,
    /// `kadi_http_request_duration_seconds{route,method,status}`.
    http_requests: HistogramVec,
    /// The same histogram's series of the redirect route, resolved once.
    redirect_timings: RedirectTimings,
    /// Redirect outcomes, one handle per result.
    pub redirects: RedirectCounters,
    /// Cache lookups, one handle per tier and result.
    pub cache: CacheCounters,
    /// Entries in the local cache tier.
    pub cache_entries: IntGauge,
    /// Clicks dropped because the queue was full or storing failed for good.
    pub clicks_dropped: IntCounter,
    /// Clicks stored by the batch writer.
    pub clicks_written: IntCounter,
    /// Clicks waiting in the queue.
    pub click_queue_depth: IntGauge,
    /// Capacity of the click queue.
    pub click_queue_capacity: IntGauge,
    /// Database connections by state (`in_use`, `idle`).
    pub db_connections: IntGaugeVec,
    /// Configured maximum of database connections.
    pub db_max_connections: IntGauge,
    /// Store operations waiting for a database connection.
    pub db_waiting: IntGauge,
    /// 1 while the database answers the periodic probe, 0 otherwise.
    pub db_up: IntGauge,
    /// 1 while Redis answers, 0 while it does not (and always 0 without Redis).
    pub redis_up: IntGauge,
    /// Redis commands that failed or timed out.
    pub redis_errors: IntCounter,
    /// 1 while this replica receives cache invalidations from other replicas.
    pub invalidation_subscribed: IntGauge,
    /// Seconds since the Unix epoch when the process started.
    pub start_time: Gauge,
}

/// Status classes, as the request-duration histogram labels them.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The request-duration series of `GET` and `HEAD` on the redirect route, by
/// status class: the redirect path observes one of these instead of looking
/// its labels up on every click.
struct RedirectTimings {
    get: [Histogram; 5],
    head: [Histogram; 5],
}

impl RedirectTimings {
    fn new(http_requests: &HistogramVec) -> RedirectTimings {
        let series = |method: &str| {
            STATUS_CLASSES
                .map(|class| http_requests.with_label_values(&[REDIRECT_ROUTE, method, class]))
        };
        RedirectTimings {
            get: series("GET"),
            head: series("HEAD"),
        }
    }
}

/// `kadi_redirects_total` split by result.
#[derive(Clone)]
pub struct RedirectCounters {
    /// A redirect was served.
    pub served: IntCounter,
    /// No link has the code.
    pub not_found: IntCounter,
    /// The link is inactive.
    pub inactive: IntCounter,
    /// The link expired.
    pub expired: IntCounter,
    /// The link used up its visits.
    pub limited: IntCounter,
}

/// `kadi_cache_lookups_total` split by tier and result.
#[derive(Clone)]
pub struct CacheCounters {
    /// Local tier: a link was cached.
    pub local_hit: IntCounter,
    /// Local tier: the code was cached as unknown.
    pub local_negative_hit: IntCounter,
    /// Local tier: nothing cached.
    pub local_miss: IntCounter,
    /// Redis: a link was cached.
    pub redis_hit: IntCounter,
    /// Redis: the code was cached as unknown.
    pub redis_negative_hit: IntCounter,
    /// Redis: nothing cached.
    pub redis_miss: IntCounter,
    /// Redis: the lookup failed or timed out.
    pub redis_error: IntCounter,
    /// Redis: skipped because the circuit breaker is open.
    pub redis_skipped: IntCounter,
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("each metric is registered once");
    collector
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "kadi_http_request_duration_seconds",
                    "Time to answer HTTP requests, by route template, method and status class.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["route", "method", "status"],
            )
            .expect("valid metric"),
        );
        let redirects = register(
            &registry,
            IntCounterVec::new(
                Opts::new("kadi_redirects_total", "Redirect requests by result."),
                &["result"],
            )
            .expect("valid metric"),
        );
        let lookups = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "kadi_cache_lookups_total",
                    "Link cache lookups by tier and result.",
                ),
                &["tier", "result"],
            )
            .expect("valid metric"),
        );
        let db_connections = register(
            &registry,
            IntGaugeVec::new(
                Opts::new("kadi_db_connections", "Database connections by state."),
                &["state"],
            )
            .expect("valid metric"),
        );
        let build_info = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "kadi_build_info",
                    "Always 1; labels name the running build.",
                ),
                &["version"],
            )
            .expect("valid metric"),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let start_time = register(
            &registry,
            Gauge::new(
                "kadi_start_time_seconds",
                "When the process started, in seconds since the Unix epoch.",
            )
            .expect("valid metric"),
        );
        start_time.set(chrono::Utc::now().timestamp() as f64);

        let redirect = |result: &str| redirects.with_label_values(&[result]);
        let lookup = |tier: &str, result: &str| lookups.with_label_values(&[tier, result]);
        Metrics(Arc::new(MetricSet {
            redirect_timings: RedirectTimings::new(&http_requests),
            http_requests,
            redirects: RedirectCounters {
                served: redirect("served"),
                not_found: redirect("not_found"),
                inactive: redirect("inactive"),
                expired: redirect("expired"),
                limited: redirect("limited"),
            },
            cache: CacheCounters {
                local_hit: lookup("local", "hit"),
                local_negative_hit: lookup("local", "negative_hit"),
                local_miss: lookup("local", "miss"),
                redis_hit: lookup("redis", "hit"),
                redis_negative_hit: lookup("redis", "negative_hit"),
                redis_miss: lookup("redis", "miss"),
                redis_error: lookup("redis", "error"),
                redis_skipped: lookup("redis", "skipped"),
            },
            cache_entries: gauge(
                &registry,
                "kadi_cache_entries",
                "Entries in the local link cache.",
            ),
            clicks_dropped: counter(
                &registry,
                "kadi_clicks_dropped_total",
                "Clicks not stored because the click queue was full or storing failed for good.",
            ),
            clicks_written: counter(
                &registry,
                "kadi_clicks_written_total",
                "Clicks stored by the batch writer.",
            ),
            click_queue_depth: gauge(
                &registry,
                "kadi_click_queue_depth",
                "Clicks waiting to be stored.",
            ),
            click_queue_capacity: gauge(
                &registry,
                "kadi_click_queue_capacity",
                "Clicks the queue holds before it drops new ones.",
            ),
            db_max_connections: gauge(
                &registry,
                "kadi_db_max_connections",
                "Most database connections this process opens.",
            ),
            db_waiting: gauge(
                &registry,
                "kadi_db_waiting_operations",
                "Store operations in flight beyond the open connections, waiting for one.",
            ),
            db_up: gauge(
                &registry,
                "kadi_db_up",
                "1 while the database answers the periodic probe, 0 otherwise.",
            ),
            redis_up: gauge(
                &registry,
                "kadi_redis_up",
                "1 while Redis answers, 0 while it does not (always 0 without Redis).",
            ),
            redis_errors: counter(
                &registry,
                "kadi_redis_errors_total",
                "Redis commands and connection attempts that failed or timed out.",
            ),
            invalidation_subscribed: gauge(
                &registry,
                "kadi_cache_invalidation_subscribed",
                "1 while this replica receives cache invalidations from the others.",
            ),
            db_connections,
            start_time,
            registry,
        }))
    }

    /// Records how long one request took, by route template, method and
    /// status code. `route` must be a route template, never a raw path.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        if route == REDIRECT_ROUTE {
            match method {
                "GET" => return self.redirect_timings.get[class].observe(seconds),
                "HEAD" => return self.redirect_timings.head[class].observe(seconds),
                _ => {}
            }
        }
        self.http_requests
            .with_label_values(&[route, method, STATUS_CLASSES[class]])
            .observe(seconds);
    }

    /// The exposition text of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
