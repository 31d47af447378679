//! Health endpoints: `/health` (the original contract), `/livez` and `/readyz`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::AppState;

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
    state.store().ping().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "database is unreachable",
        )
    })?;
    Ok(Json(Health { status: "ok" }))
}
