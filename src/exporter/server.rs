//! The HTTP side of `--metrics-listen`: `GET /metrics` answers with the live figures in
//! the OpenMetrics text format (which Prometheus scrapes), on axum. The server runs from
//! before the broker comes up until the run's final figures have been scraped once (or a
//! time limit passes), so a dashboard sees the verdict too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::live::LiveMetrics;

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the metrics could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running metrics endpoint.
pub struct MetricsServer {
    addr: SocketAddr,
    live: Arc<LiveMetrics>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Drop for MetricsServer {
    /// A run that ends in an error stops serving at once.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A scrape read the final figures.
    Scraped,
    /// No scrape came within the time allowed.
    NotScraped,
    /// Interrupted while waiting.
    Interrupted,
    /// The run gave no final figures (it failed, or it is one worker of several): nothing
    /// to wait for.
    NoVerdict,
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks a free port) and serves `live`.
    ///
    /// # Errors
    /// [`ServeError::Bind`] when the address cannot be listened on.
    pub async fn start(addr: SocketAddr, live: Arc<LiveMetrics>) -> Result<Self, ServeError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(live.clone()));
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/", get(index))
            .with_state(Arc::new(registry));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "the metrics endpoint stopped");
            }
        });
        Ok(Self {
            addr,
            live,
            stop,
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL Prometheus scrapes.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Waits (up to `linger`) until a scrape has read the final figures, then stops.
    pub async fn finish(mut self, linger: Duration, cancel: &CancellationToken) -> Ending {
        let ending = if !self.live.finished() {
            Ending::NoVerdict
        } else {
            tokio::select! {
                () = self.live.final_figures_scraped() => Ending::Scraped,
                () = tokio::time::sleep(linger) => Ending::NotScraped,
                () = cancel.cancelled() => Ending::Interrupted,
            }
        };
        self.stop.cancel();
        // Open scrape connections get a moment to finish; then the task is dropped.
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        ending
    }
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::with_capacity(8 * 1024);
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed").into_response(),
    }
}

async fn index() -> &'static str {
    "warren: live metrics of the run at /metrics (OpenMetrics text)\n"
}
