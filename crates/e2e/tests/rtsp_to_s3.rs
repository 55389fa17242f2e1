//! End to end, every part real: the stack's RTSP server plays bikes.mp4; the producer binary
//! reads it and publishes 25-frame batches to the broker; the consumer binary sends them to the
//! inference binary (YOLOv8n on ONNX Runtime) and writes annotated JPEGs and JSON to the S3 API.
//!
//! What reached S3 is checked against what reached Kafka: every published batch has its JSON,
//! frame numbers have no gaps, images are where the policy says, bikes.mp4 shows people, the
//! group's committed offsets reach the end of the topic, and the services' counters agree with
//! S3. A broken stage fails it: no batches (producer), no or wrong detections (inference), a
//! missing or extra object or an uncommitted offset (consumer).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use testkit::process::{ServiceProcess, workspace_bin};
use testkit::servers::free_port;
use testkit::{Stack, kafka, s3, unique_name};

/// Full batches the producer must publish before it is stopped (plus the partial one its
/// shutdown flushes, if any).
const BATCHES: f64 = 4.0;
const STREAM: &str = "bikes";

fn service(bin: &str, args: &[&str], env: &[(&str, &str)], ops_port: u16) -> ServiceProcess {
    let mut process = ServiceProcess::start(&workspace_bin(bin), args, env, ops_port);
    process.wait_http_ok("/ready", Duration::from_secs(120));
    process
}

async fn list_keys(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list objects");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
        token = page.next_continuation_token().map(String::from);
        if token.is_none() {
            return keys;
        }
    }
}

async fn get_json(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> serde_json::Value {
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get object");
    let body = object.body.collect().await.expect("body").into_bytes();
    serde_json::from_slice(&body).expect("results document is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_to_s3_loses_nothing_and_counts_agree() {
    let stack = Stack::require();
    let topic = unique_name("e2e-frames");
    let group = unique_name("e2e-group");
    let bucket = unique_name("e2e-results");
    let s3 = s3::client(&stack.s3_endpoint);
    s3::create_bucket(&s3, &bucket).await.expect("bucket");

    let inference_port = free_port();
    let inference_listen = format!("127.0.0.1:{inference_port}");
    let model = testkit::model("yolov8n.onnx");
    let inference = service(
        "inference",
        &[
            "--listen",
            &inference_listen,
            "--model",
            &model.to_string_lossy(),
        ],
        &[],
        inference_port,
    );
    let consumer_port = free_port();
    let consumer_listen = format!("127.0.0.1:{consumer_port}");
    let inference_url = format!("http://{inference_listen}");
    let consumer = service(
        "consumer",
        &[
            "--brokers",
            &stack.kafka_brokers,
            "--topic",
            &topic,
            "--group",
            &group,
            "--inference-url",
            &inference_url,
            "--s3-endpoint",
            &stack.s3_endpoint,
            "--bucket",
            &bucket,
            "--listen",
            &consumer_listen,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
        consumer_port,
    );
    let producer_port = free_port();
    let producer_listen = format!("127.0.0.1:{producer_port}");
    let source = format!("{STREAM}={}", stack.rtsp_url(STREAM));
    let mut producer = service(
        "producer",
        &[
            "--brokers",
            &stack.kafka_brokers,
            "--topic",
            &topic,
            "--source",
            &source,
            "--frame-rate",
            "10",
            "--listen",
            &producer_listen,
        ],
        &[],
        producer_port,
    );

    // Let the camera run for BATCHES batches, then stop the producer (it flushes and exits).
    let deadline = Instant::now() + Duration::from_secs(120);
    while producer.metric_sum("producer_batches_sent_total") < BATCHES {
        assert!(
            Instant::now() < deadline,
            "producer published {} of {BATCHES} batches in 120 s; logs:\n{}",
            producer.metric_sum("producer_batches_sent_total"),
            producer.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = producer.terminate();
    assert!(status.success(), "producer exit: {status}");

    // What Kafka holds is the truth the rest is checked against.
    let ends = kafka::end_offsets(&stack.kafka_brokers, &topic);
    let messages: i64 = ends.iter().map(|(_, end)| end).sum();
    assert!(
        messages as f64 >= BATCHES,
        "topic holds {messages} messages"
    );
    let published = kafka::read_topic(
        &stack.kafka_brokers,
        &topic,
        Duration::from_secs(60),
        |seen| seen.len() as i64 >= messages,
    )
    .await;
    assert_eq!(published.len() as i64, messages, "every message read back");

    // The consumer group finishes the topic: committed offsets reach every partition's end.
    let partitions: Vec<i32> = ends.iter().map(|(p, _)| *p).collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let committed = kafka::committed_offsets(&stack.kafka_brokers, &group, &topic, &partitions);
        if committed.iter().zip(&ends).all(|(c, (_, end))| c == end) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {committed:?} of end offsets {ends:?}; consumer logs:\n{}",
            consumer.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every published batch has its results document, and nothing else is there.
    let results = list_keys(&s3, &bucket, &format!("results/{STREAM}/")).await;
    assert_eq!(
        results.len(),
        published.len(),
        "one JSON per batch: {results:?}"
    );
    let mut documents = BTreeMap::new();
    for p in &published {
        let session = &p.batch.producer_session.to_string()[..8];
        let suffix = format!("batch-{:012}-{session}.json", p.batch.batch_seq);
        let key = results
            .iter()
            .find(|k| k.ends_with(&suffix))
            .unwrap_or_else(|| panic!("no results for batch {}: {results:?}", p.batch.batch_seq));
        documents.insert(p.batch.batch_seq, (p, get_json(&s3, &bucket, key).await));
    }

    // Frame numbers: complete from the first to the last batch, and the ones published.
    let stored_seqs: Vec<u64> = documents
        .values()
        .flat_map(|(_, d)| d["frames"].as_array().expect("frames").iter())
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect();
    let published_seqs: Vec<u64> = documents
        .values()
        .flat_map(|(p, _)| p.batch.frames.iter().map(|f| f.seq))
        .collect();
    assert_eq!(
        stored_seqs, published_seqs,
        "S3 holds the frames Kafka holds"
    );
    let first = stored_seqs[0];
    let expected: Vec<u64> = (first..first + stored_seqs.len() as u64).collect();
    assert_eq!(stored_seqs, expected, "no gaps in frame numbers");

    // Images where the policy says (frames with detections; at least one per batch), all stored.
    let images = list_keys(&s3, &bucket, &format!("annotated/{STREAM}/")).await;
    let mut referenced = BTreeSet::new();
    let mut classes = BTreeMap::<String, u64>::new();
    let mut detections = 0;
    for (seq, (_, document)) in &documents {
        let frames = document["frames"].as_array().expect("frames");
        let mut drawn = 0;
        for frame in frames {
            let found = frame["detections"].as_array().expect("detections").len();
            detections += found;
            match frame["image_key"].as_str() {
                Some(key) => {
                    assert!(images.contains(key), "image {key} of batch {seq} is in S3");
                    referenced.insert(key.to_string());
                    drawn += 1;
                }
                None => assert_eq!(
                    found, 0,
                    "batch {seq}: a frame with detections has no image"
                ),
            }
        }
        assert!(drawn >= 1, "batch {seq} has at least one image");
        for (class, n) in document["detection_counts"].as_object().expect("counts") {
            *classes.entry(class.clone()).or_default() += n.as_u64().expect("count");
        }
    }
    assert_eq!(
        referenced, images,
        "every image in S3 belongs to a stored frame"
    );
    assert!(
        classes.get("person").copied().unwrap_or(0) > 0,
        "bikes.mp4 shows people: {classes:?}"
    );

    // The services' counters agree with S3 and Kafka.
    let frames = stored_seqs.len() as f64;
    assert_eq!(
        consumer.metric_sum("consumer_results_uploaded_total"),
        results.len() as f64
    );
    assert_eq!(
        consumer.metric_sum("consumer_images_uploaded_total"),
        images.len() as f64
    );
    assert_eq!(
        consumer.metric(r#"consumer_batches_total{outcome="stored"}"#),
        published.len() as f64
    );
    assert_eq!(consumer.metric_sum("consumer_dead_lettered_total"), 0.0);
    assert_eq!(inference.metric("inference_frames_total"), frames);
    assert_eq!(
        inference.metric_sum("inference_detections_total"),
        detections as f64
    );
    let finished = producer.logs_with_message("stream finished");
    assert_eq!(finished.len(), 1, "{}", producer.all_logs());
    assert_eq!(
        finished[0]["batches_sent"].as_u64(),
        Some(published.len() as u64)
    );
    assert_eq!(finished[0]["frames_dropped"].as_u64(), Some(0));
}
