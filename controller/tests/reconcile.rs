//! The real reconciler, one call at a time, against the fake API server, real
//! PostgreSQL behind the link service, and a real `kadi` service that shares
//! that link service and its cache. Time moves by the test clock, never by
//! sleeping.

mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Duration as Span;
use harness::{shortlink, World};
use kadi_controller::error::{Error, Recovery};
use kadi_controller::reconcile::error_policy;
use kadi_controller::resource::{Phase, FINALIZER};
use kube::runtime::controller::Action;
use reqwest::{Method, StatusCode};
use serde_json::json;

const OWNER: &str = "marketing/launch-notes";

/// Polls `GET /{code}` until it answers `status`, failing after one second.
async fn answers_within_a_second(world: &World, code: &str, status: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let (got, _) = world.follow(code).await;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/{code} still answers {got}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ready(world_status: &kadi_controller::resource::ShortLinkStatus) -> (&str, &str) {
    let condition = world_status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    (condition.status.as_str(), condition.reason.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_shortlink_gets_a_finalizer_a_live_link_and_ready_status() {
    let world = World::new().await;
    world
        .create(shortlink(
            "launch-notes",
            json!({"shortCode": "launch", "redirectStatus": 307}),
        ))
        .await;

    // The first reconcile only adds the finalizer.
    assert_eq!(
        world.reconcile("launch-notes").await.unwrap(),
        Action::await_change()
    );
    let object = world.get("launch-notes").await;
    assert_eq!(object.metadata.finalizers, Some(vec![FINALIZER.to_owned()]));
    assert!(world.store.link_by_code("launch").await.unwrap().is_none());

    let action = world.reconcile("launch-notes").await.unwrap();
    assert_eq!(action, Action::requeue(world.ctx.settings.resync));
    let object = world.get("launch-notes").await;
    let status = object.status.expect("status");
    assert_eq!(status.phase, Some(Phase::Active));
    assert_eq!(ready(&status), ("True", "Active"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.short_code.as_deref(), Some("launch"));
    assert_eq!(
        status.short_url.as_deref(),
        Some("http://sho.rt.test/launch")
    );
    assert_eq!(status.clicks, Some(0));
    assert_eq!(status.expires_at, None);

    let link = world
        .store
        .link_by_code("launch")
        .await
        .unwrap()
        .expect("link");
    assert_eq!(link.managed_by.as_deref(), Some(OWNER));
    assert_eq!(link.user_id, None);
    assert_eq!(world.link_events(link.id).await, ["created"]);
    let (code, location) = world.follow("launch").await;
    assert_eq!(code, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        location.as_deref(),
        Some("https://example.com/launch-notes")
    );

    // Status goes by server-side apply under the controller's field manager.
    let patch = world
        .apiserver
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH && r.path.ends_with("/launch-notes/status"))
        .expect("status patch");
    assert_eq!(patch.content_type, "application/apply-patch+yaml");
    assert!(
        patch.query.contains("fieldManager=kadi-controller"),
        "{}",
        patch.query
    );
    assert!(patch.query.contains("force=true"), "{}", patch.query);
    assert!(world
        .kube_events()
        .contains(&("Normal".into(), "LinkCreated".into())));
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_change_updates_the_link_and_drops_the_cached_code() {
    let world = World::new().await;
    world.create(shortlink("launch-notes", json!({}))).await;
    world.settle("launch-notes").await.unwrap();
    // The first redirect caches the link in the kadi service.
    assert_eq!(
        world.follow("launch-notes").await.1.as_deref(),
        Some("https://example.com/launch-notes")
    );

    world
        .patch_spec(
            "launch-notes",
            json!({"url": "https://example.com/v2", "redirectStatus": 301}),
        )
        .await;
    world.reconcile("launch-notes").await.unwrap();

    // Without the invalidation the cached target would live for a minute.
    let (code, location) = world.follow("launch-notes").await;
    assert_eq!(code, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(location.as_deref(), Some("https://example.com/v2"));
    let status = world.get("launch-notes").await.status.unwrap();
    assert_eq!(status.observed_generation, Some(2));
    let link = world
        .store
        .link_by_code("launch-notes")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(world.link_events(link.id).await, ["created", "updated"]);
    assert!(world
        .kube_events()
        .contains(&("Normal".into(), "LinkUpdated".into())));
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_code_sets_ready_false_and_resolves_when_freed() {
    let world = World::new().await;
    // A link created through the HTTP API holds the code.
    let held = world
        .links
        .create_link(kadi::links::LinkRequest {
            original_url: "https://example.com/theirs".into(),
            short_code: Some("launch".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    world
        .create(shortlink("launch-notes", json!({"shortCode": "launch"})))
        .await;

    let error = world.settle("launch-notes").await.unwrap_err();
    assert!(
        matches!(&error, Error::CodeTaken { holder: None, .. }),
        "{error:?}"
    );
    assert_eq!(error.reason(), "ShortCodeTaken");
    let object = world.get("launch-notes").await;
    let action = error_policy(Arc::new(object.clone()), &error, world.ctx.clone());
    assert_eq!(action, Action::requeue(world.ctx.settings.conflict_retry));
    let status = object.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Conflict));
    assert_eq!(ready(&status), ("False", "ShortCodeTaken"));
    assert!(world
        .kube_events()
        .contains(&("Warning".into(), "ShortCodeTaken".into())));

    // Nothing was overwritten.
    assert_eq!(
        world.follow("launch").await.1.as_deref(),
        Some("https://example.com/theirs")
    );
    let link = world.store.link_by_code("launch").await.unwrap().unwrap();
    assert_eq!((link.id, link.managed_by), (held.id, None));

    // A second conflicting reconcile writes nothing and warns no more.
    let writes = world.status_writes("launch-notes");
    assert!(world.reconcile("launch-notes").await.is_err());
    assert_eq!(world.status_writes("launch-notes"), writes);
    let warnings = world
        .kube_events()
        .iter()
        .filter(|(t, _)| t == "Warning")
        .count();
    assert_eq!(warnings, 1);

    // Once the code is freed, the next look takes it.
    world.links.delete_link(held.id).await.unwrap();
    world.reconcile("launch-notes").await.unwrap();
    let status = world.get("launch-notes").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Active));
    assert_eq!(
        world.follow("launch").await.1.as_deref(),
        Some("https://example.com/launch-notes")
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_held_by_another_shortlink_names_it() {
    let world = World::new().await;
    world
        .create(shortlink("first", json!({"shortCode": "launch"})))
        .await;
    world.settle("first").await.unwrap();
    world
        .create(shortlink("second", json!({"shortCode": "launch"})))
        .await;
    let error = world.settle("second").await.unwrap_err();
    assert!(
        matches!(&error, Error::CodeTaken { holder: Some(h), .. } if h == "marketing/first"),
        "{error:?}"
    );
    let status = world.get("second").await.status.unwrap();
    assert!(status.conditions[0]
        .message
        .contains("ShortLink marketing/first"));
    assert_eq!(
        world.follow("launch").await.1.as_deref(),
        Some("https://example.com/first")
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deactivates_the_link_at_expires_at_and_a_new_ttl_revives_it() {
    let world = World::with_settings(|s| s.resync = Duration::from_secs(7 * 24 * 3600)).await;
    let created = world.now();
    world
        .create(shortlink("launch-notes", json!({"ttl": "72h"})))
        .await;

    // The requeue comes exactly at the expiry.
    let action = world.settle("launch-notes").await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(72 * 3600)));
    let status = world.get("launch-notes").await.status.unwrap();
    assert_eq!(status.expires_at, Some(created + Span::hours(72)));
    assert_eq!(world.follow("launch-notes").await.0, StatusCode::FOUND);

    // One second early nothing happens.
    world.clock.advance(Span::hours(72) - Span::seconds(1));
    assert_eq!(
        world.reconcile("launch-notes").await.unwrap(),
        Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        world.get("launch-notes").await.status.unwrap().phase,
        Some(Phase::Active)
    );

    world.clock.advance(Span::seconds(1));
    world.reconcile("launch-notes").await.unwrap();
    answers_within_a_second(&world, "launch-notes", StatusCode::NOT_FOUND).await;
    let status = world.get("launch-notes").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Expired));
    assert_eq!(ready(&status), ("True", "Expired"));
    let link = world
        .store
        .link_by_code("launch-notes")
        .await
        .unwrap()
        .expect("kept");
    assert!(!link.is_active);
    assert_eq!(world.link_events(link.id).await, ["created", "expired"]);
    assert!(world
        .kube_events()
        .contains(&("Normal".into(), "LinkExpired".into())));

    // Expiry is recorded once.
    world.clock.advance(Span::hours(1));
    world.reconcile("launch-notes").await.unwrap();
    assert_eq!(world.link_events(link.id).await, ["created", "expired"]);

    // A longer ttl revives it and re-times the requeue.
    world
        .patch_spec("launch-notes", json!({"ttl": "144h"}))
        .await;
    let action = world.reconcile("launch-notes").await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(71 * 3600)));
    let status = world.get("launch-notes").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Active));
    assert_eq!(status.expires_at, Some(created + Span::hours(144)));
    answers_within_a_second(&world, "launch-notes", StatusCode::FOUND).await;

    // Moving to an absolute expiry re-times it again.
    let at = created + Span::days(30);
    world
        .patch_spec(
            "launch-notes",
            json!({"ttl": null, "expiresAt": at.to_rfc3339()}),
        )
        .await;
    world.reconcile("launch-notes").await.unwrap();
    let status = world.get("launch-notes").await.status.unwrap();
    assert_eq!(status.expires_at, Some(at));
    let link = world
        .store
        .link_by_code("launch-notes")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.expires_at, Some(at));
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_with_deactivate_keeps_the_link_inactive_with_its_analytics() {
    let world = World::new().await;
    world.create(shortlink("launch-notes", json!({}))).await;
    world.settle("launch-notes").await.unwrap();
    assert_eq!(world.follow("launch-notes").await.0, StatusCode::FOUND);

    world.delete("launch-notes").await;
    let object = world.get("launch-notes").await;
    assert!(
        object.metadata.deletion_timestamp.is_some(),
        "the finalizer holds the resource"
    );
    assert_eq!(
        world.reconcile("launch-notes").await.unwrap(),
        Action::await_change()
    );
    assert!(world.api().get_opt("launch-notes").await.unwrap().is_none());

    answers_within_a_second(&world, "launch-notes", StatusCode::NOT_FOUND).await;
    let link = world
        .store
        .link_by_code("launch-notes")
        .await
        .unwrap()
        .expect("kept");
    assert!(!link.is_active);
    assert_eq!(link.managed_by.as_deref(), Some(OWNER));
    assert_eq!(world.link_events(link.id).await, ["created", "updated"]);
    assert!(world
        .kube_events()
        .contains(&("Normal".into(), "LinkReleased".into())));
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_with_delete_frees_the_code() {
    let world = World::new().await;
    world
        .create(shortlink(
            "launch-notes",
            json!({"reclaimPolicy": "Delete"}),
        ))
        .await;
    world.settle("launch-notes").await.unwrap();
    world.delete("launch-notes").await;
    world.reconcile("launch-notes").await.unwrap();
    assert!(world.api().get_opt("launch-notes").await.unwrap().is_none());
    answers_within_a_second(&world, "launch-notes", StatusCode::NOT_FOUND).await;
    assert!(world
        .store
        .link_by_code("launch-notes")
        .await
        .unwrap()
        .is_none());
    assert!(world.links.managed_links(OWNER).await.unwrap().is_empty());
    // The code is free for anyone.
    world
        .links
        .create_link(kadi::links::LinkRequest {
            original_url: "https://example.com/next".into(),
            short_code: Some("launch-notes".into()),
            ..Default::default()
        })
        .await
        .expect("code is free");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_backs_off_and_recovers() {
    let world = World::new().await;
    world.create(shortlink("launch-notes", json!({}))).await;
    world.settle("launch-notes").await.unwrap();
    world
        .patch_spec(
            "launch-notes",
            json!({"url": "https://example.com/after-outage"}),
        )
        .await;

    world.proxy.fail();
    let mut delays = Vec::new();
    for _ in 0..4 {
        let error = world.reconcile("launch-notes").await.unwrap_err();
        // A cut connection surfaces as a protocol error (`StoreFailed`), a
        // refused one after the pool's timeout as `StoreUnavailable`; both
        // are transient.
        assert!(
            matches!(error.reason(), "StoreUnavailable" | "StoreFailed"),
            "{error:?}"
        );
        assert_eq!(error.recovery(), Recovery::Backoff);
        let object = world.get("launch-notes").await;
        delays.push(error_policy(Arc::new(object), &error, world.ctx.clone()));
    }
    let expected: Vec<Action> = [100, 200, 400, 800]
        .iter()
        .map(|ms| Action::requeue(Duration::from_millis(*ms)))
        .collect();
    assert_eq!(delays, expected);
    // Status still shows the last known truth.
    assert_eq!(
        world
            .get("launch-notes")
            .await
            .status
            .unwrap()
            .observed_generation,
        Some(1)
    );

    world.proxy.recover();
    world.reconcile("launch-notes").await.expect("recovered");
    assert_eq!(
        world.follow("launch-notes").await.1.as_deref(),
        Some("https://example.com/after-outage")
    );
    assert_eq!(
        world
            .get("launch-notes")
            .await
            .status
            .unwrap()
            .observed_generation,
        Some(2)
    );

    // Success resets the backoff.
    world.proxy.fail();
    let error = world.reconcile("launch-notes").await.unwrap_err();
    let object = world.get("launch-notes").await;
    let action = error_policy(Arc::new(object), &error, world.ctx.clone());
    assert_eq!(action, Action::requeue(Duration::from_millis(100)));
    world.proxy.recover();
    let metrics = world.metrics.render();
    assert!(metrics.contains("result=\"error\""), "{metrics}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_not_rewritten_when_nothing_changed_and_clicks_refresh_at_resync() {
    let world = World::new().await;
    world.create(shortlink("launch-notes", json!({}))).await;
    world.settle("launch-notes").await.unwrap();
    assert_eq!(world.status_writes("launch-notes"), 1);
    for _ in 0..3 {
        world.reconcile("launch-notes").await.unwrap();
    }
    assert_eq!(world.status_writes("launch-notes"), 1);

    // Clicks do not rewrite status on their own...
    for _ in 0..3 {
        assert_eq!(world.follow("launch-notes").await.0, StatusCode::FOUND);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while world
        .store
        .link_by_code("launch-notes")
        .await
        .unwrap()
        .unwrap()
        .click_count
        < 3
    {
        assert!(Instant::now() < deadline, "clicks were not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    world.reconcile("launch-notes").await.unwrap();
    assert_eq!(world.status_writes("launch-notes"), 1);
    assert_eq!(
        world.get("launch-notes").await.status.unwrap().clicks,
        Some(0)
    );

    // ...they are refreshed at the resync.
    world
        .clock
        .advance(Span::from_std(world.ctx.settings.resync).unwrap());
    world.reconcile("launch-notes").await.unwrap();
    assert_eq!(world.status_writes("launch-notes"), 2);
    assert_eq!(
        world.get("launch-notes").await.status.unwrap().clicks,
        Some(3)
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_spec_is_reported_and_waits_for_a_change() {
    let world = World::new().await;
    world
        .create(shortlink(
            "launch-notes",
            json!({"url": "http://sho.rt.test/loop"}),
        ))
        .await;
    let error = world.settle("launch-notes").await.unwrap_err();
    assert_eq!(error.reason(), "InvalidSpec");
    let object = world.get("launch-notes").await;
    assert_eq!(
        error_policy(Arc::new(object.clone()), &error, world.ctx.clone()),
        Action::await_change()
    );
    let status = object.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Invalid));
    assert_eq!(ready(&status), ("False", "InvalidSpec"));
    assert!(
        status.conditions[0].message.starts_with("spec.url"),
        "{}",
        status.conditions[0].message
    );
    assert!(world
        .kube_events()
        .contains(&("Warning".into(), "InvalidSpec".into())));
    assert!(world
        .store
        .link_by_code("launch-notes")
        .await
        .unwrap()
        .is_none());

    world
        .patch_spec("launch-notes", json!({"url": "https://example.com/fixed"}))
        .await;
    world.reconcile("launch-notes").await.unwrap();
    let status = world.get("launch-notes").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Active));
    assert_eq!(ready(&status), ("True", "Active"));
    let metrics = world.metrics.render();
    assert!(
        metrics.contains(
            "kadi_controller_reconciles_total{reason=\"InvalidSpec\",result=\"error\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("kadi_controller_shortlinks{phase=\"Active\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kadi_controller_shortlinks{phase=\"Invalid\"} 0"),
        "{metrics}"
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_shortlink_keeps_its_link_inactive() {
    let world = World::new().await;
    world
        .create(shortlink("launch-notes", json!({"active": false})))
        .await;
    world.settle("launch-notes").await.unwrap();
    let status = world.get("launch-notes").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Inactive));
    assert_eq!(world.follow("launch-notes").await.0, StatusCode::NOT_FOUND);
    world
        .patch_spec("launch-notes", json!({"active": true}))
        .await;
    world.reconcile("launch-notes").await.unwrap();
    answers_within_a_second(&world, "launch-notes", StatusCode::FOUND).await;
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_failure_backs_off_and_the_next_reconcile_writes_status() {
    let world = World::new().await;
    world.create(shortlink("launch-notes", json!({}))).await;
    world.settle("launch-notes").await.unwrap();
    world
        .patch_spec("launch-notes", json!({"url": "https://example.com/v2"}))
        .await;
    let object = Arc::new(world.get("launch-notes").await);

    world.apiserver.set_unavailable(true);
    let error = kadi_controller::reconcile::reconcile(object.clone(), world.ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "StatusPatchFailed");
    assert_eq!(
        error_policy(object, &error, world.ctx.clone()),
        Action::requeue(Duration::from_millis(100))
    );
    // The link already follows the spec; only the status lags.
    assert_eq!(
        world.follow("launch-notes").await.1.as_deref(),
        Some("https://example.com/v2")
    );

    world.apiserver.set_unavailable(false);
    world.reconcile("launch-notes").await.unwrap();
    let status = world.get("launch-notes").await.status.unwrap();
    assert_eq!(status.observed_generation, Some(2));
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_short_code_is_invalid_and_the_old_link_stays() {
    let world = World::new().await;
    world
        .create(shortlink("launch-notes", json!({"shortCode": "launch"})))
        .await;
    world.settle("launch-notes").await.unwrap();
    // The fake API server runs no CEL rules, like an old cluster.
    world
        .patch_spec("launch-notes", json!({"shortCode": "moved"}))
        .await;
    let error = world.reconcile("launch-notes").await.unwrap_err();
    assert_eq!(error.reason(), "InvalidSpec");
    let status = world.get("launch-notes").await.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Invalid));
    assert!(
        status.conditions[0].message.contains("may not change"),
        "{}",
        status.conditions[0].message
    );
    assert_eq!(world.follow("launch").await.0, StatusCode::FOUND);
    assert!(world.store.link_by_code("moved").await.unwrap().is_none());
    world.stop().await;
}
