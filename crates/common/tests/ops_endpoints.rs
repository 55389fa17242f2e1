//! `/health`, `/ready` and `/metrics` over real HTTP on a loopback port.

use common::http::{self, HttpArgs, HttpMetrics};
use common::ops::{self, Readiness};
use prometheus::IntCounter;
use tokio_util::sync::CancellationToken;

async fn start(
    readiness: Readiness,
    registry: prometheus::Registry,
) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("bound address"));
    let stop = CancellationToken::new();
    let metrics = HttpMetrics::register(&registry).expect("HTTP metrics");
    tokio::spawn(http::serve(
        listener,
        ops::router(registry, readiness),
        HttpArgs::default(),
        metrics,
        stop.clone(),
    ));
    (base, stop)
}

#[tokio::test]
async fn health_is_up_while_ready_follows_the_service() {
    let readiness = Readiness::new("model loading");
    let (base, stop) = start(readiness.clone(), ops::new_registry()).await;
    let http = reqwest::Client::new();

    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let not_ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    let body: serde_json::Value = not_ready.json().await.unwrap();
    assert_eq!(body["reason"], "model loading");

    readiness.set_ready();
    let ready = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    readiness.set_not_ready("kafka unreachable");
    let again = http.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(again.status(), 503);
    stop.cancel();
}

#[tokio::test]
async fn metrics_expose_service_and_process_metrics() {
    let registry = ops::new_registry();
    let batches = IntCounter::new("test_batches_total", "batches seen").unwrap();
    registry.register(Box::new(batches.clone())).unwrap();
    batches.inc_by(3);
    let (base, stop) = start(Readiness::new("x"), registry).await;

    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("test_batches_total 3"), "{text}");
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    stop.cancel();
}
