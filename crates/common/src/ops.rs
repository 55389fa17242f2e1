//! The operations endpoints every service exposes: `/health`, `/ready` and `/metrics`.
//!
//! - `/health` answers 200 while the process can serve HTTP at all (Kubernetes liveness).
//! - `/ready` answers 200 once the service can do its job and 503 with the reason before that
//!   or while a dependency is down (Kubernetes readiness: no traffic, no restart).
//! - `/metrics` is the Prometheus text exposition of the service's [`Registry`], including the
//!   process collector (CPU seconds, resident memory, open file descriptors).
//!
//! The producer and consumer serve [`router`] on a small port of their own; the inference
//! service merges it into its API router. Either way it is served by [`crate::http::serve`].

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

/// Whether the service is ready, and if not, why. Cheap to clone; all clones share the state.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// `None` when ready; otherwise what the service is waiting for, shown by `/ready`.
    not_ready: Arc<Mutex<Option<String>>>,
}

impl Readiness {
    /// Starts not ready, with `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            not_ready: Arc::new(Mutex::new(Some(reason.into()))),
        }
    }

    pub fn set_ready(&self) {
        *self.lock() = None;
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.lock() = Some(reason.into());
    }

    /// `Ok(())` when ready, else the reason.
    pub fn status(&self) -> Result<(), String> {
        match self.lock().as_ref() {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A panic while holding this lock cannot leave the Option half-written.
        self.not_ready.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A registry with the process collector registered, for a service to add its metrics to.
pub fn new_registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(e) = registry.register(Box::new(pc)) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
    }
    registry
}

#[derive(Debug, Clone)]
struct OpsState {
    registry: Registry,
    readiness: Readiness,
}

/// `/health`, `/ready` and `/metrics` over `registry` and `readiness`.
pub fn router(registry: Registry, readiness: Readiness) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(OpsState {
            registry,
            readiness,
        })
}

async fn health() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

async fn ready(State(state): State<OpsState>) -> Response {
    match state.readiness.status() {
        Ok(()) => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ready"}"#.to_string(),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<OpsState>) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_string())],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}"),
        )
            .into_response(),
    }
}
