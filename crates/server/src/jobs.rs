//! Fine-tuning jobs (`/v1/fine_tuning/jobs`): a later slice of the service. The router is
//! here, empty, so the jobs' routes, workers and tables slot in without moving anything.

use utoipa_axum::router::OpenApiRouter;

use crate::server::AppState;

/// The jobs' routes (none yet).
#[must_use]
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
