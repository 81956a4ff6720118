//! The review screen's JSON API: the worklist, one image (its record and its pixels), the
//! decisions a reviewer records, and the auditor's export. Handlers only translate between
//! HTTP and [`crate::review`] / [`crate::export`]; every database call runs on the blocking
//! pool. Request paths carry numeric ids only: a file is found through the database, never
//! through anything a request names.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::session::Authed;
use crate::export::{self, DateRange, Format};
use crate::ingest::decode::decode;
use crate::review::decisions::{self, PixelBox, Verdict};
use crate::review::{ImageRecord, Worklist, image_record, record, worklist};

/// Most images one worklist request returns.
const MAX_LIMIT: u32 = 500;

#[derive(Debug, Deserialize)]
pub struct WorklistQuery {
    #[serde(default = "all")]
    status: String,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn all() -> String {
    "all".into()
}

fn default_limit() -> u32 {
    200
}

pub async fn list(
    State(app): State<AppState>,
    _authed: Authed,
    Query(q): Query<WorklistQuery>,
) -> Result<Json<Worklist>, ApiError> {
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let list = app.review.with_db(move |db| Ok(worklist(db.conn(), &q.status, limit)?)).await?;
    Ok(Json(list))
}

/// Opening an image is an audit row (`review.view`).
pub async fn image(
    State(app): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> Result<Json<ImageRecord>, ApiError> {
    let who = authed.session.user;
    let rec = app
        .review
        .with_db(move |db| {
            decisions::log_view(db, id, &who)?;
            load(db, id)
        })
        .await?;
    Ok(Json(rec))
}

/// The decoded image as little-endian u16 gray (0 black, 65535 white), row-major, with
/// `X-Width` and `X-Height`: the page applies window/level itself.
pub async fn pixels(
    State(app): State<AppState>,
    _authed: Authed,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let review = app.review.clone();
    let path = review
        .with_db(move |db| Ok(record::stored_file(db.conn(), id)?))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("image {id} has no stored file")))?;
    let options = review.decode.clone();
    let max_bytes = review.max_file_bytes;
    let (width, height, body) = tokio::task::spawn_blocking(move || {
        let gone = |e: std::io::Error| {
            ApiError::NotFound(format!("the file of image {id} cannot be read any more: {e}"))
        };
        let size = std::fs::metadata(&path).map_err(gone)?.len();
        if size > max_bytes {
            return Err(ApiError::Conflict(format!("image {id} is larger than the size limit")));
        }
        let bytes = std::fs::read(&path).map_err(gone)?;
        let decoded = decode(&bytes, &options)
            .map_err(|e| ApiError::Conflict(format!("image {id} cannot be decoded: {e}")))?;
        let img = decoded.image;
        let mut body = Vec::with_capacity(img.data.len() * 2);
        for v in &img.data {
            let q = (v.clamp(0.0, 1.0) * 65535.0).round() as u16;
            body.extend_from_slice(&q.to_le_bytes());
        }
        Ok((img.width, img.height, body))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut response = Body::from(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert("x-width", HeaderValue::from(width));
    headers.insert("x-height", HeaderValue::from(height));
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    decision: String,
    #[serde(default)]
    reason: Option<String>,
}

pub async fn decide(
    State(app): State<AppState>,
    authed: Authed,
    Path(finding_id): Path<i64>,
    Json(body): Json<DecisionBody>,
) -> Result<Json<ImageRecord>, ApiError> {
    let who = reviewer(&authed)?;
    let verdict = match (body.decision.as_str(), body.reason) {
        ("accept", _) => Verdict::Accept,
        ("reject", Some(reason)) => Verdict::Reject { reason },
        ("reject", None) => {
            return Err(ApiError::BadRequest("rejecting a finding needs a reason".into()));
        }
        (other, _) => {
            return Err(ApiError::BadRequest(format!(
                "unknown decision {other:?} (expected accept or reject)"
            )));
        }
    };
    let rec = app
        .review
        .with_db(move |db| {
            let image_id = decisions::decide_finding(db, finding_id, &verdict, &who)?;
            load(db, image_id)
        })
        .await?;
    Ok(Json(rec))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissedBody {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
    #[serde(default)]
    note: Option<String>,
}

pub async fn missed(
    State(app): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Json(b): Json<MissedBody>,
) -> Result<Json<ImageRecord>, ApiError> {
    let who = reviewer(&authed)?;
    let bx = PixelBox { x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2 };
    let rec = app
        .review
        .with_db(move |db| {
            decisions::add_missed(db, id, bx, b.note.as_deref(), &who)?;
            load(db, id)
        })
        .await?;
    Ok(Json(rec))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    text: String,
}

pub async fn note(
    State(app): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
    Json(b): Json<NoteBody>,
) -> Result<Json<ImageRecord>, ApiError> {
    let who = reviewer(&authed)?;
    let rec = app
        .review
        .with_db(move |db| {
            decisions::add_note(db, id, &b.text, &who)?;
            load(db, id)
        })
        .await?;
    Ok(Json(rec))
}

pub async fn no_fracture(
    State(app): State<AppState>,
    authed: Authed,
    Path(id): Path<i64>,
) -> Result<Json<ImageRecord>, ApiError> {
    let who = reviewer(&authed)?;
    let rec = app
        .review
        .with_db(move |db| {
            decisions::confirm_negative(db, id, &who)?;
            load(db, id)
        })
        .await?;
    Ok(Json(rec))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    from: String,
    to: String,
    format: String,
}

/// The auditor export as a download; the export is an audit row, like `fracturectl export`.
pub async fn export(
    State(app): State<AppState>,
    authed: Authed,
    Json(b): Json<ExportBody>,
) -> Result<Response, ApiError> {
    if !authed.session.role.can_export() {
        return Err(ApiError::Forbidden("exports need the auditor or admin role".into()));
    }
    let range = DateRange::parse(&b.from, &b.to)?;
    let format = Format::parse(&b.format)?;
    let who = authed.session.user;
    let (bytes, summary) =
        app.review.with_db(move |db| Ok(export::export_bytes(db, &range, format, &who)?)).await?;
    let name = format!(
        "fracture-export-{}-{}.{}",
        summary.range.from,
        summary.range.to,
        format.extension()
    );
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = Body::from(bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    if let Ok(v) = HeaderValue::from_str(&summary.audit_head) {
        headers.insert("x-audit-head", v);
    }
    Ok(response)
}

/// The session's user, if their role may record decisions.
fn reviewer(authed: &Authed) -> Result<String, ApiError> {
    if authed.session.role.can_review() {
        Ok(authed.session.user.clone())
    } else {
        Err(ApiError::Forbidden(format!(
            "the {} role cannot record review decisions",
            authed.session.role
        )))
    }
}

fn load(db: &mut crate::db::Db, id: i64) -> Result<ImageRecord, ApiError> {
    image_record(db.conn(), id)?.ok_or_else(|| ApiError::NotFound(format!("no image {id}")))
}
