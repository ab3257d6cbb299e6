//! `GET /health` (no key: database, disk, workers and jobs) and `GET /openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::server::AppState;

/// The server's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the database does not answer.
    pub status: String,
    /// `ok` or `error`.
    pub database: String,
    /// Free bytes on the data directory's disk (`null` when unknown).
    pub disk_free_bytes: Option<u64>,
    /// Workers of this process that train jobs (0: the API only).
    pub workers: usize,
    /// Jobs training now, on any worker of this database.
    pub jobs_running: Option<i64>,
    /// Jobs waiting for a worker.
    pub jobs_queued: Option<i64>,
    /// The server's version.
    pub version: String,
}

/// The server's health: database, disk, workers and jobs. No key needed.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Healthy", body = Health),
              (status = 503, description = "The database does not answer", body = Health)))]
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let db_ok = state.db().ping().await;
    let dir = state.config().data_dir.clone();
    let disk_free_bytes = tokio::task::spawn_blocking(move || fs2::available_space(&dir).ok()).await.ok().flatten();
    let count = |status: &'static str| {
        let db = state.db().clone();
        async move {
            sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE status = $1")
                .bind(status)
                .fetch_one(db.pool())
                .await
                .ok()
                .and_then(|r| r.try_get::<i64, _>("n").ok())
        }
    };
    let body = Health {
        status: if db_ok { "ok" } else { "degraded" }.into(),
        database: if db_ok { "ok" } else { "error" }.into(),
        disk_free_bytes,
        workers: state.config().workers,
        jobs_running: count("running").await,
        jobs_queued: count("queued").await,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    (if db_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// This document: OpenAPI 3.1, generated from the handlers. No key needed.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], crate::server::openapi_text())
}
