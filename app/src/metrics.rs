//! Prometheus metrics of the `kadi` binary, registered once and handed to the
//! parts that record them as ready-made handles.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every metric `kadi` exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Redirect outcomes, one handle per result.
    pub redirects: RedirectCounters,
    /// Clicks dropped because the queue was full or the writer gave up.
    pub clicks_dropped: IntCounter,
    /// Clicks stored by the batch writer.
    pub clicks_written: IntCounter,
    /// Clicks waiting in the queue.
    pub click_queue_depth: IntGauge,
}

/// `kadi_redirects_total` split by result, resolved once so that the hot path
/// does no label lookup.
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

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let redirects = IntCounterVec::new(
            Opts::new("kadi_redirects_total", "Redirect requests by result."),
            &["result"],
        )
        .expect("valid metric");
        let clicks_dropped = IntCounter::new(
            "kadi_clicks_dropped_total",
            "Clicks not stored because the click queue was full or storing failed for good.",
        )
        .expect("valid metric");
        let clicks_written = IntCounter::new(
            "kadi_clicks_written_total",
            "Clicks stored by the batch writer.",
        )
        .expect("valid metric");
        let click_queue_depth =
            IntGauge::new("kadi_click_queue_depth", "Clicks waiting to be stored.")
                .expect("valid metric");
        for collector in [
            Box::new(redirects.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(clicks_dropped.clone()),
            Box::new(clicks_written.clone()),
            Box::new(click_queue_depth.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        let redirect = |result: &'static str| redirects.with_label_values(&[result]);
        Metrics {
            redirects: RedirectCounters {
                served: redirect("served"),
                not_found: redirect("not_found"),
                inactive: redirect("inactive"),
                expired: redirect("expired"),
                limited: redirect("limited"),
            },
            registry,
            clicks_dropped,
            clicks_written,
            click_queue_depth,
        }
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
