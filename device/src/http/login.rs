//! `POST /api/login`, `POST /api/logout`, `GET /api/session`.
//!
//! A PIN account may log in only from a loopback client (the bedside screen); a password
//! account from anywhere the server listens (a network listener always has TLS). Unknown
//! accounts cost the same argon2 verification as known ones, so timing does not reveal
//! which names exist. Failures count towards the [`super::rate_limit`] lockout; successes
//! and logouts are audit rows.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::session::{self, Authed};
use super::{AppState, ReviewState};
use crate::accounts::{self, SecretKind};
use crate::db::audit::{self, AuditEntry};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub user: String,
    pub secret: String,
}

/// What the page learns about its session.
#[derive(Debug, Serialize)]
pub struct SessionInfo {
    pub user: String,
    pub role: String,
    pub csrf: String,
    pub session_idle_s: u64,
}

/// A hash to verify against when the account does not exist.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| accounts::hash_secret("not-a-real-secret").unwrap_or_default())
}

pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    let review = app.review.clone();
    let user_key = format!("user:{}", body.user);
    let ip_key = format!("ip:{}", peer.ip());
    let keys = [user_key.as_str(), ip_key.as_str()];
    if let Some(wait) = review.limiter.locked_for(&keys) {
        return Err(ApiError::TooManyAttempts(wait.as_secs() + 1));
    }
    let name = body.user.clone();
    let outcome = review.with_db(move |db| Ok(accounts::credentials(db, &name)?)).await?;
    let secret = body.secret;
    let checked = tokio::task::spawn_blocking(move || {
        let ok = match &outcome {
            Some(c) => accounts::verify_secret(&secret, &c.secret_hash),
            None => {
                accounts::verify_secret(&secret, dummy_hash());
                false
            }
        };
        (ok, outcome)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let creds = match checked {
        (true, Some(c)) => c,
        _ => {
            review.limiter.failed(&keys);
            tracing::warn!(user = %body.user, peer = %peer, "failed review-screen login");
            return Err(ApiError::LoginFailed("wrong account name or PIN/password".into()));
        }
    };
    if creds.secret_kind == SecretKind::Pin && !peer.ip().is_loopback() {
        review.limiter.failed(&keys);
        return Err(ApiError::LoginFailed(
            "PIN accounts log in at the bedside screen only; use a password account over the \
             network"
                .into(),
        ));
    }
    review.limiter.succeeded(&keys);
    let (token, session) = review.sessions.create(&creds.name, creds.role);
    let user = creds.name.clone();
    let peer_ip = peer.ip().to_string();
    review
        .with_db(move |db| {
            audit::append_now(
                db,
                &AuditEntry {
                    actor: &user,
                    action: "session.login",
                    subject: &user,
                    detail: serde_json::json!({ "client": peer_ip }),
                },
            )?;
            Ok(())
        })
        .await?;
    let cookie = session::set_cookie(&token, review.sessions.max_age(), review.tls);
    Ok(([(header::SET_COOKIE, cookie)], Json(info(&review, &session))).into_response())
}

pub async fn logout(State(app): State<AppState>, authed: Authed) -> Result<Response, ApiError> {
    let review = app.review.clone();
    review.sessions.remove(&authed.token);
    let user = authed.session.user.clone();
    review
        .with_db(move |db| {
            audit::append_now(
                db,
                &AuditEntry {
                    actor: &user,
                    action: "session.logout",
                    subject: &user,
                    detail: serde_json::Value::Null,
                },
            )?;
            Ok(())
        })
        .await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, session::clear_cookie())]).into_response())
}

pub async fn current(State(app): State<AppState>, authed: Authed) -> Json<SessionInfo> {
    Json(info(&app.review, &authed.session))
}

fn info(review: &Arc<ReviewState>, s: &session::Session) -> SessionInfo {
    SessionInfo {
        user: s.user.clone(),
        role: s.role.to_string(),
        csrf: s.csrf.clone(),
        session_idle_s: review.sessions.idle().as_secs(),
    }
}
