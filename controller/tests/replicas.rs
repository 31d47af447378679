//! The production topology: the reconciler and a `kadi` service with caches
//! of their own, sharing only PostgreSQL and Redis. A change the controller
//! commits stops being served by `kadi` within one second.

mod harness;

use std::time::{Duration, Instant};

use harness::redis_server::RedisServer;
use harness::{shortlink, World};
use reqwest::StatusCode;
use serde_json::json;

async fn within_a_second(world: &World, code: &str, want: (StatusCode, Option<&str>)) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (status, location) = world.follow(code).await;
        if (status, location.as_deref()) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/{code} still answers {status} {location:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_a_separate_kadi_service_within_a_second() {
    let redis = RedisServer::start();
    let world = World::with_redis(&redis.url()).await;
    world.create(shortlink("launch-notes", json!({}))).await;
    world.settle("launch-notes").await.unwrap();
    // Warm the kadi service's own cache.
    let first = (StatusCode::FOUND, Some("https://example.com/launch-notes"));
    within_a_second(&world, "launch-notes", first).await;
    assert_eq!(world.follow("launch-notes").await.1.as_deref(), first.1);

    world
        .patch_spec("launch-notes", json!({"url": "https://example.com/v2"}))
        .await;
    world.reconcile("launch-notes").await.unwrap();
    within_a_second(
        &world,
        "launch-notes",
        (StatusCode::FOUND, Some("https://example.com/v2")),
    )
    .await;

    world.delete("launch-notes").await;
    world.reconcile("launch-notes").await.unwrap();
    within_a_second(&world, "launch-notes", (StatusCode::NOT_FOUND, None)).await;
    world.stop().await;
}
