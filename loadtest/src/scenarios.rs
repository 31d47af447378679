//! Scenarios: seeding the database, and the runs a report is made of.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::Rng;
use serde::Serialize;

use crate::drive::{self, Call, Measurement, Picker};
use crate::servers::{self, Server};

/// Codes of the hot set: few enough to stay cached everywhere.
pub const HOT_CODES: usize = 100;

/// The short code of seeded link `i`.
pub fn code(i: usize) -> String {
    format!("lt{i:06}")
}

/// Writes CSV exports with one user and `links` links, for `kadi import`.
pub fn write_seed(dir: &Path, links: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("users.csv"),
        "id,username,email,created_at\n1,loadtest,loadtest@example.com,2026-01-01 00:00:00\n",
    )?;
    let mut urls =
        String::from("id,user_id,short_code,original_url,title,is_active,created_at,updated_at\n");
    let mut codes = String::new();
    for i in 0..links {
        let target = format!("http://127.0.0.1:9/page/{i}");
        urls.push_str(&format!(
            "{},1,{},{target},load {i},True,2026-01-01 00:00:00,2026-01-01 00:00:00\n",
            i + 1,
            code(i)
        ));
        codes.push_str(&format!("{},{target}\n", code(i)));
    }
    std::fs::write(dir.join("urls.csv"), urls)?;
    std::fs::write(
        dir.join("events.csv"),
        "id,url_id,user_id,event_type,timestamp,details\n",
    )?;
    std::fs::write(dir.join("codes.txt"), codes)?;
    Ok(())
}

/// Imports the seed into `database_url` with the `kadi` binary.
pub fn import_seed(database_url: &str, dir: &Path) -> anyhow::Result<()> {
    let output = std::process::Command::new(servers::kadi_binary()?)
        .env_remove("DATABASE_URL")
        .args([
            "--database-url",
            database_url,
            "--log-format",
            "text",
            "import",
            "--no-progress",
        ])
        .arg("--users")
        .arg(dir.join("users.csv"))
        .arg("--urls")
        .arg(dir.join("urls.csv"))
        .output()
        .context("cannot run kadi import")?;
    anyhow::ensure!(
        output.status.success(),
        "kadi import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Redirects over the first `n` seeded codes.
pub fn redirect_picker(n: usize) -> Picker {
    drive::redirects(Arc::new((0..n).map(code).collect()))
}

/// Requests every one of the first `n` seeded codes at least once, so that a
/// run over them measures the cache tiers filled, not their first fill from
/// the database. Bounded by `limit`.
pub async fn warm_codes(server: &Server, n: usize, limit: Duration) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let picker: Picker = {
        let next = next.clone();
        Arc::new(move |_: &mut SmallRng| {
            let i = next.fetch_add(1, Ordering::Relaxed) as usize % n.max(1);
            Call {
                kind: "redirect",
                method: "GET",
                path: format!("/{}", code(i)),
                body: None,
                expect: &[301, 302, 307, 308],
            }
        })
    };
    let started = std::time::Instant::now();
    while (next.load(Ordering::Relaxed) as usize) < n {
        anyhow::ensure!(
            started.elapsed() < limit,
            "requesting {n} codes once took longer than {limit:?}"
        );
        drive::run(server.address, 50, Duration::from_secs(1), picker.clone()).await;
    }
    Ok(())
}

/// 90 % redirects over the hot set, 8 % creates, 2 % reads of seeded links.
pub fn mixed_picker(seeded: usize) -> Picker {
    let created = Arc::new(AtomicU64::new(0));
    Arc::new(move |rng: &mut SmallRng| {
        let roll = rng.random_range(0..100);
        if roll < 90 {
            Call {
                kind: "redirect",
                method: "GET",
                path: format!("/{}", code(rng.random_range(0..HOT_CODES))),
                body: None,
                expect: &[302],
            }
        } else if roll < 98 {
            let n = created.fetch_add(1, Ordering::Relaxed);
            Call {
                kind: "create",
                method: "POST",
                path: "/urls".into(),
                body: Some(format!(
                    r#"{{"user_id":1,"original_url":"http://127.0.0.1:9/new/{n}"}}"#
                )),
                expect: &[201],
            }
        } else {
            Call {
                kind: "read",
                method: "GET",
                path: format!("/urls/{}", rng.random_range(1..=seeded)),
                body: None,
                expect: &[200],
            }
        }
    })
}

/// Lookups of codes never seen before (answered 404), to fill the cache with
/// distinct entries.
pub fn distinct_unknown_picker() -> Picker {
    let next = Arc::new(AtomicU64::new(0));
    Arc::new(move |_: &mut SmallRng| Call {
        kind: "unknown code",
        method: "GET",
        path: format!("/m{}", next.fetch_add(1, Ordering::Relaxed)),
        body: None,
        expect: &[404],
    })
}

/// Clicks as `kadi` counted them around a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Clicks {
    /// Redirects served.
    pub served: u64,
    /// Clicks stored by the batch writer.
    pub stored: u64,
    /// Clicks dropped (queue full).
    pub dropped: u64,
    /// Deepest click queue seen while sampling during the run.
    pub max_queue_depth: u64,
}

async fn click_counters(metrics: SocketAddr) -> anyhow::Result<(u64, u64, u64)> {
    Ok((
        servers::metric(metrics, "kadi_redirects_total{result=\"served\"}").await? as u64,
        servers::metric(metrics, "kadi_clicks_written_total").await? as u64,
        servers::metric(metrics, "kadi_clicks_dropped_total").await? as u64,
    ))
}

/// Click counters once every served click is stored or dropped (a bounded
/// wait), so that a run's deltas hold no clicks of the warm-up.
async fn settled_counters(metrics: SocketAddr) -> anyhow::Result<(u64, u64, u64)> {
    let mut counters = click_counters(metrics).await?;
    for _ in 0..100 {
        if counters.1 + counters.2 >= counters.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        counters = click_counters(metrics).await?;
    }
    Ok(counters)
}

/// One measured scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: String,
    /// The server measured.
    pub target: String,
    /// The numbers.
    #[serde(flatten)]
    pub measurement: Measurement,
    /// Clicks, for `kadi` targets.
    pub clicks: Option<Clicks>,
    /// Resident memory of the server after the run, in MiB.
    pub rss_mib: Option<f64>,
}

/// Runs `picker` against `server` (after a short warm-up) and gathers clicks
/// and memory when the server is `kadi`.
pub async fn measure(
    scenario: &str,
    target: &str,
    server: &Server,
    connections: usize,
    duration: Duration,
    picker: Picker,
) -> anyhow::Result<ScenarioResult> {
    drive::run(
        server.address,
        connections.min(50),
        Duration::from_millis(500),
        picker.clone(),
    )
    .await;
    let before = match server.metrics {
        Some(m) => Some(settled_counters(m).await?),
        None => None,
    };
    // Sample the queue depth while the load runs.
    let deepest = Arc::new(AtomicU64::new(0));
    let sampler = server.metrics.map(|m| {
        let deepest = deepest.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(depth) = servers::metric(m, "kadi_click_queue_depth").await {
                    deepest.fetch_max(depth as u64, Ordering::Relaxed);
                }
            }
        })
    });
    let measurement = drive::run(server.address, connections, duration, picker).await;
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    let clicks = match (server.metrics, before) {
        (Some(m), Some((served0, stored0, dropped0))) => {
            let counters = settled_counters(m).await?;
            Some(Clicks {
                served: counters.0 - served0,
                stored: counters.1 - stored0,
                dropped: counters.2 - dropped0,
                max_queue_depth: deepest.load(Ordering::Relaxed),
            })
        }
        _ => None,
    };
    Ok(ScenarioResult {
        scenario: scenario.to_owned(),
        target: target.to_owned(),
        measurement,
        clicks,
        rss_mib: server.rss_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
    })
}
