//! The operations endpoint: `/metrics`, `/livez`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::tasks::Tasks;
use crate::telemetry::Metrics;

/// Readiness inputs; each must be true for `/readyz` to answer 200.
#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// Named readiness checks (e.g. "ca-loaded", "watch-synced").
    pub checks: Vec<(&'static str, watch::Receiver<bool>)>,
    /// Named checks that fail with a reason, shown in the answer (e.g. "ca-key": the
    /// PKCS#11 token is away).
    pub problems: Vec<(&'static str, watch::Receiver<Option<String>>)>,
}

async fn metrics(State(h): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(h): State<Health>) -> (StatusCode, String) {
    let failing: Vec<String> = h
        .checks
        .iter()
        .filter(|(_, rx)| !*rx.borrow())
        .map(|(n, _)| n.to_string())
        .chain(
            h.problems
                .iter()
                .filter_map(|(n, rx)| rx.borrow().as_ref().map(|p| format!("{n} ({p})"))),
        )
        .collect();
    if failing.is_empty() {
        (StatusCode::OK, "ok\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", failing.join(", ")),
        )
    }
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// Binds `addr` and serves in `tasks` until it is cancelled (then drains). Returns the bound
/// address.
pub async fn serve(addr: SocketAddr, health: Health, tasks: &Tasks) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(health);
    let shutdown = tasks.token();
    tasks.spawn_graceful(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok(bound)
}
