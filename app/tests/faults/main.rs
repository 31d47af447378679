//! Fault tests: the real `kadi` binary under load while its own PostgreSQL and
//! Redis processes are stopped, frozen and restarted, and while `kadi` itself
//! is terminated or killed. Each scenario checks what clients saw and what was
//! stored against Kadi's promises, prints its counts and writes them to
//! `target/fault-report/<scenario>.json`, which `docs/failure-modes.md`
//! quotes.
//!
//! Everything runs on 127.0.0.1 with servers private to the test; scenarios
//! run one at a time (see `.config/nextest.toml`) so that their figures do not
//! depend on each other.

#[path = "../common/mod.rs"]
mod common;
mod load;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::postgres::PostgresServer;
use common::{KadiProcess, RedisServer};
use load::{Kind, Load, Tally, Target, Workers};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::time::{sleep, Instant};

/// Links each scenario creates and puts in the cache before the fault.
const CACHED_LINKS: usize = 20;

/// Longest any recovery may take before the scenario fails: the click
/// writer's longest retry pause is 5 s, the pool's acquire timeout 5 s, and
/// CPU is shared with other builds.
const RECOVERY_LIMIT: Duration = Duration::from_secs(40);

/// Scenarios in one process (`cargo test`) run one after another, as
/// nextest's test group makes them do across processes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `kadi` process with its metrics listener.
struct Kadi {
    process: KadiProcess,
    metrics_url: String,
    client: reqwest::Client,
}

impl Kadi {
    fn start(database_url: &str, extra: &[&str]) -> Kadi {
        let metrics_listen = format!("127.0.0.1:{}", common::free_port());
        let mut args = vec![
            "--database-url",
            database_url,
            "--metrics-listen",
            &metrics_listen,
        ];
        args.extend_from_slice(extra);
        Kadi {
            process: KadiProcess::start(&args),
            metrics_url: format!("http://{metrics_listen}/metrics"),
            client: load::client(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.process.base)
    }

    /// The sum of every series of `name` that has all of `labels`.
    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self
            .client
            .get(&self.metrics_url)
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text");
        sum_series(&text, name, labels)
    }

    async fn readiness(&self) -> Option<StatusCode> {
        let response = self.client.get(self.url("/readyz")).send().await.ok()?;
        Some(response.status())
    }

    async fn create_user(&self) -> Result<StatusCode, reqwest::Error> {
        let name = format!("probe{:08x}", rand::random::<u32>());
        let response = self
            .client
            .post(self.url("/users"))
            .json(&json!({"username": name, "email": format!("{name}@example.com")}))
            .send()
            .await?;
        Ok(response.status())
    }
}

/// Sums the samples of a Prometheus text exposition.
fn sum_series(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A user, links in the cache, and the clicks that putting them there cost.
struct Seed {
    target: Target,
    link_ids: Vec<i64>,
    warm_clicks: u64,
}

async fn seed(kadi: &Kadi) -> Seed {
    let client = &kadi.client;
    let user: Value = client
        .post(kadi.url("/users"))
        .json(&json!({"username": "owner", "email": "owner@example.com"}))
        .send()
        .await
        .expect("create user")
        .json()
        .await
        .expect("user");
    let user_id = user["id"].as_i64().expect("user id");
    let (mut codes, mut link_ids) = (Vec::new(), Vec::new());
    for i in 0..CACHED_LINKS {
        let response = client
            .post(kadi.url("/urls"))
            .json(&json!({"user_id": user_id, "original_url": format!("https://example.com/{i}")}))
            .send()
            .await
            .expect("create link");
        assert_eq!(response.status(), StatusCode::CREATED);
        let link: Value = response.json().await.expect("link");
        codes.push(link["short_code"].as_str().expect("code").to_owned());
        link_ids.push(link["id"].as_i64().expect("link id"));
    }
    let mut warm_clicks = 0;
    for code in &codes {
        let response = client.get(kadi.url(&format!("/{code}"))).send().await;
        assert_eq!(response.expect("redirect").status(), StatusCode::FOUND);
        warm_clicks += 1;
    }
    Seed {
        target: Target {
            base: kadi.process.base.clone(),
            cached_codes: Arc::new(codes),
            user_id,
        },
        link_ids,
        warm_clicks,
    }
}

/// A private PostgreSQL, `kadi` on it with `extra` flags, and cached links.
async fn start_scenario(extra: &[&str]) -> (PostgresServer, Kadi, Seed) {
    let pg = PostgresServer::start();
    let kadi = Kadi::start(&pg.url(), extra);
    let seed = seed(&kadi).await;
    (pg, kadi, seed)
}

/// Redirect workers of the scenarios that stop `kadi` itself.
const REDIRECT_WORKERS: [Workers; 1] = [Workers {
    kind: Kind::CachedRedirect,
    count: 8,
    pause: Duration::from_millis(5),
}];

/// A connection of the test's own to the scenario's database.
async fn database(pg: &PostgresServer) -> PgPool {
    PgPool::connect(&pg.url()).await.expect("test connection")
}

/// Click events stored, and the sum of the links' click counts.
async fn stored_clicks(db: &PgPool) -> (i64, i64) {
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'click'")
        .fetch_one(db)
        .await
        .expect("count click events");
    let counted: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(click_count), 0)::BIGINT FROM links")
            .fetch_one(db)
            .await
            .expect("sum click counts");
    (events, counted)
}

/// Waits until at least `served` click events are stored (or the recovery
/// limit passes), then a moment longer for stragglers, and returns the count.
async fn settled_clicks(db: &PgPool, served: u64) -> (i64, i64) {
    let deadline = Instant::now() + RECOVERY_LIMIT;
    while stored_clicks(db).await.0 < served as i64 && Instant::now() < deadline {
        sleep(Duration::from_millis(200)).await;
    }
    sleep(Duration::from_secs(1)).await;
    stored_clicks(db).await
}

/// Rows of `table` among `ids` that are missing.
async fn missing_rows(db: &PgPool, table: &str, ids: &[i64]) -> i64 {
    let present: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE id = ANY($1)"))
            .bind(ids)
            .fetch_one(db)
            .await
            .expect("count rows");
    ids.len() as i64 - present
}

/// What a scenario left behind: its clicks and the rows it was promised.
struct Aftermath {
    served: u64,
    stored: i64,
    counted: i64,
    dropped: f64,
    missing_users: i64,
    missing_links: i64,
}

impl Aftermath {
    /// Waits for the clicks to settle and counts what is stored.
    async fn take(pg: &PostgresServer, kadi: &Kadi, seed: &Seed, tally: &Tally) -> Aftermath {
        let db = database(pg).await;
        let served = seed.warm_clicks + tally.redirects_served();
        let (stored, counted) = settled_clicks(&db, served).await;
        let links = [seed.link_ids.as_slice(), &tally.created_links].concat();
        Aftermath {
            served,
            stored,
            counted,
            dropped: kadi.metric("kadi_clicks_dropped_total", &[]).await,
            missing_users: missing_rows(&db, "users", &tally.created_users).await,
            missing_links: missing_rows(&db, "links", &links).await,
        }
    }

    /// The scenario's own figures with the aftermath added.
    fn with(&self, mut figures: Value) -> Value {
        figures["clicks"] = json!({
            "served": self.served,
            "stored": self.stored,
            "counted_on_links": self.counted,
            "dropped": self.dropped,
        });
        figures["acknowledged_missing"] =
            json!({"users": self.missing_users, "links": self.missing_links});
        figures
    }

    /// Every row acknowledged with a 2xx is there, and every redirect served
    /// has exactly one stored click, counted on its link.
    fn assert_nothing_lost(&self) {
        let (served, stored) = (self.served, self.stored);
        assert_eq!(
            (self.missing_users, self.missing_links),
            (0, 0),
            "acknowledged rows lost"
        );
        assert_eq!(self.dropped, 0.0, "clicks dropped");
        assert_eq!(
            stored, served as i64,
            "clicks served {served}, stored {stored}"
        );
        assert_eq!(
            self.counted, stored,
            "link click counts match the click events"
        );
    }
}

/// Ends a scenario whose `kadi` still runs: counts what is stored, reports
/// it with the scenario's own figures, and checks what every such scenario
/// promises about the requests it sent.
async fn conclude(
    scenario: &str,
    (pg, kadi, seed): (&PostgresServer, &Kadi, &Seed),
    tally: &Tally,
    figures: Value,
) -> Aftermath {
    let aftermath = Aftermath::take(pg, kadi, seed, tally).await;
    report(scenario, tally, aftermath.with(figures));
    assert_cached_redirects_untouched(tally);
    assert_clean_failures(tally, kadi);
    aftermath
}

/// Polls `check` until it holds and returns how long that took; fails the
/// scenario after `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Runs a blocking PostgreSQL command off the runtime's workers.
async fn on_postgres(pg: &Arc<PostgresServer>, action: fn(&PostgresServer)) {
    let pg = pg.clone();
    tokio::task::spawn_blocking(move || action(&pg))
        .await
        .expect("PostgreSQL command");
}

fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// Prints a scenario's figures and writes them to
/// `target/fault-report/<scenario>.json`.
fn report(scenario: &str, tally: &Tally, mut figures: Value) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    figures["scenario"] = json!(scenario);
    figures["machine"] = json!({"cores": cores, "network": "loopback"});
    figures["load"] = tally.to_json();
    let text = serde_json::to_string_pretty(&figures).expect("report JSON");
    println!("{text}");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .join("fault-report");
    std::fs::create_dir_all(&dir).expect("report folder");
    std::fs::write(dir.join(format!("{scenario}.json")), text).expect("write report");
}

/// Redirects of cached links got a redirect every time: no other status, no
/// failed request.
fn assert_cached_redirects_untouched(tally: &Tally) {
    let cached = tally.total(Kind::CachedRedirect);
    assert!(cached.requests > 0, "no cached redirects were sent");
    assert_eq!(
        cached.other_than(&[302]),
        0,
        "cached redirects answered {:?}",
        cached.statuses
    );
    assert_eq!(
        cached.failed(),
        0,
        "cached redirects failed: {:?}",
        cached.errors
    );
}

/// API calls and database lookups failed cleanly if at all: never a 500,
/// never a hang, every 503 with `Retry-After` and the JSON error shape.
fn assert_clean_failures(tally: &Tally, kadi: &Kadi) {
    let failures = kadi.process.log_lines("Request failed");
    for kind in [
        Kind::UnknownCode,
        Kind::CreateUser,
        Kind::CreateLink,
        Kind::ListLinks,
    ] {
        let counts = tally.total(kind);
        let server_errors: u64 = counts
            .statuses
            .iter()
            .filter(|(status, _)| **status >= 500 && **status != 503)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            server_errors,
            0,
            "{}: {:?}, logged: {failures:#?}",
            kind.name(),
            counts.statuses
        );
        assert_eq!(counts.failed(), 0, "{}: {:?}", kind.name(), counts.errors);
        assert_eq!(counts.malformed_unavailable, 0, "{}: bad 503s", kind.name());
    }
}

/// Waits until Kadi takes writes again, keeps the load on for two more
/// seconds in phase `after`, and returns how long the wait took and the tally.
/// Creates the user `name` while a fault lasts: the answer, and how long it
/// took to come.
async fn write_during_fault(kadi: &Kadi, name: &str) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let response = kadi
        .client
        .post(kadi.url("/users"))
        .json(&json!({"username": name, "email": format!("{name}@example.com")}))
        .send()
        .await
        .expect("a write is answered during the fault");
    (response, started.elapsed())
}

async fn finish_after_recovery(kadi: &Kadi, load: Load) -> (Duration, Tally) {
    let waited = wait_until("a write after recovery", RECOVERY_LIMIT, || async {
        kadi.create_user().await.ok() == Some(StatusCode::CREATED)
    })
    .await;
    load.enter("after");
    sleep(Duration::from_secs(2)).await;
    (waited, load.finish().await)
}

const OUTAGE_WORKERS: &[Workers] = &[
    Workers {
        kind: Kind::CachedRedirect,
        count: 6,
        pause: Duration::from_millis(10),
    },
    Workers {
        kind: Kind::UnknownCode,
        count: 1,
        pause: Duration::from_millis(25),
    },
    Workers {
        kind: Kind::CreateUser,
        count: 2,
        pause: Duration::from_millis(25),
    },
    Workers {
        kind: Kind::CreateLink,
        count: 1,
        pause: Duration::from_millis(25),
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_keeps_cached_redirects_and_loses_nothing_acknowledged() {
    let _serial = SERIAL.lock().await;
    let (pg, kadi, seed) = start_scenario(&[]).await;
    let pg = Arc::new(pg);
    let load = Load::start(
        &seed.target,
        OUTAGE_WORKERS,
        &["before", "outage", "recovery", "after"],
    );
    sleep(Duration::from_secs(2)).await;

    // The database goes away.
    load.enter("outage");
    let outage_started = Instant::now();
    on_postgres(&pg, PostgresServer::stop).await;
    let not_ready_after = wait_until("readiness failing", Duration::from_secs(15), || async {
        kadi.readiness().await == Some(StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;

    // A write answers 503, with Retry-After and the error shape, in bounded time.
    let (response, write_answer) = write_during_fault(&kadi, "during").await;
    assert!(
        response.headers().contains_key("retry-after"),
        "503 without Retry-After"
    );
    common::assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
    let remaining = Duration::from_secs(5).saturating_sub(outage_started.elapsed());
    sleep(remaining).await;

    // It comes back; Kadi recovers without a restart.
    load.enter("recovery");
    let outage = outage_started.elapsed();
    on_postgres(&pg, PostgresServer::resume).await;
    let resumed = Instant::now();
    wait_until("readiness after recovery", RECOVERY_LIMIT, || async {
        kadi.readiness().await == Some(StatusCode::OK)
    })
    .await;
    let ready_after = resumed.elapsed();
    let (writes_after, tally) = finish_after_recovery(&kadi, load).await;
    let writes_after = ready_after + writes_after;

    let aftermath = conclude(
        "postgres_outage",
        (&pg, &kadi, &seed),
        &tally,
        json!({
            "outage_ms": ms(outage),
            "not_ready_after_ms": ms(not_ready_after),
            "write_answered_during_outage_ms": ms(write_answer),
            "ready_after_restart_ms": ms(ready_after),
            "writes_after_restart_ms": ms(writes_after),
        }),
    )
    .await;
    let during = tally.api_in_phase("outage");
    assert!(
        during.status(503) > 0,
        "no write saw the outage: {during:?}"
    );
    assert_api_succeeded(&tally, "before");
    assert_api_succeeded(&tally, "after");
    // The promise: clicks served before and during an outage are stored once
    // the database is back, as long as the queue did not overflow.
    aftermath.assert_nothing_lost();
}

/// The database deadline the hang scenario runs `kadi` with.
const HANG_DEADLINE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hang_answers_within_the_deadline_and_loses_nothing_acknowledged() {
    let _serial = SERIAL.lock().await;
    let deadline = HANG_DEADLINE.as_secs().to_string();
    let (pg, kadi, seed) = start_scenario(&["--database-timeout-secs", &deadline]).await;
    let load = Load::start(&seed.target, OUTAGE_WORKERS, &["before", "hang", "after"]);
    sleep(Duration::from_secs(2)).await;

    // The database stops answering but keeps every connection open.
    load.enter("hang");
    pg.freeze();
    let frozen = Instant::now();
    let (response, write_answer) = write_during_fault(&kadi, "hung").await;
    let body = common::assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not answer")),
        "503 names the deadline: {body}"
    );
    let remaining = Duration::from_secs(6).saturating_sub(frozen.elapsed());
    sleep(remaining).await;
    let hang = frozen.elapsed();
    pg.thaw();
    let (writes_after, tally) = finish_after_recovery(&kadi, load).await;

    let during = tally.api_in_phase("hang");
    let aftermath = conclude(
        "postgres_hang",
        (&pg, &kadi, &seed),
        &tally,
        json!({
            "hang_ms": ms(hang),
            "database_deadline_ms": ms(HANG_DEADLINE),
            "write_answered_during_hang_ms": ms(write_answer),
            "slowest_api_answer_during_hang_ms": during.max_latency_ms,
            "writes_after_thaw_ms": ms(writes_after),
        }),
    )
    .await;
    // Without the deadline these requests waited for TCP to give up, minutes;
    // the pool's acquire timeout (5 s) does not cover a connection it holds.
    let bound = HANG_DEADLINE + Duration::from_secs(2);
    assert!(
        write_answer < bound,
        "a write waited {write_answer:?} on a hung database"
    );
    assert!(
        during.status(503) > 0 && during.failed() == 0,
        "API requests during the hang got 503s and no timeouts: {during:?}"
    );
    assert!(
        Duration::from_millis(during.max_latency_ms) < bound,
        "the slowest API answer during the hang took {} ms",
        during.max_latency_ms
    );
    assert_api_succeeded(&tally, "before");
    assert_api_succeeded(&tally, "after");
    // Clicks served while the database hung are stored once it answers, each
    // exactly once: a click batch cut off before its commit rolls back and is
    // retried; a commit already sent is waited for.
    aftermath.assert_nothing_lost();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_keeps_cached_redirects_and_loses_nothing_acknowledged() {
    let _serial = SERIAL.lock().await;
    let (pg, kadi, seed) = start_scenario(&[]).await;
    let pg = Arc::new(pg);
    let load = Load::start(
        &seed.target,
        OUTAGE_WORKERS,
        &["before", "restart", "after"],
    );
    sleep(Duration::from_secs(2)).await;

    load.enter("restart");
    let started = Instant::now();
    on_postgres(&pg, PostgresServer::restart).await;
    let restart = started.elapsed();
    let (writes_after, tally) = finish_after_recovery(&kadi, load).await;
    let writes_after = restart + writes_after;

    let aftermath = conclude(
        "postgres_restart",
        (&pg, &kadi, &seed),
        &tally,
        json!({
            "restart_ms": ms(restart),
            "writes_after_ms": ms(writes_after),
        }),
    )
    .await;
    assert_api_succeeded(&tally, "after");
    aftermath.assert_nothing_lost();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion_keeps_cached_redirects() {
    let _serial = SERIAL.lock().await;
    let (pg, kadi, seed) = start_scenario(&["--database-max-connections", "2"]).await;

    // Waves of 200 requests at once against a pool of two connections.
    let mix = [
        (Kind::CachedRedirect, 120),
        (Kind::UnknownCode, 30),
        (Kind::CreateUser, 25),
        (Kind::ListLinks, 25),
    ];
    let mut tally = Tally::default();
    let mut most_waiting = 0.0_f64;
    for _ in 0..5 {
        let wave = load::burst(&seed.target, &mix, "burst");
        let watch = async {
            let mut most = 0.0_f64;
            for _ in 0..20 {
                most = most.max(kadi.metric("kadi_db_waiting_operations", &[]).await);
                sleep(Duration::from_millis(10)).await;
            }
            most
        };
        let (wave, most) = tokio::join!(wave, watch);
        most_waiting = most_waiting.max(most);
        tally.merge(wave);
    }

    let aftermath = conclude(
        "pool_exhaustion",
        (&pg, &kadi, &seed),
        &tally,
        json!({
            "pool_connections": 2,
            "concurrent_requests": 200,
            "waves": 5,
            "most_operations_waiting_seen": most_waiting,
        }),
    )
    .await;
    aftermath.assert_nothing_lost();
}

/// Lookups Redis answered: hits, misses and known-unknown codes.
async fn redis_answers(kadi: &Kadi) -> f64 {
    let mut sum = 0.0;
    for result in ["hit", "miss", "negative_hit"] {
        sum += kadi
            .metric(
                "kadi_cache_lookups_total",
                &[("tier", "redis"), ("result", result)],
            )
            .await;
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_redirects_and_redis_is_used_again() {
    let _serial = SERIAL.lock().await;
    let pg = PostgresServer::start();
    let mut redis = RedisServer::start();
    let kadi = Kadi::start(&pg.url(), &["--redis-url", &redis.url()]);
    kadi.process
        .wait_for_log("Subscribed to cache invalidations")
        .await;
    let seed = seed(&kadi).await;
    let workers = [
        Workers {
            kind: Kind::CachedRedirect,
            count: 6,
            pause: Duration::from_millis(10),
        },
        Workers {
            kind: Kind::UnknownCode,
            count: 1,
            pause: Duration::from_millis(25),
        },
    ];
    let phases = ["before", "frozen", "down", "back", "after"];
    let load = Load::start(&seed.target, &workers, &phases);
    sleep(Duration::from_secs(2)).await;

    // Redis hangs: connections stay open, nothing is answered.
    load.enter("frozen");
    redis.freeze();
    sleep(Duration::from_secs(3)).await;

    // Redis dies; local entries are trusted for a second only, then lookups
    // go past Redis to the database.
    load.enter("down");
    redis.stop();
    sleep(Duration::from_secs(4)).await;
    let errors_while_down = kadi.metric("kadi_redis_errors_total", &[]).await;
    let up_while_down = kadi.metric("kadi_redis_up", &[]).await;

    // Redis returns, empty.
    load.enter("back");
    redis.resume();
    let back_after = wait_until("Kadi using Redis again", RECOVERY_LIMIT, || async {
        kadi.metric("kadi_redis_up", &[]).await == 1.0
            && kadi.metric("kadi_cache_invalidation_subscribed", &[]).await == 1.0
    })
    .await;
    let answered_before = redis_answers(&kadi).await;
    load.enter("after");
    sleep(Duration::from_secs(2)).await;
    let tally = load.finish().await;
    let answered_after = redis_answers(&kadi).await;
    let mut connection = redis::Client::open(redis.url())
        .expect("Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("kadi:link:*")
        .query_async(&mut connection)
        .await
        .expect("KEYS");

    let mut lookups = serde_json::Map::new();
    for result in ["hit", "miss", "negative_hit", "error", "skipped"] {
        let n = kadi
            .metric(
                "kadi_cache_lookups_total",
                &[("tier", "redis"), ("result", result)],
            )
            .await;
        lookups.insert(result.to_owned(), json!(n));
    }
    let aftermath = conclude(
        "redis_outage",
        (&pg, &kadi, &seed),
        &tally,
        json!({
            "redis_errors_while_down": errors_while_down,
            "redis_up_while_down": up_while_down,
            "redis_used_again_after_ms": ms(back_after),
            "redis_answers_after_return": answered_after - answered_before,
            "redis_keys_after_return": keys.len(),
            "redis_lookups": lookups,
        }),
    )
    .await;
    let unknown = tally.total(Kind::UnknownCode);
    assert_eq!(unknown.other_than(&[404]), 0, "{:?}", unknown.statuses);
    assert_eq!(unknown.failed(), 0, "{:?}", unknown.errors);
    assert_eq!(up_while_down, 0.0, "kadi_redis_up while Redis is down");
    assert!(errors_while_down > 0.0, "no Redis error was counted");
    assert!(
        answered_after > answered_before,
        "no lookup was answered by Redis after it returned"
    );
    assert!(
        !keys.is_empty(),
        "Kadi stored nothing in the returned Redis"
    );
    aftermath.assert_nothing_lost();
}

/// Seconds of grace the SIGTERM scenario gives in-flight requests.
const SHUTDOWN_GRACE_SECS: u64 = 10;

/// Sends `POST /users` over a connection of its own, its body in two parts
/// `stall` apart, so that the request is in flight on the server while the
/// rest of the body is awaited. Returns the status and the new user's id.
async fn slow_create_user(base: String, name: String, stall: Duration) -> (u16, i64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"username": name, "email": format!("{name}@example.com")}).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to kadi");
    let head = format!(
        "POST /users HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream.write_all(first.as_bytes()).await.expect("send body");
    sleep(stall).await;
    stream.write_all(rest.as_bytes()).await.expect("send body");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("an in-flight request is answered during shutdown");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let id = response
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<Value>(body).ok())
        .and_then(|body| body["id"].as_i64())
        .unwrap_or(0);
    (status, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_requests_and_stores_every_click() {
    let _serial = SERIAL.lock().await;
    let grace = SHUTDOWN_GRACE_SECS.to_string();
    let (pg, kadi, seed) = start_scenario(&["--shutdown-grace-secs", &grace]).await;
    let workers = REDIRECT_WORKERS;
    let load = Load::start(&seed.target, &workers, &["before", "terminating", "exited"]);
    sleep(Duration::from_secs(2)).await;

    // Requests whose bodies are still on their way when SIGTERM arrives.
    let in_flight: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(slow_create_user(
                kadi.process.base.clone(),
                format!("inflight{i}"),
                Duration::from_millis(1500),
            ))
        })
        .collect();
    sleep(Duration::from_millis(300)).await;

    load.enter("terminating");
    let started = Instant::now();
    let (exit, log) = kadi.process.terminate().await;
    let exit_after = started.elapsed();
    load.enter("exited");
    sleep(Duration::from_millis(200)).await;
    let tally = load.finish().await;
    let mut in_flight_ids = Vec::new();
    let mut in_flight_statuses = Vec::new();
    for request in in_flight {
        let (status, id) = request.await.expect("in-flight request");
        in_flight_statuses.push(status);
        in_flight_ids.push(id);
    }

    let db = database(&pg).await;
    let served = seed.warm_clicks + tally.redirects_served();
    let (stored, counted) = stored_clicks(&db).await;
    let missing_in_flight = missing_rows(&db, "users", &in_flight_ids).await;
    report(
        "sigterm",
        &tally,
        json!({
            "shutdown_grace_secs": SHUTDOWN_GRACE_SECS,
            "exit_after_sigterm_ms": ms(exit_after),
            "exit_status": exit.code(),
            "in_flight_statuses": in_flight_statuses,
            "clicks": {"served": served, "stored": stored, "counted_on_links": counted,
                       "lost": served as i64 - stored},
        }),
    );

    assert!(exit.success(), "kadi exited with {exit}:\n{log}");
    assert!(log.contains("Click queue drained"), "{log}");
    assert!(
        exit_after < Duration::from_secs(SHUTDOWN_GRACE_SECS),
        "exit took {exit_after:?}"
    );
    assert_eq!(in_flight_statuses, [201, 201, 201], "in-flight requests");
    assert_eq!(missing_in_flight, 0, "users created by in-flight requests");
    // Redirects got a redirect or no connection at all: refused once the
    // listener closed, or reset when sent on an idle keep-alive connection
    // at the moment shutdown closed it.
    // Limitation: that race is HTTP/1.1's own; Kadi never read such a
    // request, and clients (browsers, proxies) retry it on a new connection.
    // It can hit each of the generator's connections once at most.
    let redirects = tally.total(Kind::CachedRedirect);
    assert_eq!(redirects.other_than(&[302]), 0, "{:?}", redirects.statuses);
    let resets = redirects.errors.get("reset").copied().unwrap_or(0);
    let refused = redirects.errors.get("connect").copied().unwrap_or(0);
    assert_eq!(
        resets + refused,
        redirects.failed(),
        "{:?}",
        redirects.errors
    );
    assert!(resets <= workers[0].count as u64, "{resets} resets");
    let before = tally.in_phase("before", Kind::CachedRedirect);
    assert_eq!(before.errors.get("connect"), None, "{:?}", before.errors);
    // Every redirect a client received has its click stored, and no click
    // was stored for a request whose answer was lost.
    assert_eq!(
        stored, served as i64,
        "clicks served {served}, stored {stored}"
    );
    assert_eq!(counted, stored, "link click counts match the click events");
}

/// Click queue capacity of the SIGKILL scenario: small enough that the loss
/// bound it implies means something.
const KILL_QUEUE_CAPACITY: usize = 4_096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_at_most_the_queue_and_one_batch() {
    let _serial = SERIAL.lock().await;
    let capacity = KILL_QUEUE_CAPACITY.to_string();
    let (pg, kadi, seed) = start_scenario(&["--click-queue-capacity", &capacity]).await;
    let workers = REDIRECT_WORKERS;
    let load = Load::start(&seed.target, &workers, &["before", "killed"]);
    sleep(Duration::from_secs(3)).await;
    let dropped = kadi.metric("kadi_clicks_dropped_total", &[]).await;

    // Requests sent from here on may meet the kill; those sent before are
    // long answered when it comes.
    load.enter("killed");
    sleep(Duration::from_millis(100)).await;
    // Dropping the process handle sends SIGKILL.
    drop(kadi);
    sleep(Duration::from_millis(300)).await;
    let tally = load.finish().await;

    let db = database(&pg).await;
    let served = seed.warm_clicks + tally.redirects_served();
    let (stored, counted) = stored_clicks(&db).await;
    let lost = served as i64 - stored;
    let bound = (KILL_QUEUE_CAPACITY + kadi::clicks::MAX_BATCH) as i64;
    report(
        "sigkill",
        &tally,
        json!({
            "click_queue_capacity": KILL_QUEUE_CAPACITY,
            "max_batch": kadi::clicks::MAX_BATCH,
            "dropped_before_kill": dropped,
            "clicks": {"served": served, "stored": stored, "counted_on_links": counted,
                       "lost": lost, "loss_bound": bound},
        }),
    );

    assert_eq!(dropped, 0.0, "the queue overflowed before the kill");
    let before = tally.in_phase("before", Kind::CachedRedirect);
    assert_eq!(before.other_than(&[302]), 0, "{:?}", before.statuses);
    assert_eq!(before.failed(), 0, "{:?}", before.errors);
    // A request answered by the kernel's buffers after the kill, or killed
    // between storing its click and answering, can tip either way by the
    // number of requests in flight, one per worker.
    let in_flight = workers[0].count as i64;
    assert!(
        lost >= -in_flight,
        "stored {stored} clicks for {served} redirects"
    );
    assert!(lost <= bound, "lost {lost} clicks, bound {bound}");
    assert_eq!(counted, stored, "link click counts match the click events");
}

/// Every API call of `phase` got a 200 or a 201.
fn assert_api_succeeded(tally: &Tally, phase: &str) {
    let api = tally.api_in_phase(phase);
    assert_eq!(
        api.other_than(&[200, 201]),
        0,
        "{phase}: {:?}",
        api.statuses
    );
}
