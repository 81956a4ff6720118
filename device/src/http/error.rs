//! API errors as HTTP responses: a status and `{"error": "what happened and what to do"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::accounts::AccountError;
use crate::db::DbError;
use crate::export::ExportError;
use crate::review::ReviewError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("log in first (no session, or it expired)")]
    Unauthenticated,
    #[error("{0}")]
    LoginFailed(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("too many failed logins: try again in {0} s")]
    TooManyAttempts(u64),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthenticated | ApiError::LoginFailed(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let ApiError::Internal(e) = &self {
            tracing::warn!(error = %e, "review API request failed");
        }
        let mut response =
            (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response();
        if let ApiError::TooManyAttempts(s) = self
            && let Ok(v) = HeaderValue::from_str(&s.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Invalid(msg) => ApiError::BadRequest(msg),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::Db(e) => e.into(),
            ReviewError::NotFound(m) => ApiError::NotFound(m),
            ReviewError::Conflict(m) => ApiError::Conflict(m),
            ReviewError::Invalid(m) => ApiError::BadRequest(m),
        }
    }
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Invalid(m) => ApiError::BadRequest(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        ApiError::Internal(e.to_string())
    }
}
