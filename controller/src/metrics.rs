//! Prometheus metrics of the `kadi-controller` binary, all prefixed
//! `kadi_controller_`, with bounded labels only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::resource::Phase;

/// Buckets of the reconcile duration, in seconds: a reconcile is a few
/// database and API calls, so most land between 5 ms and 1 s.
const DURATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Every metric the controller exports. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    duration: Histogram,
    shortlinks: IntGaugeVec,
    /// 1 while this replica holds the Lease, else 0.
    pub leader: IntGauge,
    phases: Arc<Mutex<HashMap<String, Phase>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new(
                "kadi_controller_reconciles_total",
                "Reconciles of ShortLinks by result (success or error) and reason.",
            ),
            &["result", "reason"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "kadi_controller_reconcile_duration_seconds",
                "Time one reconcile of a ShortLink took.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let shortlinks = IntGaugeVec::new(
            Opts::new(
                "kadi_controller_shortlinks",
                "ShortLinks this controller reconciled, by phase.",
            ),
            &["phase"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "kadi_controller_leader",
            "Whether this replica holds the leader Lease: 1 when it does, else 0.",
        )
        .expect("valid metric");
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(shortlinks.clone()),
            Box::new(leader.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        for phase in Phase::ALL {
            shortlinks.with_label_values(&[phase.as_str()]).set(0);
        }
        Metrics {
            registry,
            reconciles,
            duration,
            shortlinks,
            leader,
            phases: Arc::default(),
        }
    }

    /// Counts one reconcile. `reason` is `Reconciled` on success, else the
    /// error's fixed reason.
    pub fn record_reconcile(&self, success: bool, reason: &'static str, took: Duration) {
        let result = if success { "success" } else { "error" };
        self.reconciles.with_label_values(&[result, reason]).inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Notes the phase of a ShortLink (`None` once it is gone) and updates
    /// the per-phase gauge.
    pub fn set_phase(&self, owner: &str, phase: Option<Phase>) {
        let mut phases = self.phases.lock().expect("phases lock");
        match phase {
            Some(phase) => phases.insert(owner.to_owned(), phase),
            None => phases.remove(owner),
        };
        for phase in Phase::ALL {
            let count = phases.values().filter(|p| **p == phase).count();
            self.shortlinks
                .with_label_values(&[phase.as_str()])
                .set(count as i64);
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_counted_per_resource() {
        let metrics = Metrics::new();
        metrics.set_phase("a/one", Some(Phase::Active));
        metrics.set_phase("a/two", Some(Phase::Active));
        metrics.set_phase("a/two", Some(Phase::Expired));
        metrics.set_phase("a/three", Some(Phase::Conflict));
        metrics.set_phase("a/three", None);
        let text = metrics.render();
        assert!(
            text.contains("kadi_controller_shortlinks{phase=\"Active\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kadi_controller_shortlinks{phase=\"Expired\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kadi_controller_shortlinks{phase=\"Conflict\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn reconciles_are_counted_by_result_and_reason() {
        let metrics = Metrics::new();
        metrics.record_reconcile(true, "Reconciled", Duration::from_millis(3));
        metrics.record_reconcile(false, "ShortCodeTaken", Duration::from_millis(3));
        let text = metrics.render();
        assert!(
            text.contains(
                "kadi_controller_reconciles_total{reason=\"ShortCodeTaken\",result=\"error\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("kadi_controller_reconcile_duration_seconds_count 2"),
            "{text}"
        );
        assert!(text.contains("kadi_controller_leader 0"), "{text}");
    }
}
