//! The controller's own listener: `/metrics` with every documented metric,
//! `/healthz`, and `/readyz`, which follows the database.

mod harness;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use harness::database::TestDb;
use kadi_controller::http::{router, ProbeState};
use kadi_controller::metrics::Metrics;
use tower::ServiceExt;

async fn get(state: &ProbeState, path: &str) -> (StatusCode, String, String) {
    let response = router(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_follow_the_database_and_metrics_match_the_docs() {
    let db = TestDb::new().await;
    let store = db.store_at(&db.url).await;
    let state = ProbeState {
        metrics: Metrics::new(),
        store: store.clone(),
    };
    assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&state, "/readyz").await.0, StatusCode::OK);

    state
        .metrics
        .record_reconcile(true, "Reconciled", std::time::Duration::from_millis(2));
    let (status, content_type, text) = get(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .collect();
    let documented = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/shortlink.md"),
    )
    .expect("docs/shortlink.md");
    for name in [
        "kadi_controller_reconciles_total",
        "kadi_controller_reconcile_duration_seconds",
        "kadi_controller_shortlinks",
        "kadi_controller_leader",
    ] {
        assert!(exported.contains(name), "{name} is not exported: {text}");
    }
    for name in &exported {
        assert!(
            name.starts_with("kadi_controller_"),
            "{name} lacks the prefix"
        );
        assert!(
            documented.contains(&format!("`{name}")),
            "{name} is not in docs/shortlink.md"
        );
    }

    // Liveness does not depend on the database; readiness does.
    store.close().await;
    assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&state, "/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
