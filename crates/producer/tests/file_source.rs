//! MP4 file sources through the producer binary, into the real broker.

mod support;

use std::time::Duration;

use support::{ffprobe_pts_us, frame_seqs, read_topic, sampled_pts, start_producer};
use testkit::{Stack, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigbuckbunny_once_as_fast_as_possible_publishes_what_the_sampling_rule_predicts() {
    let stack = Stack::require();
    let video = testkit::media("bigbuckbunny.mp4");
    let expected = sampled_pts(&ffprobe_pts_us(&video), 5_280_000, 1, 10);
    assert_eq!(
        expected.len(),
        53,
        "132 pictures at 25 fps over 5.28 s give 53 slots of 100 ms"
    );

    let topic = unique_name("file-once");
    let mut producer = start_producer(
        &stack.kafka_brokers,
        &[
            "--source",
            &format!("bbb={}", video.display()),
            "--file-pace",
            "fast",
            "--topic",
            &topic,
        ],
    );
    // A finite source ends the process by itself, after delivering everything.
    assert!(
        producer.wait(Duration::from_secs(120)).success(),
        "logs:\n{}",
        producer.all_logs()
    );
    let published = read_topic(
        &stack.kafka_brokers,
        &topic,
        Duration::from_secs(30),
        |seen| seen.iter().map(|p| p.batch.frames.len()).sum::<usize>() >= expected.len(),
    )
    .await;

    let pts: Vec<i64> = published
        .iter()
        .flat_map(|p| p.batch.frames.iter().map(|f| f.pts_us))
        .collect();
    assert_eq!(pts, expected, "exactly the pictures the rule keeps");
    assert_eq!(frame_seqs(&published), (0..53).collect::<Vec<u64>>());
    let sizes: Vec<(usize, bool)> = published
        .iter()
        .map(|p| (p.batch.frames.len(), p.batch.partial))
        .collect();
    assert_eq!(
        sizes,
        [(25, false), (25, false), (3, true)],
        "the last batch is flagged partial"
    );
    for frame in published.iter().flat_map(|p| &p.batch.frames) {
        let header = turbojpeg::read_header(&frame.jpeg).expect("a JPEG");
        assert_eq!((header.width, header.height), (1280, 720));
    }
    let errors: Vec<_> = producer
        .all_logs()
        .lines()
        .filter(|l| l.contains(r#""level":"ERROR""#) || l.contains(r#""level":"WARN""#))
        .map(str::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "the audio track causes no error or warning: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_source_list_with_overrides_loops_and_scales() {
    let stack = Stack::require();
    let video = testkit::media("bigbuckbunny.mp4");
    let prefix = unique_name("yaml");
    let dir = std::env::temp_dir().join(unique_name("producer-yaml"));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = dir.join("cameras.yaml");
    std::fs::write(
        &yaml,
        format!(
            "sources:\n  - id: small\n    url: file://{}\n    pace: fast\n    loops: 2\n    max_width: 640\n    jpeg_quality: 60\n    frame_rate: 5\n    topic: {prefix}.{{stream}}\n",
            video.display()
        ),
    )
    .unwrap();
    let mut producer = start_producer(&stack.kafka_brokers, &["--config", yaml.to_str().unwrap()]);
    assert!(
        producer.wait(Duration::from_secs(120)).success(),
        "logs:\n{}",
        producer.all_logs()
    );

    // Two passes on one continuous timeline, at 5 fps.
    let expected = sampled_pts(&ffprobe_pts_us(&video), 5_280_000, 2, 5);
    let published = read_topic(
        &stack.kafka_brokers,
        &format!("{prefix}.small"),
        Duration::from_secs(30),
        |seen| seen.iter().map(|p| p.batch.frames.len()).sum::<usize>() >= expected.len(),
    )
    .await;
    let pts: Vec<i64> = published
        .iter()
        .flat_map(|p| p.batch.frames.iter().map(|f| f.pts_us))
        .collect();
    assert_eq!(pts, expected);
    for frame in published.iter().flat_map(|p| &p.batch.frames) {
        assert_eq!(
            (frame.width, frame.height),
            (640, 360),
            "scaled keeping 16:9"
        );
        let header = turbojpeg::read_header(&frame.jpeg).unwrap();
        assert_eq!((header.width, header.height), (640, 360));
    }
    std::fs::remove_dir_all(dir).unwrap();
}
