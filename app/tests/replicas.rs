//! Two `kadi` processes sharing PostgreSQL and Redis: a change made through
//! one stops the other from serving the old link within a second, also while
//! and after Redis restarts; and redirects keep answering while Redis is down.

mod common;

use std::time::Duration;

use common::{KadiProcess, RedisServer, TestDb};
use kadi::store::Backend;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

/// The promise: no replica serves a changed link longer than this after the
/// change is committed.
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);

struct Pair {
    a: KadiProcess,
    b: KadiProcess,
    client: Client,
    _db: TestDb,
}

async fn start_pair(redis: &RedisServer) -> Pair {
    let db = TestDb::new(Backend::Postgres).await;
    // Migrate once up front so that both processes start on a ready schema.
    db.store().await.close().await;
    let args = [
        "--database-url",
        db.url.as_str(),
        "--redis-url",
        &redis.url(),
    ];
    let a = KadiProcess::start(&args);
    let b = KadiProcess::start(&args);
    a.wait_for_log("Subscribed to cache invalidations").await;
    b.wait_for_log("Subscribed to cache invalidations").await;
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Pair {
        a,
        b,
        client,
        _db: db,
    }
}

impl Pair {
    async fn create_link(&self) -> (i64, String) {
        let user: Value = self
            .client
            .post(format!("{}/users", self.a.base))
            .json(&json!({"username": format!("u{}", rand::random::<u32>()),
                          "email": format!("{}@example.com", rand::random::<u32>())}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url: Value = self
            .client
            .post(format!("{}/urls", self.a.base))
            .json(&json!({"user_id": user["id"], "original_url": "https://example.com/old"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            url["id"].as_i64().unwrap(),
            url["short_code"].as_str().unwrap().to_owned(),
        )
    }

    async fn redirect(&self, base: &str, code: &str) -> (StatusCode, Option<String>) {
        let response = self
            .client
            .get(format!("{base}/{code}"))
            .send()
            .await
            .unwrap();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), location)
    }

    /// Makes both replicas cache the link as it is now.
    async fn warm(&self, code: &str) {
        for base in [&self.a.base, &self.b.base] {
            for _ in 0..3 {
                assert_eq!(self.redirect(base, code).await.0, StatusCode::FOUND);
            }
        }
    }

    async fn change(&self, id: i64, body: Value) {
        let response = self
            .client
            .put(format!("{}/urls/{id}", self.a.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// Polls both replicas until each answers as `expected`, and returns how
    /// long the slower one took.
    async fn time_until(&self, code: &str, expected: (StatusCode, Option<&str>)) -> Duration {
        let started = Instant::now();
        let mut slowest = Duration::ZERO;
        for base in [&self.a.base, &self.b.base] {
            loop {
                let (status, location) = self.redirect(base, code).await;
                if status == expected.0 && location.as_deref() == expected.1 {
                    slowest = slowest.max(started.elapsed());
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "{base} still answers {status} {location:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        slowest
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_both_replicas_within_a_second() {
    let redis = RedisServer::start();
    let pair = start_pair(&redis).await;

    // Deactivation.
    let (id, code) = pair.create_link().await;
    pair.warm(&code).await;
    pair.change(id, json!({"is_active": false})).await;
    let took = pair.time_until(&code, (StatusCode::NOT_FOUND, None)).await;
    assert!(took < PROPAGATION_BOUND, "deactivation took {took:?}");

    // A new target.
    let (id, code) = pair.create_link().await;
    pair.warm(&code).await;
    pair.change(id, json!({"original_url": "https://example.com/new"}))
        .await;
    let took = pair
        .time_until(&code, (StatusCode::FOUND, Some("https://example.com/new")))
        .await;
    assert!(took < PROPAGATION_BOUND, "target update took {took:?}");

    // Deletion.
    let (id, code) = pair.create_link().await;
    pair.warm(&code).await;
    let response = pair
        .client
        .delete(format!("{}/urls/{id}", pair.a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let took = pair.time_until(&code, (StatusCode::NOT_FOUND, None)).await;
    assert!(took < PROPAGATION_BOUND, "deletion took {took:?}");

    // Expiry: the link expires 1.5 s from now while cached everywhere.
    let (id, code) = pair.create_link().await;
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    pair.change(id, json!({"expires_at": expires_at.to_rfc3339()}))
        .await;
    pair.warm(&code).await;
    let until_expiry = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let took = pair.time_until(&code, (StatusCode::GONE, None)).await;
    let late = took.saturating_sub(until_expiry);
    assert!(
        late < PROPAGATION_BOUND,
        "expiry was enforced {late:?} late"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_both_replicas_across_a_redis_restart() {
    let mut redis = RedisServer::start();
    let pair = start_pair(&redis).await;
    let (id, code) = pair.create_link().await;
    pair.warm(&code).await;

    // While Redis is down nobody hears invalidations; replicas trust their
    // local entries for at most a second.
    redis.stop();
    pair.change(
        id,
        json!({"original_url": "https://example.com/during-outage"}),
    )
    .await;
    let took = pair
        .time_until(
            &code,
            (StatusCode::FOUND, Some("https://example.com/during-outage")),
        )
        .await;
    assert!(
        took < PROPAGATION_BOUND + Duration::from_millis(200),
        "change during outage took {took:?}"
    );

    // Redis returns: both resubscribe and invalidation is immediate again.
    redis.resume();
    let resubscribed = |p: &KadiProcess| p.log_count("Subscribed to cache invalidations") >= 2;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(resubscribed(&pair.a) && resubscribed(&pair.b)) {
        assert!(Instant::now() < deadline, "replicas did not resubscribe");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pair.warm(&code).await;
    pair.change(
        id,
        json!({"original_url": "https://example.com/after-restart"}),
    )
    .await;
    let took = pair
        .time_until(
            &code,
            (StatusCode::FOUND, Some("https://example.com/after-restart")),
        )
        .await;
    assert!(
        took < PROPAGATION_BOUND,
        "change after restart took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_keep_answering_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let pair = start_pair(&redis).await;
    let mut links = Vec::new();
    for _ in 0..5 {
        links.push(pair.create_link().await);
    }
    let mut answered = 0;
    for round in 0..300 {
        if round == 100 {
            redis.stop();
        }
        let (_, code) = &links[round % links.len()];
        let base = if round % 2 == 0 {
            &pair.a.base
        } else {
            &pair.b.base
        };
        let (status, location) = pair.redirect(base, code).await;
        assert_eq!(status, StatusCode::FOUND, "round {round}");
        assert_eq!(
            location.as_deref(),
            Some("https://example.com/old"),
            "round {round}"
        );
        answered += 1;
        if round >= 100 && round % 50 == 0 {
            // Let local entries age past the trusted second, so that lookups
            // really go past the dead Redis to the database.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    assert_eq!(answered, 300);
    // Unknown codes still answer 404, not an error.
    assert_eq!(
        pair.redirect(&pair.a.base, "unknowncode").await.0,
        StatusCode::NOT_FOUND
    );
}
