//! Health endpoints: `/health` (the original contract), `/livez` and `/readyz`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::AppState;

/// Longest readiness waits for the database: under the usual probe timeout,
/// so that a probe gets a clear 503 rather than timing out.
const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// Body of the health endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// The process is up; answers without touching the database.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Liveness: the same as `/health`, under the name probes expect.
#[utoipa::path(get, path = "/livez", tag = "health",
    responses((status = 200, body = Health)))]
pub async fn livez() -> Json<Health> {
    health().await
}

/// Readiness: the database answers. Cached redirects keep working while this
/// fails; it only takes the replica out of new traffic.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let ping = tokio::time::timeout(READINESS_TIMEOUT, state.store().ping()).await;
    ping.map_err(|_| ())
        .and_then(|r| r.map_err(|_| ()))
        .map_err(|()| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "database is unreachable",
            )
        })?;
    Ok(Json(Health { status: "ok" }))
}
