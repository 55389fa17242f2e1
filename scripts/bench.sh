#!/usr/bin/env bash
# Benchmarks with figures, each compared against a reference measured in the same run.
#
#   scripts/bench.sh [all]
#       the report (README "Performance"): inference, producer and pipeline below, in one run
#       on this machine, with shorter windows (about 8 minutes); prints one table and writes
#       target/bench/report.json
#   scripts/bench.sh inference [extra bench flags]
#       raw ONNX Runtime session.run on preprocessed tensors (the limit) against the inference
#       service over HTTP with 25-frame binary FrameBatch requests, in alternating rounds (median
#       ratio), once per video of VP_BENCH_VIDEOS (default: bikes.mp4, the demo camera's
#       640x272 frames, then bigbuckbunny.mp4, 720p); writes target/bench/inference-<stem>.json
#   scripts/bench.sh producer [extra bench flags]
#       ffmpeg -threads 1 decode of bigbuckbunny.mp4 (the reference) against the producer
#       publishing the same file as fast as possible, and one live 720p RTSP camera's CPU cost;
#       starts the native stack if it is not running (and stops it again); writes
#       target/bench/producer.json
#   scripts/bench.sh consumer [extra bench flags]
#       the consumer's CPU per frame (annotate + encode + upload) over a backlog of bikes.mp4
#       through the real inference service and S3 API, and a live camera's capture-to-S3
#       latency histogram; starts the native stack if needed; writes target/bench/consumer.json
#   scripts/bench.sh pipeline [extra bench flags]
#       raw session.run on bikes frames (the limit) against one live RTSP stream through
#       producer, broker, consumer, inference and S3 on this machine; CPU and peak RSS per
#       service; capture-to-S3 latency; writes target/bench/pipeline.json
#
# Builds release binaries first. Prints a table per benchmark.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/lib/env.sh"
# shellcheck source=scripts/lib/native-stack.sh
source "$here/lib/native-stack.sh"

what="${1:-all}"
[ $# -gt 0 ] && shift
cd "$VP_ROOT"
target_dir="$(cargo_target_dir)"
inference_videos="${VP_BENCH_VIDEOS:-bikes.mp4 bigbuckbunny.mp4}"
export VP_SHARED_DIR
case "$what" in
  inference)
    "$here/install-deps.sh" apt onnxruntime
    log "building release binaries"
    cargo build --release --locked -p producer -p consumer -p inference -p bench
    for video in $inference_videos; do
      log "inference benchmark on $video"
      ORT_DYLIB_PATH="$ORT_DYLIB" "$target_dir/release/bench" inference --video "$video" \
        --out "$VP_ROOT/target/bench/inference-${video%.*}.json" "$@"
    done
    ;;
  producer | consumer | pipeline)
    "$here/install-deps.sh"
    log "building release binaries"
    cargo build --release --locked -p producer -p consumer -p inference -p bench
    started_here=0
    if ! infra_up; then
      log "starting the native stack for the benchmark"
      started_here=1
      native_up >/dev/null
    fi
    # shellcheck disable=SC2064 # expand now: the flag is fixed from here on
    trap "[ $started_here = 1 ] && native_down" EXIT
    bucket_flag=()
    [ "$what" != producer ] && bucket_flag=(--bucket "$VP_S3_BUCKET")
    VP_KAFKA_BROKERS="$VP_KAFKA_HOST:$VP_KAFKA_PORT" VP_RTSP_BASE="rtsp://127.0.0.1:$VP_RTSP_PORT" \
      VP_S3_ENDPOINT="http://127.0.0.1:$VP_S3_PORT" ORT_DYLIB_PATH="$ORT_DYLIB" \
      "$target_dir/release/bench" "$what" ${bucket_flag[@]+"${bucket_flag[@]}"} --out "$VP_ROOT/target/bench/$what.json" "$@"
    ;;
  all)
    start=$SECONDS
    "$here/install-deps.sh"
    # Build every release binary once, with one feature set, before anything is timed.
    cargo build --release --locked -p producer -p consumer -p inference -p bench
    log "[1/3] inference service against raw session.run"
    "$0" inference
    # One stack for the other two (each benchmark uses its own topics and groups); started
    # after the inference benchmark, which needs none of it.
    if ! infra_up; then
      log "starting the native stack for the benchmarks"
      native_up >/dev/null
      trap native_down EXIT
    fi
    log "[2/3] producer against ffmpeg's decode"
    "$0" producer --loops 10 --live-seconds 20
    log "[3/3] the whole pipeline against the limit"
    "$0" pipeline --warmup-seconds 15 --window-seconds 45 --live-seconds 30
    # shellcheck disable=SC2086 # one word per video
    python3 "$here/lib/bench-report.py" "$VP_ROOT/target/bench" $inference_videos
    log "all benchmarks in $((SECONDS - start)) s"
    ;;
  *) die "unknown benchmark '$what' (all, inference, producer, consumer, pipeline)" ;;
esac
