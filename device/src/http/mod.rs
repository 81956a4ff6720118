//! The daemon's HTTP server: `GET /healthz` ([`healthz`]) and `GET /metrics` ([`metrics`])
//! now, the review screen later, on the address [`listen`] allows (loopback unless the
//! configuration says otherwise).
//!
//! axum on a single-threaded tokio runtime in its own OS thread: the worker stays a plain
//! blocking loop, and the server only reads the shared [`Telemetry`]. The socket is bound
//! before the thread starts, so a taken port or a refused address is an error at start-up,
//! not a log line later. No request reaches the file system.

pub mod healthz;
pub mod listen;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::Router;
use axum::routing::get;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::telemetry::Telemetry;

pub use listen::ListenError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub telemetry: Arc<Telemetry>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the HTTP server: {0}")]
    Start(std::io::Error),
}

/// Every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz::get))
        .route("/metrics", get(metrics::get))
        .with_state(state)
}

/// A running server; [`HttpServer::shutdown`] stops it (dropping it stops it too).
pub struct HttpServer {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Says when the server thread has ended.
    ended: std::sync::mpsc::Receiver<()>,
}

/// How long [`HttpServer::shutdown`] waits for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl HttpServer {
    /// Checks `listen` against the loopback rule, binds it and serves in a new thread.
    pub fn start(
        listen: &str,
        allow_non_loopback: bool,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, HttpError> {
        let addr = listen::resolve(listen, allow_non_loopback)?;
        let std_listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| HttpError::Bind { addr, source })?;
        let local_addr = std_listener.local_addr().map_err(HttpError::Start)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(HttpError::Start)?;
        let (tx, rx) = oneshot::channel::<()>();
        let (ended_tx, ended) = std::sync::mpsc::channel();
        let app = router(AppState { telemetry });
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            warn!(error = %e, "HTTP server could not start");
                            return;
                        }
                    };
                    let shutdown = async {
                        let _ = rx.await;
                    };
                    if let Err(e) =
                        axum::serve(listener, app).with_graceful_shutdown(shutdown).await
                    {
                        warn!(error = %e, "HTTP server stopped");
                    }
                });
                let _ = ended_tx.send(());
            })
            .map_err(HttpError::Start)?;
        info!(addr = %local_addr, "http listening (GET /healthz, GET /metrics)");
        Ok(Self { local_addr, shutdown: Some(tx), thread: Some(thread), ended })
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
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
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
