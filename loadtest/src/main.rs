//! `loadtest`: Kadi's load suite. It starts the real `kadi` binary and
//! baseline servers on 127.0.0.1, drives them with keep-alive connections for
//! bounded times, and writes a report with every figure also given as a ratio
//! to a baseline measured in the same run.
//!
//! - `loadtest smoke`: a few seconds on SQLite, for CI; fails on any error or
//!   lost click.
//! - `loadtest full --database-url postgres://… --redis-url redis://…`: every
//!   scenario, the ramp, the long click run and the memory check; writes the
//!   report into `--out`.
//! - `loadtest drive --address 127.0.0.1:8080 --scenario redirect-hot`: one
//!   scenario against a server that is already running (seeded by the suite's
//!   `lt000000…` codes), printed as JSON.

mod drive;
mod report;
mod scenarios;
mod servers;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use report::{MemoryCheck, RampStep, Report, Target};
use scenarios::{measure, HOT_CODES};

/// Kadi's load suite; every target is 127.0.0.1.
#[derive(Parser)]
#[command(name = "loadtest", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A few seconds against kadi on SQLite and the baseline; for CI.
    Smoke {
        /// Where the report goes.
        #[arg(long, default_value = "target/loadtest-smoke")]
        out: PathBuf,
    },
    /// Every scenario against kadi on PostgreSQL (and Redis).
    Full {
        /// A PostgreSQL server; the run creates and drops its own database in it.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Redis for kadi's shared tier.
        #[arg(long, env = "REDIS_URL")]
        redis_url: Option<String>,
        /// Where the report goes.
        #[arg(long, default_value = "docs/benchmarks")]
        out: PathBuf,
        /// Seconds each scenario runs.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Seconds of each ramp step.
        #[arg(long, default_value_t = 4)]
        ramp_seconds: u64,
        /// Seconds of the long click run.
        #[arg(long, default_value_t = 60)]
        click_seconds: u64,
        /// Distinct codes looked up for the memory check.
        #[arg(long, default_value_t = 1_000_000)]
        memory_lookups: u64,
        /// Links seeded (the wide set); more than the small cache holds.
        #[arg(long, default_value_t = 50_000)]
        links: usize,
    },
    /// Drive a server that is already running with one scenario and print the
    /// measurement as JSON. The server must hold the suite's seeded codes.
    Drive {
        /// Where the server listens; loopback only.
        #[arg(long)]
        address: std::net::SocketAddr,
        /// `redirect-hot` (the first 100 codes) or `redirect-wide` (`--links`).
        #[arg(long, default_value = "redirect-hot")]
        scenario: String,
        /// Keep-alive connections.
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Seconds measured, after one second of warm-up.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Seeded codes `redirect-wide` picks from.
        #[arg(long, default_value_t = 50_000)]
        links: usize,
    },
    /// Serve the baseline: a fixed 302 per code from an in-memory map.
    ServeBaseline {
        /// `code,url` lines.
        #[arg(long)]
        codes: PathBuf,
    },
    /// Serve the bare PostgreSQL lookup server.
    ServeLookup {
        /// The database holding the seeded links.
        #[arg(long)]
        database_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Smoke { out } => smoke(out).await,
        Command::Full {
            database_url,
            redis_url,
            out,
            seconds,
            ramp_seconds,
            click_seconds,
            memory_lookups,
            links,
        } => {
            let plan = Plan {
                seconds: Duration::from_secs(seconds),
                ramp_seconds: Duration::from_secs(ramp_seconds),
                click_seconds: Duration::from_secs(click_seconds),
                memory_lookups,
                links,
            };
            full(&database_url, redis_url.as_deref(), &out, plan).await
        }
        Command::Drive {
            address,
            scenario,
            connections,
            seconds,
            links,
        } => {
            if !address.ip().is_loopback() {
                bail!("the load suite only targets loopback addresses, not {address}");
            }
            let picker = match scenario.as_str() {
                "redirect-hot" => scenarios::redirect_picker(HOT_CODES),
                "redirect-wide" => scenarios::redirect_picker(links),
                other => bail!("unknown scenario {other:?}: redirect-hot or redirect-wide"),
            };
            drive::run(address, connections, Duration::from_secs(1), picker.clone()).await;
            let measurement =
                drive::run(address, connections, Duration::from_secs(seconds), picker).await;
            println!("{}", serde_json::to_string_pretty(&measurement)?);
            Ok(())
        }
        Command::ServeBaseline { codes } => {
            servers::serve_baseline(servers::read_codes(&codes)?).await
        }
        Command::ServeLookup { database_url } => servers::serve_lookup(&database_url).await,
    }
}

fn new_report(mode: &str, database: &str, redis: bool) -> Report {
    Report {
        mode: mode.to_owned(),
        started_at: chrono::Utc::now().to_rfc3339(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        database: database.to_owned(),
        redis,
        scenarios: Vec::new(),
        ratios: Vec::new(),
        ramp: Vec::new(),
        click_run: None,
        memory: None,
        storage: None,
        targets: Vec::new(),
    }
}

async fn smoke(out: PathBuf) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("kadi-loadtest-{}", std::process::id()));
    scenarios::write_seed(&scratch, 1_000)?;
    let database = format!("sqlite:{}", scratch.join("kadi.db").display());
    scenarios::import_seed(&database, &scratch)?;
    let baseline = servers::start_self(&[
        "serve-baseline",
        "--codes",
        &scratch.join("codes.txt").display().to_string(),
    ])?;
    let kadi = servers::start_kadi(&database, None, &[])?;
    let seconds = Duration::from_secs(2);
    let mut report = new_report("smoke", "SQLite", false);
    let hot = scenarios::redirect_picker(HOT_CODES);
    report.scenarios.push(
        measure(
            "redirect-hot",
            "baseline",
            &baseline,
            20,
            seconds,
            hot.clone(),
        )
        .await?,
    );
    report
        .scenarios
        .push(measure("redirect-hot", "kadi", &kadi, 20, seconds, hot).await?);
    report.scenarios.push(
        measure(
            "mixed",
            "kadi",
            &kadi,
            10,
            seconds,
            scenarios::mixed_picker(1_000),
        )
        .await?,
    );
    report.add_ratio("redirect-hot", "redirect-hot", "baseline", 20);

    let mut failed = Vec::new();
    for result in &report.scenarios {
        let m = &result.measurement;
        if m.error_count() > 0 {
            failed.push(format!(
                "{} on {}: errors {:?}",
                result.scenario, result.target, m.errors
            ));
        }
        if m.ok == 0 {
            failed.push(format!(
                "{} on {}: no request succeeded",
                result.scenario, result.target
            ));
        }
        if let Some(c) = result.clicks {
            if c.stored != c.served || c.dropped > 0 {
                failed.push(format!(
                    "{}: {} clicks served, {} stored, {} dropped",
                    result.scenario, c.served, c.stored, c.dropped
                ));
            }
        }
    }
    kadi.terminate().context("kadi did not shut down cleanly")?;
    report.write(&out)?;
    print!("{}", report.markdown());
    let _ = std::fs::remove_dir_all(&scratch);
    let checks = report.scenarios.len();
    for failure in &failed {
        eprintln!("FAILED {failure}");
    }
    println!(
        "loadtest: {} passed, {} failed",
        checks - failed.len().min(checks),
        failed.len()
    );
    if !failed.is_empty() {
        bail!("load smoke failed");
    }
    Ok(())
}

struct Plan {
    seconds: Duration,
    ramp_seconds: Duration,
    click_seconds: Duration,
    memory_lookups: u64,
    links: usize,
}

/// Budget of the default local cache, as `kadi` sets it.
const DEFAULT_CACHE_MIB: f64 = 64.0;

async fn full(
    admin_url: &str,
    redis: Option<&str>,
    out: &std::path::Path,
    plan: Plan,
) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("kadi-loadtest-{}", std::process::id()));
    scenarios::write_seed(&scratch, plan.links)?;
    let (database, drop_database) = create_database(admin_url).await?;
    scenarios::import_seed(&database, &scratch)?;
    let codes_file = scratch.join("codes.txt").display().to_string();
    let baseline = servers::start_self(&["serve-baseline", "--codes", &codes_file])?;
    let mut report = new_report("full", "PostgreSQL", redis.is_some());
    let hot = scenarios::redirect_picker(HOT_CODES);
    let wide = scenarios::redirect_picker(plan.links);
    let levels = [50, 500];

    eprintln!("redirect-hot and mixed");
    let kadi = servers::start_kadi(&database, redis, &[])?;
    for &c in &levels {
        report.scenarios.push(
            measure(
                "redirect-hot",
                "baseline",
                &baseline,
                c,
                plan.seconds,
                hot.clone(),
            )
            .await?,
        );
        report
            .scenarios
            .push(measure("redirect-hot", "kadi", &kadi, c, plan.seconds, hot.clone()).await?);
        report.scenarios.push(
            measure(
                "mixed",
                "kadi",
                &kadi,
                c,
                plan.seconds,
                scenarios::mixed_picker(plan.links),
            )
            .await?,
        );
        report.add_ratio("redirect-hot", "redirect-hot", "baseline", c);
        report.add_ratio("mixed", "redirect-hot", "baseline", c);
    }

    eprintln!("ramp");
    for c in [10, 50, 100, 200, 300, 400, 500] {
        let k = drive::run(kadi.address, c, plan.ramp_seconds, hot.clone()).await;
        let b = drive::run(baseline.address, c, plan.ramp_seconds, hot.clone()).await;
        report.ramp.push(RampStep {
            connections: c,
            kadi: k,
            baseline: b,
        });
    }

    eprintln!("clicks");
    let click_run = measure(
        "redirect-hot (long)",
        "kadi",
        &kadi,
        50,
        plan.click_seconds,
        hot.clone(),
    )
    .await?;
    report.click_run = Some(click_run);
    kadi.terminate()?;
    report.storage = Some(measure_storage(&database).await?);

    eprintln!("redirect-wide");
    // The scenario measures the tiers in their steady state: every code is in
    // Redis (when configured) and the small local tier holds a fraction. The
    // ten-minute time-to-live keeps the warmed entries for the whole scenario;
    // invalidation, not expiry, is what keeps cached links fresh.
    let small_cache = servers::start_kadi(
        &database,
        redis,
        &["--cache-bytes", "2097152", "--cache-ttl-secs", "600"],
    )?;
    scenarios::warm_codes(&small_cache, plan.links, Duration::from_secs(300)).await?;
    for &c in &levels {
        report.scenarios.push(
            measure(
                "redirect-wide",
                "baseline",
                &baseline,
                c,
                plan.seconds,
                wide.clone(),
            )
            .await?,
        );
        report.scenarios.push(
            measure(
                "redirect-wide",
                "kadi",
                &small_cache,
                c,
                plan.seconds,
                wide.clone(),
            )
            .await?,
        );
        report.add_ratio("redirect-wide", "redirect-wide", "baseline", c);
    }
    drop(small_cache);

    eprintln!("redirect-db");
    let uncached = servers::start_kadi(&database, None, &["--cache-bytes", "0"])?;
    let lookup = servers::start_self(&["serve-lookup", "--database-url", &database])?;
    for &c in &levels {
        report.scenarios.push(
            measure(
                "redirect-db",
                "lookup",
                &lookup,
                c,
                plan.seconds,
                wide.clone(),
            )
            .await?,
        );
        report.scenarios.push(
            measure(
                "redirect-db",
                "kadi",
                &uncached,
                c,
                plan.seconds,
                wide.clone(),
            )
            .await?,
        );
        report.add_ratio("redirect-db", "redirect-db", "lookup", c);
        report.add_ratio("redirect-db", "redirect-hot", "baseline", c);
    }
    drop(uncached);
    drop(lookup);

    eprintln!("memory");
    let fresh = servers::start_kadi(&database, None, &[])?;
    let unknown = scenarios::distinct_unknown_picker();
    let mut looked_up = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while looked_up < plan.memory_lookups && std::time::Instant::now() < deadline {
        let m = drive::run(fresh.address, 50, Duration::from_secs(5), unknown.clone()).await;
        looked_up += m.ok;
    }
    report.memory = Some(MemoryCheck {
        lookups: looked_up,
        rss_mib: fresh.rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0),
        cache_budget_mib: DEFAULT_CACHE_MIB,
    });
    drop(fresh);
    drop(baseline);

    judge(&mut report, &plan);
    report.write(out)?;
    print!("{}", report.markdown());
    drop_database.await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// Sets the targets' verdicts from the figures.
fn judge(report: &mut Report, plan: &Plan) {
    let mut targets = Vec::new();
    for ratio in &report.ratios {
        let (name, threshold) = match (ratio.scenario.as_str(), ratio.reference.as_str()) {
            ("redirect-hot", r) if r.starts_with("baseline") => {
                ("redirect-hot ≥ 70 % of the baseline", 0.7)
            }
            ("redirect-db", r) if r.starts_with("lookup") => {
                ("redirect-db ≥ 60 % of the bare lookup server", 0.6)
            }
            _ => continue,
        };
        targets.push(Target {
            name: format!("{name}, {} connections", ratio.connections),
            measured: format!("{:.0} %", ratio.throughput_ratio * 100.0),
            met: ratio.throughput_ratio >= threshold,
        });
        if ratio.scenario == "redirect-hot" {
            targets.push(Target {
                name: format!(
                    "redirect-hot p99 within 2 × the baseline's, {} connections",
                    ratio.connections
                ),
                measured: format!("{:.2} ×", ratio.p99_ratio),
                met: ratio.p99_ratio <= 2.0,
            });
        }
    }
    for result in report
        .scenarios
        .iter()
        .filter(|r| r.scenario == "redirect-hot" && r.target == "kadi")
    {
        targets.push(Target {
            name: format!(
                "redirect-hot without errors, {} connections",
                result.measurement.connections
            ),
            measured: format!("{} errors", result.measurement.error_count()),
            met: result.measurement.error_count() == 0,
        });
    }
    if let Some(c) = report.click_run.as_ref().and_then(|r| r.clicks) {
        targets.push(Target {
            name: format!(
                "every click of a {} s redirect-hot run stored",
                plan.click_seconds.as_secs()
            ),
            measured: format!(
                "{} served, {} stored, {} dropped, queue ≤ {}",
                c.served, c.stored, c.dropped, c.max_queue_depth
            ),
            met: c.stored == c.served && c.dropped == 0,
        });
    }
    if let Some(m) = &report.memory {
        targets.push(Target {
            name: format!(
                "RSS after {} distinct lookups ≤ cache budget + 64 MiB",
                m.lookups
            ),
            measured: format!(
                "{:.1} MiB (limit {:.0} MiB)",
                m.rss_mib,
                m.cache_budget_mib + 64.0
            ),
            met: m.rss_mib <= m.cache_budget_mib + 64.0 && m.lookups >= plan.memory_lookups,
        });
    }
    report.targets = targets;
}

/// Bytes per link and per event, tables and indexes included.
async fn measure_storage(database: &str) -> anyhow::Result<report::Storage> {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(database).await?;
    sqlx::query("VACUUM ANALYZE").execute(&mut db).await?;
    let (links, links_bytes): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM links), pg_total_relation_size('links')")
            .fetch_one(&mut db)
            .await?;
    let (events, events_bytes): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM events), pg_total_relation_size('events')")
            .fetch_one(&mut db)
            .await?;
    Ok(report::Storage {
        links,
        bytes_per_link: links_bytes as f64 / links.max(1) as f64,
        events,
        bytes_per_event: events_bytes as f64 / events.max(1) as f64,
    })
}

/// Creates a database for the run; the returned closure drops it.
async fn create_database(
    admin_url: &str,
) -> anyhow::Result<(String, impl std::future::Future<Output = ()>)> {
    use sqlx::Connection;
    let name = format!("kadi_loadtest_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .context("cannot reach PostgreSQL")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let mut url = admin_url.to_owned();
    let base = url.rfind('/').context("database URL without a path")?;
    url.truncate(base + 1);
    url.push_str(&name);
    let admin_url = admin_url.to_owned();
    let drop_it = async move {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    };
    Ok((url, drop_it))
}
