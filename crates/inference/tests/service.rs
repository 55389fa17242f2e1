//! The real service (real model, real HTTP on loopback) answers every request form with the
//! reference detections, keeps frames in order, and refuses each kind of bad input with the
//! documented status and message.

mod support;

use base64::Engine as _;
use bytes::Bytes;
use common::inference_api::{FRAME_BATCH_CONTENT_TYPE, PredictResponse};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use support::*;

async fn post(
    path_and_query: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let base = service().await;
    reqwest::Client::new()
        .post(format!("{base}{path_and_query}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request sent")
}

async fn expect_error(resp: reqwest::Response, status: u16, code: &str, message_part: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.expect("JSON error body");
    assert_eq!(body["code"], code, "{body}");
    let msg = body["error"].as_str().expect("error message");
    assert!(
        msg.contains(message_part),
        "{msg:?} should mention {message_part:?}"
    );
}

fn json_body(frames: &[&[u8]]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "stream_id": "cam-1",
        "frames": frames.iter().enumerate().map(|(i, f)| json!({
            "frame_number": 100 + i, "frame_data": b64.encode(f), "timestamp": 1.5
        })).collect::<Vec<_>>()
    })
    .to_string()
}

#[tokio::test]
async fn json_form_gives_the_reference_detections() {
    let resp = post(
        "/predict",
        "application/json",
        json_body(&[&image("bus.jpg"), &image("zidane.jpg")]),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp: PredictResponse = resp.json().await.expect("PredictResponse");
    assert_eq!(resp.stream_id, "cam-1");
    assert_eq!((resp.total_frames, resp.total_detections), (2, 8));
    assert_eq!(resp.results[0].frame_number, 100);
    assert_eq!((resp.results[0].width, resp.results[0].height), (810, 1080));
    assert_reference(&resp.results[0].detections, BUS);
    assert_reference(&resp.results[1].detections, ZIDANE);
    assert!(resp.total_inference_time_ms > 0.0);
}

#[tokio::test]
async fn binary_frame_batch_form_gives_the_reference_detections() {
    for (file, (w, h), reference) in [
        ("bus.jpg", (810, 1080), BUS),
        ("zidane.jpg", (1280, 720), ZIDANE),
    ] {
        let body = frame_batch(&[Bytes::from(image(file))], 7, w, h);
        let resp = post("/predict", FRAME_BATCH_CONTENT_TYPE, body).await;
        assert_eq!(resp.status(), 200);
        let resp: PredictResponse = resp.json().await.expect("PredictResponse");
        assert_eq!(
            (resp.stream_id.as_str(), resp.results[0].frame_number),
            ("test-cam", 7)
        );
        assert_reference(&resp.results[0].detections, reference);
    }
}

#[tokio::test]
async fn multipart_form_gives_the_reference_detections() {
    let base = service().await;
    let form = Form::new()
        .text("stream_id", "browser")
        .part("file", Part::bytes(image("bus.jpg")).file_name("bus.jpg"))
        .part(
            "file",
            Part::bytes(image("zidane.jpg")).file_name("zidane.jpg"),
        );
    let resp = reqwest::Client::new()
        .post(format!("{base}/predict"))
        .multipart(form)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let resp: PredictResponse = resp.json().await.expect("PredictResponse");
    assert_eq!(resp.stream_id, "browser");
    assert_reference(&resp.results[0].detections, BUS);
    assert_reference(&resp.results[1].detections, ZIDANE);
}

#[tokio::test]
async fn a_batch_of_25_bikes_frames_returns_25_results_in_order() {
    let frames = bikes_jpegs(25);
    let resp = post(
        "/predict",
        FRAME_BATCH_CONTENT_TYPE,
        frame_batch(&frames, 5000, 640, 272),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp: PredictResponse = resp.json().await.expect("PredictResponse");
    assert_eq!(resp.total_frames, 25);
    let numbers: Vec<u64> = resp.results.iter().map(|r| r.frame_number).collect();
    assert_eq!(numbers, (5000..5025).collect::<Vec<_>>());
    assert!(
        resp.results
            .iter()
            .all(|r| (r.width, r.height) == (640, 272) && r.error.is_none())
    );
    assert!(
        resp.results
            .iter()
            .flat_map(|r| &r.detections)
            .any(|d| d.class_name == "person")
    );
}

#[tokio::test]
async fn class_allow_list_keeps_only_those_classes() {
    let resp = post(
        "/predict?classes=bus",
        "application/json",
        json_body(&[&image("bus.jpg")]),
    )
    .await;
    let resp: PredictResponse = resp.json().await.expect("PredictResponse");
    let classes: Vec<&str> = resp.results[0]
        .detections
        .iter()
        .map(|d| d.class_name.as_str())
        .collect();
    assert_eq!(classes, ["bus"]);
}

#[tokio::test]
async fn conf_and_max_det_options_apply() {
    let resp = post(
        "/predict?conf=0.85&max_det=2",
        "application/json",
        json_body(&[&image("bus.jpg")]),
    )
    .await;
    let resp: PredictResponse = resp.json().await.expect("PredictResponse");
    let confs: Vec<f32> = resp.results[0]
        .detections
        .iter()
        .map(|d| d.confidence)
        .collect();
    assert_eq!(confs.len(), 2);
    assert!(confs.iter().all(|c| *c > 0.85), "{confs:?}");
}

// ---- bad input: one test per class ----

#[tokio::test]
async fn empty_body_is_400() {
    expect_error(
        post("/predict", "application/json", "").await,
        400,
        "empty_body",
        "empty",
    )
    .await;
}

#[tokio::test]
async fn a_body_that_is_not_an_image_is_400() {
    let resp = post(
        "/predict",
        "application/json",
        json_body(&[b"hello, not an image"]),
    )
    .await;
    expect_error(resp, 400, "invalid_image", "not a JPEG or PNG").await;
}

#[tokio::test]
async fn a_truncated_jpeg_in_a_batch_fails_only_that_frame() {
    let bus = image("bus.jpg");
    let truncated = &bus[..bus.len() / 2];
    let resp = post(
        "/predict",
        "application/json",
        json_body(&[&bus, truncated, &image("zidane.jpg")]),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp: PredictResponse = resp.json().await.expect("PredictResponse");
    assert_reference(&resp.results[0].detections, BUS);
    let bad = &resp.results[1];
    assert_eq!(bad.frame_number, 101);
    assert!(bad.detections.is_empty());
    assert!(
        bad.error
            .as_deref()
            .is_some_and(|e| e.contains("corrupt or truncated")),
        "{bad:?}"
    );
    assert_reference(&resp.results[2].detections, ZIDANE);
}

#[tokio::test]
async fn a_truncated_jpeg_alone_is_400() {
    let bus = image("bus.jpg");
    let resp = post(
        "/predict",
        "application/json",
        json_body(&[&bus[..bus.len() / 2]]),
    )
    .await;
    expect_error(resp, 400, "invalid_image", "corrupt or truncated").await;
}

#[tokio::test]
async fn zero_frames_is_400() {
    let resp = post(
        "/predict",
        "application/json",
        json!({"stream_id": "c", "frames": []}).to_string(),
    )
    .await;
    expect_error(resp, 400, "no_frames", "no frames").await;
}

#[tokio::test]
async fn more_frames_than_the_maximum_is_413() {
    let tiny = image("zidane.jpg");
    let frames: Vec<&[u8]> = (0..=MAX_FRAMES).map(|_| &tiny[..64]).collect();
    let resp = post("/predict", "application/json", json_body(&frames)).await;
    expect_error(
        resp,
        413,
        "too_many_frames",
        &format!("the limit is {MAX_FRAMES}"),
    )
    .await;
}

/// Sends `head` then `body` on a raw connection while reading the answer, as a client must when
/// the server may answer (and close) before the body is fully sent.
async fn raw_exchange(head: String, body: Vec<u8>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let base = service().await;
    let stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await; // the server may stop reading: errors are expected
    });
    let mut answer = Vec::new();
    let _ = rd.read_to_end(&mut answer).await;
    writer.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let json = text.find('{').map_or(Value::Null, |at| {
        serde_json::from_str(text[at..].trim_end()).unwrap_or(Value::Null)
    });
    (status, json)
}

#[tokio::test]
async fn a_body_declared_over_the_size_limit_is_413() {
    let len = MAX_BODY_BYTES + 1;
    let head = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw_exchange(head, vec![b' '; len]).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "payload_too_large", "{body}");
}

#[tokio::test]
async fn a_chunked_body_growing_over_the_size_limit_is_413() {
    let head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_string();
    let chunk = 1024 * 1024;
    let mut body = Vec::new();
    for _ in 0..=(MAX_BODY_BYTES / chunk) {
        body.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b' ', chunk));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (status, json) = raw_exchange(head, body).await;
    assert_eq!(status, 413);
    assert_eq!(json["code"], "payload_too_large", "{json}");
}

#[tokio::test]
async fn huge_image_dimensions_are_refused_before_decoding() {
    let mut jpeg = image("bus.jpg");
    // rewrite the SOF marker's height and width to 60000 x 60000
    let sof = jpeg
        .windows(2)
        .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0 | 0xC2))
        .expect("SOF marker");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let resp = post("/predict", "application/json", json_body(&[&jpeg])).await;
    expect_error(resp, 400, "invalid_image", "60000x60000").await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let resp = post("/predict", "text/plain", "hello").await;
    expect_error(resp, 415, "unsupported_media_type", "text/plain").await;
    let no_type = reqwest::Client::new()
        .post(format!("{}/predict", service().await))
        .body("x")
        .send()
        .await
        .expect("sent");
    expect_error(no_type, 415, "unsupported_media_type", "no Content-Type").await;
}

#[tokio::test]
async fn bad_base64_is_400_naming_the_frame() {
    let body =
        json!({"stream_id": "c", "frames": [{"frame_number": 9, "frame_data": "***"}]}).to_string();
    expect_error(
        post("/predict", "application/json", body).await,
        400,
        "invalid_base64",
        "frame 9",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_400() {
    expect_error(
        post("/predict", "application/json", "{\"frames\": [").await,
        400,
        "invalid_json",
        "invalid JSON",
    )
    .await;
}

#[tokio::test]
async fn malformed_frame_batch_is_400() {
    let resp = post(
        "/predict",
        FRAME_BATCH_CONTENT_TYPE,
        b"VPFB\x00\x09garbage".to_vec(),
    )
    .await;
    expect_error(
        resp,
        400,
        "invalid_frame_batch",
        "unsupported frame batch version 9",
    )
    .await;
}

#[tokio::test]
async fn nan_or_out_of_range_thresholds_are_400() {
    let body = json_body(&[&image("bus.jpg")]);
    for (query, part) in [
        ("conf=NaN", "conf must be"),
        ("iou=1.5", "iou must be"),
        ("conf=-0.1", "conf must be"),
        ("max_det=0", "max_det"),
    ] {
        let resp = post(
            &format!("/predict?{query}"),
            "application/json",
            body.clone(),
        )
        .await;
        expect_error(resp, 400, "invalid_options", part).await;
    }
    let resp = post("/predict?conf=abc", "application/json", body).await;
    expect_error(resp, 400, "invalid_options", "invalid query").await;
}

#[tokio::test]
async fn unknown_classes_are_400() {
    let resp = post(
        "/predict?classes=person,unicorn",
        "application/json",
        json_body(&[&image("bus.jpg")]),
    )
    .await;
    expect_error(resp, 400, "unknown_class", "unicorn").await;
}

// ---- operations ----

#[tokio::test]
async fn health_answers_and_queue_depth_shows_while_a_long_batch_runs() {
    let base = service().await;
    let frames = bikes_jpegs(25);
    let body = frame_batch(&frames, 0, 640, 272);
    let batch = tokio::spawn(post("/predict", FRAME_BATCH_CONTENT_TYPE, body));
    let http = reqwest::Client::new();
    let mut answered_during_batch = 0;
    let mut deepest = 0;
    while !batch.is_finished() {
        let health = http
            .get(format!("{base}/health"))
            .send()
            .await
            .expect("health answers");
        assert_eq!(health.status(), 200);
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics");
        let text = metrics.text().await.expect("text");
        let depth: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix("inference_queue_depth "))
            .and_then(|v| v.trim().parse().ok())
            .expect("inference_queue_depth gauge");
        deepest = deepest.max(depth);
        if !batch.is_finished() {
            answered_during_batch += 1;
        }
    }
    assert_eq!(batch.await.expect("batch task").status(), 200);
    assert!(
        answered_during_batch > 0,
        "/health never answered while the batch ran"
    );
    // other tests may add frames concurrently, never take this batch's 25 away
    assert!(
        deepest >= 25,
        "queue depth peaked at {deepest} while 25 frames were admitted"
    );
}

#[tokio::test]
async fn stats_metrics_and_openapi_describe_the_service() {
    let base = service().await;
    post(
        "/predict",
        "application/json",
        json_body(&[&image("bus.jpg")]),
    )
    .await;
    let stats: Value = reqwest::get(format!("{base}/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["model"]["name"], "yolov8n");
    assert_eq!(stats["model"]["classes"], 80);
    assert!(stats["requests"].as_u64().expect("requests") >= 1);
    assert!(stats["latency_ms"]["p50_ms"].as_f64().expect("p50") > 0.0);

    let metrics = metrics_text(base).await;
    for name in [
        "inference_requests_total{status=\"200\"}",
        "inference_detections_total{class=\"person\"}",
        "inference_stage_seconds_bucket",
        "inference_queue_depth",
    ] {
        assert!(metrics.contains(name), "missing {name}");
    }

    let doc: Value = reqwest::get(format!("{base}/openapi.json"))
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    assert!(doc["paths"]["/predict"]["post"].is_object());
    assert!(doc["components"]["schemas"]["PredictResponse"].is_object());
    let page = reqwest::get(format!("{base}/docs"))
        .await
        .expect("docs")
        .text()
        .await
        .expect("html");
    assert!(page.contains("/openapi.json"));
}
