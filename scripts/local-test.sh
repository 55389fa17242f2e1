#!/usr/bin/env bash
# Runs the pipeline's infrastructure on this machine.
#
# With a running Docker engine and docker-compose.yaml present, it drives `docker compose`;
# otherwise it drives the native stack of real servers on loopback (scripts/lib/native-stack.sh):
# a Kafka-protocol broker (tansu), an S3 API (moto) and an RTSP server (GStreamer) looping the
# videos of ../shared/media. Force one with VP_STACK=native or VP_STACK=docker.
#
#   scripts/local-test.sh demo [BATCHES]  the whole pipeline on the sample video, one command:
#                                         `up`, then wait for BATCHES (default 8) batches of
#                                         results in S3 (exit 1 after DEMO_DEADLINE, 300 s) and
#                                         print a summary; everything keeps running until `down`
#   scripts/local-test.sh up              install what is missing, start the stack (broker, S3,
#                                         RTSP server) and the services (inference, consumer,
#                                         producer on rtsp://127.0.0.1:8554/bikes), wait until ready
#   scripts/local-test.sh stack           only the stack's servers (what the tests need)
#   scripts/local-test.sh down            stop everything it started
#   scripts/local-test.sh status          one line per component; exit 1 if any is down
#   scripts/local-test.sh logs [NAME]     recent logs of all components, or one in full
#   scripts/local-test.sh test-inference [IMAGE]
#                                         send an image (default ../shared/media/bus.jpg) to the
#                                         inference service at $VP_INFERENCE_URL and print the
#                                         detections; starts a temporary service if none answers
#   scripts/local-test.sh producer [ARGS]
#                                         run the producer in the foreground (Ctrl-C stops it) on
#                                         the RTSP server's sample streams, starting the stack if
#                                         needed; ARGS replace the default sources, e.g.
#                                         --source cam=rtsp://HOST/path or --config cameras.yaml
#   scripts/local-test.sh s3-list [--limit N] [--stream ID]
#                                         the newest result documents in the bucket, with their
#                                         frames, images and detections
#   scripts/local-test.sh s3-download [--dest DIR] [--stream ID]
#                                         download the newest annotated image and results JSON
#   scripts/local-test.sh kafka-stats [--group G] [--topic T]
#                                         topics, partitions, start/end offsets, the consumer
#                                         group's committed offsets and lag
#   scripts/local-test.sh dlq-replay list|replay [--reason R] [--stream S] [--dry-run] ...
#                                         list dead letters with their reason, or re-publish
#                                         chosen ones to their source topic (README, consumer)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/lib/env.sh"
# shellcheck source=scripts/lib/native-stack.sh
source "$here/lib/native-stack.sh"

# The usage text is the comment block above, from line 2 to the first line that is not a comment.
usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
  exit 2
}

stack_kind() {
  case "${VP_STACK:-auto}" in
    native | docker) echo "$VP_STACK" ;;
    auto)
      if [ -f "$VP_ROOT/docker-compose.yaml" ] && command -v docker >/dev/null 2>&1 \
        && timeout 5 docker info >/dev/null 2>&1; then
        echo docker
      else
        echo native
      fi
      ;;
    *) die "VP_STACK must be native, docker or auto, not '$VP_STACK'" ;;
  esac
}

compose() { docker compose -f "$VP_ROOT/docker-compose.yaml" "$@"; }

test_inference() {
  local image="${1:-$VP_SHARED_DIR/media/bus.jpg}"
  [ -f "$image" ] || die "no image at $image"
  if ! probe inference; then
    "$here/install-deps.sh" onnxruntime
    log "no inference service answers at $VP_INFERENCE_URL; building and starting one for this request"
    (cd "$VP_ROOT" && cargo build --release --locked -p inference)
    launch inference env ORT_DYLIB_PATH="$ORT_DYLIB" "$(cargo_target_dir)/release/inference" \
      --listen "127.0.0.1:$VP_INFERENCE_PORT" --model "$VP_SHARED_DIR/models/yolov8n.onnx"
    trap 'stop_component inference' EXIT
    wait_ready inference
  fi
  log "POST $VP_INFERENCE_URL/predict with $image"
  curl -sS --fail-with-body -m 60 -F "file=@$image" "$VP_INFERENCE_URL/predict" | python3 "$here/lib/print-detections.py"
}

run_producer() {
  if ! probe broker || ! probe rtsp; then
    "$here/install-deps.sh" apt moto tansu
    native_up
  fi
  local args=("$@")
  if [ "${#args[@]}" = 0 ]; then
    local media stem
    for media in "$VP_STATE_DIR"/media/*.h264; do
      stem="$(basename "$media" .h264)"
      args+=(--source "$stem=rtsp://127.0.0.1:$VP_RTSP_PORT/$stem")
    done
  fi
  (cd "$VP_ROOT" && cargo build --release --locked -p producer)
  log "producer: ${args[*]} -> Kafka $VP_KAFKA_HOST:$VP_KAFKA_PORT (metrics on :9101; Ctrl-C stops)"
  exec "$(cargo_target_dir)/release/producer" --brokers "$VP_KAFKA_HOST:$VP_KAFKA_PORT" \
    --log-format "${LOG_FORMAT:-pretty}" "${args[@]}"
}

# S3 and Kafka settings of the running stack, as the services read them.
export S3_ENDPOINT="${S3_ENDPOINT-http://127.0.0.1:$VP_S3_PORT}" S3_BUCKET="${S3_BUCKET:-$VP_S3_BUCKET}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-$VP_KAFKA_HOST:$VP_KAFKA_PORT}"

s3_browse() {
  "$here/install-deps.sh" moto >/dev/null
  "$MOTO_VENV/bin/python" "$here/lib/s3_browse.py" "$@"
}

# consumer_tool BIN ARGS...: one of the consumer image's tools (kafka-stats, dlq-replay), in the
# compose stack's consumer container or built natively.
consumer_tool() {
  local bin="$1"
  shift
  if [ "$(stack_kind)" = docker ]; then
    compose exec consumer "$bin" "$@"
    return
  fi
  (cd "$VP_ROOT" && cargo build --release --locked -q -p consumer --bin "$bin")
  "$(cargo_target_dir)/release/$bin" "$@"
}

stack_up() {
  if [ "$(stack_kind)" = docker ]; then
    compose up -d --wait
  else
    "$here/install-deps.sh" apt moto tansu
    native_up
  fi
}

pipeline_up() {
  if [ "$(stack_kind)" = docker ]; then
    # The demo's summary and s3-list read the bucket with boto3 from the moto venv.
    "$here/install-deps.sh" moto
    compose --profile with-producer up -d --build --wait
  else
    "$here/install-deps.sh"
    native_up >/dev/null
    services_up
    native_status
  fi
}

demo() {
  local batches="${1:-8}" since
  since="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  pipeline_up
  log "waiting for $batches batches of results in s3://$S3_BUCKET (deadline ${DEMO_DEADLINE:-300}s)"
  "$MOTO_VENV/bin/python" "$here/lib/pipeline-summary.py" --since "$since" --batches "$batches" \
    --deadline "${DEMO_DEADLINE:-300}" --dest "$VP_STATE_DIR/s3-download"
  log "still running; scripts/local-test.sh s3-list | kafka-stats | logs NAME | down"
}

main() {
  local cmd="${1:-}"
  [ -n "$cmd" ] || usage
  shift
  local kind
  kind="$(stack_kind)"
  case "$cmd" in
    demo) demo "$@" ;;
    up) pipeline_up ;;
    stack) stack_up ;;
    down) if [ "$kind" = docker ]; then compose --profile with-producer --profile monitoring down; else native_down; fi ;;
    status) if [ "$kind" = docker ]; then compose ps; else native_status; fi ;;
    logs) if [ "$kind" = docker ]; then compose logs --tail=100 "$@"; else native_logs "$@"; fi ;;
    test-inference) test_inference "$@" ;;
    producer)
      if [ "$kind" = docker ]; then compose --profile with-producer up producer; else run_producer "$@"; fi
      ;;
    s3-list) s3_browse list "$@" ;;
    s3-download) s3_browse download "$@" ;;
    kafka-stats) consumer_tool kafka-stats "$@" ;;
    dlq-replay) consumer_tool dlq-replay "$@" ;;
    -h | --help | help) usage ;;
    *)
      log "unknown command '$cmd'"
      usage
      ;;
  esac
}

main "$@"
