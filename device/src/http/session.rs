//! Review-screen sessions: a random token in an HttpOnly, SameSite=Strict cookie, a CSRF
//! token the page must echo in `X-CSRF-Token` on every state-changing request, an idle and
//! an absolute expiry. Sessions live in memory only (a restart logs everyone out), bounded
//! in number.
//!
//! [`Authed`] is the extractor every protected handler takes: it refuses a request without a
//! live session or whose account has been disabled since login (401) and, for any method other than GET/HEAD, one without the session's
//! CSRF token (403).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use rand::RngCore;

use super::AppState;
use super::error::ApiError;
use crate::accounts::Role;

/// Name of the session cookie.
pub const COOKIE: &str = "fr_session";
/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Most sessions held at once; the least recently used goes first beyond it.
const MAX_SESSIONS: usize = 1024;

/// A logged-in user, as handlers see them.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// All live sessions.
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max_age: Duration,
}

impl Sessions {
    pub fn new(idle: Duration, max_age: Duration) -> Self {
        Self { by_token: Mutex::new(HashMap::new()), idle, max_age }
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Starts a session; returns its token and the session.
    pub fn create(&self, user: &str, role: Role) -> (String, Session) {
        let now = Instant::now();
        let session = Session {
            user: user.to_string(),
            role,
            csrf: random_token(),
            created: now,
            last_seen: now,
        };
        let token = random_token();
        let mut map = self.lock();
        map.retain(|_, s| self.alive(s, now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) =
                map.iter().min_by_key(|(_, s)| s.last_seen).map(|(t, _)| t.clone())
        {
            map.remove(&oldest);
        }
        map.insert(token.clone(), session.clone());
        (token, session)
    }

    /// The live session for `token`, touched; an expired one is removed.
    pub fn touch(&self, token: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.lock();
        let alive = map.get(token).map(|s| self.alive(s, now))?;
        if !alive {
            map.remove(token);
            return None;
        }
        let s = map.get_mut(token)?;
        s.last_seen = now;
        Some(s.clone())
    }

    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Ends every session of `user` (an account disabled while logged in).
    pub fn remove_user(&self, user: &str) {
        self.lock().retain(|_, s| s.user != user);
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.last_seen) < self.idle && now.duration_since(s.created) < self.max_age
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map consistent (every update is one call).
        self.by_token.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 32 random bytes as hex, from the thread-local CSPRNG (seeded by the OS).
fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The session cookie's value in a request, if any.
pub fn cookie_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// `Set-Cookie` for a new session (`Secure` when served over TLS).
pub fn set_cookie(token: &str, max_age: Duration, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

/// `Set-Cookie` that deletes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Equal-length comparison whose time does not depend on where the strings differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request with a live session (and, if it changes state, the right CSRF token).
pub struct Authed {
    pub token: String,
    pub session: Session,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let token = cookie_token(parts).ok_or(ApiError::Unauthenticated)?;
        let session = app.review.sessions.touch(&token).ok_or(ApiError::Unauthenticated)?;
        // An account disabled (or deleted) since login loses its sessions at once.
        let user = session.user.clone();
        let enabled =
            app.review.with_db(move |db| Ok(crate::accounts::credentials(db, &user)?)).await?;
        if enabled.is_none() {
            app.review.sessions.remove_user(&session.user);
            return Err(ApiError::Unauthenticated);
        }
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts.headers.get(CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
            if !constant_time_eq(sent, session.csrf.as_bytes()) {
                return Err(ApiError::Forbidden(
                    "missing or wrong CSRF token (reload the page)".into(),
                ));
            }
        }
        Ok(Authed { token, session })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle() {
        let s = Sessions::new(Duration::from_millis(50), Duration::from_secs(60));
        let (token, session) = s.create("alice", Role::Reviewer);
        assert_eq!(session.csrf.len(), 64);
        assert!(s.touch(&token).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.touch(&token).is_none(), "idle session expired");
        assert!(s.touch("not a token").is_none());
    }

    #[test]
    fn csrf_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
