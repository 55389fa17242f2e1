//! Start-up and shutdown of the service.
//!
//! The HTTP server starts first, so `/health` answers and `/ready` says "loading model" while
//! the model loads and warms up on a blocking thread; `/ready` turns 200 only after a warm-up
//! run. A model or library that cannot be loaded stops the process with the reason.

use std::sync::{Arc, OnceLock};

use anyhow::Context;
use common::http::{self, HttpMetrics};
use common::ops::{self, Readiness};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::body_budget::BodyBudget;
use crate::config::InferenceConfig;
use crate::engine::{Engine, EngineMetrics, EngineSettings};
use crate::metrics::InferenceMetrics;
use crate::model;
use crate::stats::Stats;

/// Loads the model with one session per worker.
pub fn load_engine(config: &InferenceConfig, metrics: EngineMetrics) -> anyhow::Result<Engine> {
    let env = model::init_runtime(&config.ort_library())?;
    let mut sessions = Vec::new();
    let mut spec = None;
    for _ in 0..config.workers.max(1) {
        let (session, s) = model::load(
            &env,
            &config.model,
            config.intra_threads(),
            config.labels.as_deref(),
        )?;
        sessions.push(session);
        spec = Some(s);
    }
    let spec = spec.context("no model worker configured")?;
    tracing::info!(
        model = %spec.name,
        input = format!("{}x{}", spec.input_width, spec.input_height),
        classes = spec.class_names.len(),
        fixed_batch = ?spec.fixed_batch,
        workers = sessions.len(),
        intra_threads = config.intra_threads(),
        "model loaded"
    );
    let settings = EngineSettings {
        chunk_size: config.batch_size,
        queue_capacity: config.queue_capacity.max(1),
        max_image_pixels: config.max_image_pixels,
    };
    Ok(Engine::start(spec, sessions, settings, metrics))
}

/// Serves on `listener` until `shutdown` is cancelled.
pub async fn run(
    config: InferenceConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let registry = ops::new_registry();
    let metrics = InferenceMetrics::register(&registry).context("registering metrics")?;
    let readiness = Readiness::new("loading model");
    let config = Arc::new(config);
    let state = AppState {
        body_budget: BodyBudget::new(
            config.max_body_bytes_in_flight,
            metrics.body_bytes_in_flight.clone(),
        ),
        config: Arc::clone(&config),
        engine: Arc::new(OnceLock::new()),
        metrics,
        stats: Arc::new(Stats::default()),
    };
    let http_metrics = HttpMetrics::register(&registry).context("registering metrics")?;
    let app = api::router(state.clone(), registry, readiness.clone());
    tracing::info!(addr = %listener.local_addr()?, "inference API listening");
    let server = tokio::spawn(http::serve(
        listener,
        app,
        config.http.clone(),
        http_metrics,
        shutdown.clone(),
    ));

    let loading_config = Arc::clone(&config);
    let engine_metrics = EngineMetrics {
        queue_depth: state.metrics.queue_depth.clone(),
        abandoned_frames: state.metrics.abandoned_frames.clone(),
    };
    let engine = tokio::task::spawn_blocking(move || load_engine(&loading_config, engine_metrics))
        .await
        .context("model loading panicked")?;
    let engine = match engine {
        Ok(engine) => Arc::new(engine),
        Err(e) => {
            shutdown.cancel();
            return Err(e.context("cannot start the inference service"));
        }
    };
    engine.warm_up().await.context("warm-up run failed")?;
    let _ = state.engine.set(Arc::clone(&engine));
    readiness.set_ready();
    tracing::info!("ready");

    server.await.context("HTTP server task failed")??;
    engine.stop();
    Ok(())
}
