//! The operations endpoints every service exposes: `/health`, `/ready` and `/metrics`.
//!
//! - `/health` answers 200 while the process can serve HTTP at all (Kubernetes liveness).
//! - `/ready` answers 200 once the service can do its job and 503 with the reason before that,
//!   while shutting down, or while work is stalled on a failure only a fix can clear (the
//!   `stalled` field lists the causes; Kubernetes readiness: no traffic, no restart).
//! - `/metrics` is the Prometheus text exposition of the service's [`Registry`], including the
//!   process collector (CPU seconds, resident memory, open file descriptors).
//!
//! The producer and consumer serve [`router`] on a small port of their own; the inference
//! service merges it into its API router. Either way it is served by [`crate::http::serve`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

/// Whether the service is ready, and if not, why. Cheap to clone; all clones share the state.
///
/// Two things make a service unready: its phase (starting, shutting down), set by the service,
/// and permanent stalls ([`crate::stall`]), set by the operations that hit them. `/ready`
/// names the phase first, then every stalled cause.
#[derive(Debug, Clone)]
pub struct Readiness {
    state: Arc<Mutex<ReadinessState>>,
}

#[derive(Debug, Default)]
struct ReadinessState {
    /// `None` when the service is up; otherwise what it is waiting for.
    phase: Option<String>,
    /// Permanent stalls by cause, with what the last failure said.
    stalled: BTreeMap<&'static str, String>,
}

impl Readiness {
    /// Starts not ready, with `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            state: Arc::new(Mutex::new(ReadinessState {
                phase: Some(reason.into()),
                stalled: BTreeMap::new(),
            })),
        }
    }

    pub fn set_ready(&self) {
        self.lock().phase = None;
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.lock().phase = Some(reason.into());
    }

    /// Work is stalled on a cause only a fix of the setup can clear.
    pub fn set_stalled(&self, cause: &'static str, detail: String) {
        self.lock().stalled.insert(cause, detail);
    }

    pub fn clear_stalled(&self, cause: &str) {
        self.lock().stalled.remove(cause);
    }

    /// `Ok(())` when ready, else the reasons: the phase first, then every stalled cause.
    pub fn status(&self) -> Result<(), String> {
        let state = self.lock();
        if state.phase.is_none() && state.stalled.is_empty() {
            return Ok(());
        }
        let reasons: Vec<&str> = state
            .phase
            .iter()
            .chain(state.stalled.values())
            .map(String::as_str)
            .collect();
        Err(reasons.join("; "))
    }

    /// The causes of the permanent stalls, for `/ready`'s `stalled` field.
    pub fn stalled_causes(&self) -> Vec<&'static str> {
        self.lock().stalled.keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReadinessState> {
        // Every update is a single assignment or insert; a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
            axum::Json(serde_json::json!({
                "status": "not_ready",
                "reason": reason,
                "stalled": state.readiness.stalled_causes(),
            })),
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
