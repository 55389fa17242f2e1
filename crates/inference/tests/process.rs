//! Behaviour of the service binary as a process: it refuses to start without its model or
//! library, and answers 503 with Retry-After when its queue is full.

mod support;

use std::time::Duration;

use common::inference_api::FRAME_BATCH_CONTENT_TYPE;
use support::*;

#[test]
fn refuses_to_start_without_the_model() {
    let svc = ChildService::spawn(&["--model", "/nonexistent/model.onnx"]);
    let (ok, err) = svc.wait_output();
    assert!(!ok);
    assert!(
        err.contains("model file /nonexistent/model.onnx does not exist"),
        "{err}"
    );
}

#[test]
fn refuses_to_start_without_the_runtime_library() {
    let svc = ChildService::spawn(&["--ort-library", "/nonexistent/libonnxruntime.so"]);
    let (ok, err) = svc.wait_output();
    assert!(!ok);
    assert!(
        err.contains("cannot load the ONNX Runtime library /nonexistent/libonnxruntime.so"),
        "{err}"
    );
}

#[test]
fn refuses_a_model_that_is_not_a_detector() {
    // an ONNX file is needed to get past the loader; a text file is not one
    let bogus = std::env::temp_dir().join(testkit::unique_name("bogus") + ".onnx");
    std::fs::write(&bogus, b"not an onnx model").expect("write");
    let svc = ChildService::spawn(&["--model", bogus.to_str().expect("utf-8")]);
    let (ok, err) = svc.wait_output();
    let _ = std::fs::remove_file(&bogus);
    assert!(!ok);
    assert!(err.contains("cannot start the inference service"), "{err}");
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let svc = ChildService::spawn(&["--queue-capacity", "25"]);
    wait_ready(&svc.base).await;
    let frames = bikes_jpegs(25);
    let body = frame_batch(&frames, 0, 640, 272);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let send = |body: Vec<u8>| {
        http.post(format!("{}/predict", svc.base))
            .header("content-type", FRAME_BATCH_CONTENT_TYPE)
            .body(body)
            .send()
    };
    // 25 frames fill the queue; while they run, another request of any size is refused
    let (first, second) = tokio::join!(send(body.clone()), send(body));
    let mut statuses = [
        first.expect("first answered"),
        second.expect("second answered"),
    ];
    statuses.sort_by_key(|r| r.status().as_u16());
    assert_eq!(statuses[0].status(), 200);
    assert_eq!(statuses[1].status(), 503);
    assert_eq!(statuses[1].headers()["retry-after"], "1");
    let [_, refused] = statuses;
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "queue_full");
}
