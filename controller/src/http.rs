//! The controller's own listener: Prometheus metrics and health probes.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use kadi::store::Store;

use crate::metrics::Metrics;

/// What the probes and the metrics endpoint read.
#[derive(Clone)]
pub struct ProbeState {
    /// Metric handles.
    pub metrics: Metrics,
    /// The database, for readiness.
    pub store: Store,
}

/// `/metrics`, `/healthz` (the process runs) and `/readyz` (the database
/// answers).
pub fn router(state: ProbeState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<ProbeState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<ProbeState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(error) => {
            tracing::warn!(error = %kadi::error_chain(&error), "Not ready: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}
