//! `GET /metrics`: the Prometheus text exposition (version 0.0.4) of
//! [`crate::telemetry::metrics`].

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::AppState;

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn get(State(app): State<AppState>) -> impl IntoResponse {
    let health = app.telemetry.health.report();
    ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], app.telemetry.metrics.render(&health))
}
