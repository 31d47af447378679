//! The report of a run: JSON for machines, Markdown for people, and an SVG
//! chart of throughput and latency over the connection ramp.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::drive::Measurement;
use crate::scenarios::ScenarioResult;

/// One step of the ramp, for `kadi` and the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct RampStep {
    /// Connections held open.
    pub connections: usize,
    /// `kadi`, redirect-hot.
    pub kadi: Measurement,
    /// The baseline.
    pub baseline: Measurement,
}

/// A figure set against its reference from the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// Scenario.
    pub scenario: String,
    /// Connections.
    pub connections: usize,
    /// What it is compared with.
    pub reference: String,
    /// Throughput divided by the reference's.
    pub throughput_ratio: f64,
    /// p99 latency divided by the reference's.
    pub p99_ratio: f64,
}

/// A target and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is promised.
    pub name: String,
    /// What was measured.
    pub measured: String,
    /// Whether it holds.
    pub met: bool,
}

/// Memory after many distinct lookups.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryCheck {
    /// Distinct codes looked up.
    pub lookups: u64,
    /// Resident memory afterwards, MiB.
    pub rss_mib: f64,
    /// Configured cache budget, MiB.
    pub cache_budget_mib: f64,
}

/// Bytes the database spends per row, tables and indexes included.
#[derive(Debug, Clone, Serialize)]
pub struct Storage {
    /// Links stored.
    pub links: i64,
    /// Bytes of the `links` table and its indexes per link.
    pub bytes_per_link: f64,
    /// Events stored (almost all clicks after a run).
    pub events: i64,
    /// Bytes of the `events` table and its indexes per event.
    pub bytes_per_event: f64,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `smoke` or `full`.
    pub mode: String,
    /// When it ran (UTC).
    pub started_at: String,
    /// Cores of the machine (load generator and servers share them).
    pub cores: usize,
    /// The database `kadi` used.
    pub database: String,
    /// Whether Redis was used.
    pub redis: bool,
    /// Every scenario.
    pub scenarios: Vec<ScenarioResult>,
    /// Figures as ratios to their references.
    pub ratios: Vec<Ratio>,
    /// The ramp.
    pub ramp: Vec<RampStep>,
    /// The long click run.
    pub click_run: Option<ScenarioResult>,
    /// The memory check.
    pub memory: Option<MemoryCheck>,
    /// Storage per link and per click.
    pub storage: Option<Storage>,
    /// The targets.
    pub targets: Vec<Target>,
}

impl Report {
    /// The result of a scenario on a target at a number of connections.
    pub fn find(
        &self,
        scenario: &str,
        target: &str,
        connections: usize,
    ) -> Option<&ScenarioResult> {
        self.scenarios.iter().find(|r| {
            r.scenario == scenario && r.target == target && r.measurement.connections == connections
        })
    }

    /// Adds the ratio of `scenario` on `kadi` to `reference_scenario` on `reference`.
    pub fn add_ratio(
        &mut self,
        scenario: &str,
        reference_scenario: &str,
        reference: &str,
        connections: usize,
    ) {
        let (Some(ours), Some(theirs)) = (
            self.find(scenario, "kadi", connections),
            self.find(reference_scenario, reference, connections),
        ) else {
            return;
        };
        let ratio = Ratio {
            scenario: scenario.to_owned(),
            connections,
            reference: format!("{reference} ({reference_scenario})"),
            throughput_ratio: ours.measurement.throughput / theirs.measurement.throughput.max(1e-9),
            p99_ratio: ours.measurement.p99_ms / theirs.measurement.p99_ms.max(1e-9),
        };
        self.ratios.push(ratio);
    }

    /// Writes `report.json`, `report.md` and (with a ramp) `ramp.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        if !self.ramp.is_empty() {
            std::fs::write(dir.join("ramp.svg"), self.ramp_svg())?;
        }
        Ok(())
    }

    /// The Markdown summary.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Kadi load report ({})\n", self.mode);
        let _ = writeln!(
            md,
            "Run at {} on {} cores shared by the load generator and the servers, all on \
             127.0.0.1. `kadi` on {}{}.\n",
            self.started_at,
            self.cores,
            self.database,
            if self.redis { " with Redis" } else { "" }
        );
        let _ = writeln!(
            md,
            "## Targets\n\n| target | measured | met |\n| --- | --- | --- |"
        );
        for t in &self.targets {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                t.name,
                t.measured,
                if t.met { "yes" } else { "**no**" }
            );
        }
        let _ = writeln!(
            md,
            "\n## Scenarios\n\n| scenario | server | conns | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | clicks served / stored / dropped | RSS MiB |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for r in self.scenarios.iter().chain(self.click_run.iter()) {
            let m = &r.measurement;
            let clicks = r
                .clicks
                .map(|c| format!("{} / {} / {}", c.served, c.stored, c.dropped))
                .unwrap_or_else(|| "–".into());
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} |",
                r.scenario,
                r.target,
                m.connections,
                m.throughput,
                m.p50_ms,
                m.p90_ms,
                m.p99_ms,
                m.p999_ms,
                m.error_count(),
                clicks,
                r.rss_mib
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "–".into())
            );
        }
        let mixed: Vec<&ScenarioResult> = self
            .scenarios
            .iter()
            .filter(|r| !r.measurement.by_kind.is_empty())
            .collect();
        if !mixed.is_empty() {
            let _ = writeln!(
                md,
                "\n## Latency by kind of request\n\n| scenario | server | conns | kind | answered | p50 ms | p90 ms | p99 ms | p99.9 ms |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
            );
            for r in mixed {
                for k in &r.measurement.by_kind {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                        r.scenario,
                        r.target,
                        r.measurement.connections,
                        k.kind,
                        k.ok,
                        k.p50_ms,
                        k.p90_ms,
                        k.p99_ms,
                        k.p999_ms
                    );
                }
            }
        }
        let _ = writeln!(md, "\n## Ratios to the references of the same run\n\n| scenario | conns | reference | throughput | p99 |\n| --- | --- | --- | --- | --- |");
        for r in &self.ratios {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} | {:.2} |",
                r.scenario, r.connections, r.reference, r.throughput_ratio, r.p99_ratio
            );
        }
        if !self.ramp.is_empty() {
            let _ = writeln!(md, "\n## Ramp (redirect-hot)\n\n![ramp](ramp.svg)\n\n| conns | kadi req/s | baseline req/s | ratio | kadi p50 / p99 ms | baseline p50 / p99 ms |\n| --- | --- | --- | --- | --- | --- |");
            for s in &self.ramp {
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {:.0} | {:.2} | {:.3} / {:.3} | {:.3} / {:.3} |",
                    s.connections,
                    s.kadi.throughput,
                    s.baseline.throughput,
                    s.kadi.throughput / s.baseline.throughput.max(1e-9),
                    s.kadi.p50_ms,
                    s.kadi.p99_ms,
                    s.baseline.p50_ms,
                    s.baseline.p99_ms
                );
            }
        }
        if let Some(s) = &self.storage {
            let _ = writeln!(
                md,
                "\n## Storage\n\n{} links: {:.0} bytes per link. {} events (clicks): {:.0} bytes per event. \
                 Tables and indexes included, PostgreSQL.",
                s.links, s.bytes_per_link, s.events, s.bytes_per_event
            );
        }
        if let Some(m) = &self.memory {
            let _ = writeln!(
                md,
                "\n## Memory\n\nAfter {} distinct lookups: RSS {:.1} MiB with a cache budget of {:.0} MiB.",
                m.lookups, m.rss_mib, m.cache_budget_mib
            );
        }
        md
    }

    /// Two stacked line charts over the ramp: throughput (kadi and baseline)
    /// and kadi's latency percentiles.
    pub fn ramp_svg(&self) -> String {
        let (width, height, pad) = (720.0, 560.0, 60.0);
        let panel = (height - 3.0 * pad) / 2.0;
        let max_conns = self.ramp.iter().map(|s| s.connections).max().unwrap_or(1) as f64;
        let x = |c: usize| pad + (c as f64 / max_conns) * (width - 2.0 * pad);
        let max_rps = self
            .ramp
            .iter()
            .flat_map(|s| [s.kadi.throughput, s.baseline.throughput])
            .fold(1.0, f64::max);
        let max_ms = self
            .ramp
            .iter()
            .flat_map(|s| [s.kadi.p99_ms, s.kadi.p999_ms])
            .fold(0.001, f64::max);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        let line = |svg: &mut String,
                    top: f64,
                    max: f64,
                    values: Vec<(usize, f64)>,
                    color: &str,
                    label: &str,
                    row: usize| {
            let points: Vec<String> = values
                .iter()
                .map(|(c, v)| format!("{:.1},{:.1}", x(*c), top + panel - (v / max) * panel))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
                points.join(" ")
            );
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{label}</text>",
                width - 220.0,
                top + 14.0 * row as f64 + 4.0
            );
        };
        for (top, title, max, unit) in [
            (
                pad,
                "Throughput over the ramp (requests/s)",
                max_rps,
                "req/s",
            ),
            (
                2.0 * pad + panel,
                "kadi latency over the ramp (ms)",
                max_ms,
                "ms",
            ),
        ] {
            let _ = writeln!(
                svg,
                "<text x=\"{pad}\" y=\"{}\" font-weight=\"bold\">{title}</text>",
                top - 10.0
            );
            let _ = writeln!(
                svg,
                "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
                top + panel,
                width - pad,
                top + panel
            );
            let _ = writeln!(
                svg,
                "<line x1=\"{pad}\" y1=\"{top}\" x2=\"{pad}\" y2=\"{}\" stroke=\"black\"/>",
                top + panel
            );
            let _ = writeln!(
                svg,
                "<text x=\"4\" y=\"{}\">{max:.0} {unit}</text>",
                top + 4.0
            );
            for step in &self.ramp {
                let _ = writeln!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    x(step.connections),
                    top + panel + 16.0,
                    step.connections
                );
            }
        }
        let top2 = 2.0 * pad + panel;
        let series = |f: fn(&RampStep) -> f64| {
            self.ramp
                .iter()
                .map(|s| (s.connections, f(s)))
                .collect::<Vec<_>>()
        };
        line(
            &mut svg,
            pad,
            max_rps,
            series(|s| s.kadi.throughput),
            "#1f77b4",
            "kadi",
            0,
        );
        line(
            &mut svg,
            pad,
            max_rps,
            series(|s| s.baseline.throughput),
            "#7f7f7f",
            "baseline",
            1,
        );
        line(
            &mut svg,
            top2,
            max_ms,
            series(|s| s.kadi.p50_ms),
            "#2ca02c",
            "p50",
            0,
        );
        line(
            &mut svg,
            top2,
            max_ms,
            series(|s| s.kadi.p90_ms),
            "#bcbd22",
            "p90",
            1,
        );
        line(
            &mut svg,
            top2,
            max_ms,
            series(|s| s.kadi.p99_ms),
            "#ff7f0e",
            "p99",
            2,
        );
        line(
            &mut svg,
            top2,
            max_ms,
            series(|s| s.kadi.p999_ms),
            "#d62728",
            "p99.9",
            3,
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">connections</text>",
            width / 2.0,
            height - 8.0
        );
        svg.push_str("</svg>\n");
        svg
    }
}
