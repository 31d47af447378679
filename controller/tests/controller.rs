//! The whole `kube::runtime::Controller` against the fake API server: it
//! lists and watches ShortLinks, reconciles them into live links, writes
//! status, and releases links of deleted resources.

mod harness;

use std::time::{Duration, Instant};

use harness::{shortlink, World};
use kadi_controller::reconcile;
use kadi_controller::resource::{Phase, ShortLink, FINALIZER};
use kube::Api;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::oneshot;

/// Polls until `check` holds, failing after ten seconds (the controller
/// works asynchronously; no expiry is waited for here).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_watches_reconciles_and_finalizes() {
    let world = World::new().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let controller = tokio::spawn(reconcile::run(
        Api::<ShortLink>::all(world.client.clone()),
        world.ctx.clone(),
        async move {
            let _ = stopped.await;
        },
    ));

    // A new resource becomes a live link with a Ready status.
    world
        .create(shortlink("launch-notes", json!({"shortCode": "launch"})))
        .await;
    eventually("the ShortLink is Active", || async {
        let object = world.get("launch-notes").await;
        object.status.and_then(|s| s.phase) == Some(Phase::Active)
    })
    .await;
    let object = world.get("launch-notes").await;
    assert_eq!(object.metadata.finalizers, Some(vec![FINALIZER.to_owned()]));
    let (code, location) = world.follow("launch").await;
    assert_eq!(code, StatusCode::FOUND);
    assert_eq!(
        location.as_deref(),
        Some("https://example.com/launch-notes")
    );

    // A spec change reaches the redirect.
    world
        .patch_spec("launch-notes", json!({"url": "https://example.com/v2"}))
        .await;
    eventually("the new target is served", || async {
        world.follow("launch").await.1.as_deref() == Some("https://example.com/v2")
    })
    .await;
    eventually("status observes generation 2", || async {
        let status = world.get("launch-notes").await.status;
        status.and_then(|s| s.observed_generation) == Some(2)
    })
    .await;

    // The controller settles: its own status write does not loop.
    let writes = world.status_writes("launch-notes");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.status_writes("launch-notes"), writes);

    // Deletion goes through the finalizer, and the link stops at once.
    world.delete("launch-notes").await;
    eventually("the resource is gone", || async {
        world.api().get_opt("launch-notes").await.unwrap().is_none()
    })
    .await;
    let gone = Instant::now();
    eventually("the redirect stops", || async {
        world.follow("launch").await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert!(gone.elapsed() < Duration::from_secs(1));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), controller)
        .await
        .expect("the controller stops on shutdown")
        .unwrap();
    world.stop().await;
}
