//! `GET /healthz`: the health report as JSON — `state` (`ok`, `paused`, `degraded`),
//! `reason`, `queue_depth`, `last_progress` (RFC 3339) and its age, free space on the state
//! directory, the model — with status 200 when `ok` and 503 otherwise, so a load balancer
//! or `curl -f` can use the status alone.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::AppState;
use crate::telemetry::{HealthReport, HealthState};

pub async fn get(State(app): State<AppState>) -> impl IntoResponse {
    let report: HealthReport = app.telemetry.health.report();
    let status = if report.state == HealthState::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}
