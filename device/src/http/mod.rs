//! The daemon's HTTP server: the review screen ([`assets`], [`login`], [`review_api`]),
//! `GET /healthz` ([`healthz`]) and `GET /metrics` ([`metrics`]), on the address [`listen`]
//! allows (loopback unless TLS is configured).
//!
//! axum on a single-threaded tokio runtime in its own OS thread: the worker stays a plain
//! blocking loop; the server reads the shared [`Telemetry`] and has its own connection to
//! the database, used on the blocking pool. The socket is bound (and the TLS files read)
//! before the thread starts, so a taken port, a refused address or a bad certificate is an
//! error at start-up, not a log line later. No request path reaches the file system; bodies
//! are limited to [`MAX_BODY_BYTES`]; every response carries strict security headers.

pub mod assets;
pub mod error;
pub mod healthz;
pub mod listen;
pub mod login;
pub mod metrics;
pub mod rate_limit;
pub mod review_api;
pub mod session;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use tracing::{info, warn};

use crate::config::Config;
use crate::db::Db;
use crate::ingest::decode::DecodeOptions;
use crate::telemetry::Telemetry;

pub use error::ApiError;
pub use listen::ListenError;

/// Largest request body accepted (decisions and notes are small JSON).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub telemetry: Arc<Telemetry>,
    pub review: Arc<ReviewState>,
}

/// The review screen's state: the database, sessions, login limits.
pub struct ReviewState {
    db: Mutex<Db>,
    pub sessions: session::Sessions,
    pub limiter: rate_limit::LoginLimiter,
    pub decode: DecodeOptions,
    pub max_file_bytes: u64,
    /// Served over TLS (cookies get `Secure`).
    pub tls: bool,
}

impl ReviewState {
    pub fn new(db: Db, config: &Config) -> Self {
        let r = &config.review;
        Self {
            db: Mutex::new(db),
            sessions: session::Sessions::new(
                Duration::from_secs(r.session_idle_s),
                Duration::from_secs(r.session_max_s),
            ),
            limiter: rate_limit::LoginLimiter::new(
                r.login_max_failures,
                Duration::from_secs(r.login_lockout_s),
            ),
            decode: DecodeOptions::from_config(&config.ingest),
            max_file_bytes: config.ingest.max_file_bytes,
            tls: config.http.tls().is_some(),
        }
    }

    /// Runs `f` with the database on the blocking pool.
    pub async fn with_db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Db) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = me.db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut db)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the HTTP server: {0}")]
    Start(std::io::Error),
    #[error("cannot load the TLS certificate {cert} / key {key}: {reason}")]
    Tls { cert: String, key: String, reason: String },
    #[error(
        "refusing to listen on the network address {0} without a password account: PIN \
         accounts log in on loopback only. Create one with `fracturectl user add NAME --role \
         reviewer --password`"
    )]
    NoPasswordAccount(SocketAddr),
    #[error("opening the database for the review screen: {0}")]
    Db(#[from] crate::db::DbError),
}

/// Every route.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/login", post(login::login))
        .route("/api/logout", post(login::logout))
        .route("/api/session", get(login::current))
        .route("/api/images", get(review_api::list))
        .route("/api/images/{id}", get(review_api::image))
        .route("/api/images/{id}/pixels", get(review_api::pixels))
        .route("/api/images/{id}/missed", post(review_api::missed))
        .route("/api/images/{id}/note", post(review_api::note))
        .route("/api/images/{id}/no-fracture", post(review_api::no_fracture))
        .route("/api/findings/{id}/decision", post(review_api::decide))
        .route("/api/export", post(review_api::export));
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/healthz", get(healthz::get))
        .route("/metrics", get(metrics::get))
        .merge(api)
        .fallback(|| async { ApiError::NotFound("no such page".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers on every response: no sniffing, no framing, no referrer, no caching of API data,
/// and a Content-Security-Policy that allows only this origin's own script and style.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; \
         connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    response
}

/// A running server; [`HttpServer::shutdown`] stops it (dropping it stops it too).
pub struct HttpServer {
    local_addr: SocketAddr,
    handle: Option<axum_server::Handle<SocketAddr>>,
    thread: Option<JoinHandle<()>>,
    /// Says when the server thread has ended.
    ended: std::sync::mpsc::Receiver<()>,
}

/// How long [`HttpServer::shutdown`] waits for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl HttpServer {
    /// Checks `config.listen` against the loopback rule, loads TLS if configured, binds,
    /// opens its own connection to the (already migrated) database at `db_path`, and serves
    /// in a new thread.
    pub fn start(
        config: &Config,
        db_path: &Path,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, HttpError> {
        let tls = config.http.tls();
        let addr = listen::resolve(&config.listen, tls.is_some())?;
        let db = Db::open_existing(db_path)?;
        if !addr.ip().is_loopback()
            && !crate::accounts::has_password_account(&db).map_err(|e| match e {
                crate::accounts::AccountError::Db(e) => HttpError::Db(e),
                other => HttpError::Start(std::io::Error::other(other.to_string())),
            })?
        {
            return Err(HttpError::NoPasswordAccount(addr));
        }
        let std_listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| HttpError::Bind { addr, source })?;
        let local_addr = std_listener.local_addr().map_err(HttpError::Start)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(HttpError::Start)?;
        let rustls = match tls {
            Some((cert, key)) => Some(
                runtime
                    .block_on(axum_server::tls_rustls::RustlsConfig::from_pem_chain_file(cert, key))
                    .map_err(|e| HttpError::Tls {
                        cert: cert.display().to_string(),
                        key: key.display().to_string(),
                        reason: e.to_string(),
                    })?,
            ),
            None => None,
        };
        let handle = axum_server::Handle::new();
        let (ended_tx, ended) = std::sync::mpsc::channel();
        let review = Arc::new(ReviewState::new(db, config));
        let app = router(AppState { telemetry, review })
            .into_make_service_with_connect_info::<SocketAddr>();
        let server_handle = handle.clone();
        let scheme = if rustls.is_some() { "https" } else { "http" };
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let served = match rustls {
                        Some(tls) => {
                            match axum_server::tls_rustls::from_tcp_rustls(std_listener, tls) {
                                Ok(server) => server.handle(server_handle).serve(app).await,
                                Err(e) => Err(e),
                            }
                        }
                        None => match axum_server::from_tcp(std_listener) {
                            Ok(server) => server.handle(server_handle).serve(app).await,
                            Err(e) => Err(e),
                        },
                    };
                    if let Err(e) = served {
                        warn!(error = %e, "HTTP server stopped");
                    }
                });
                let _ = ended_tx.send(());
            })
            .map_err(HttpError::Start)?;
        info!(addr = %local_addr, "{scheme} listening (review screen at /, /healthz, /metrics)");
        Ok(Self { local_addr, handle: Some(handle), thread: Some(thread), ended })
    }

    /// The bound address (the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and lets requests in flight finish, waiting at most a few seconds
    /// (a client that never finishes its request does not hold up the daemon's exit).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        }
        if let Some(t) = self.thread.take() {
            match self.ended.recv_timeout(SHUTDOWN_GRACE) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = t.join();
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    warn!("HTTP requests still in flight after {SHUTDOWN_GRACE:?}; not waiting");
                }
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
