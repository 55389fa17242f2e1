#!/usr/bin/env bash
# Runs the pipeline's infrastructure on this machine.
#
# With a running Docker engine and docker-compose.yaml present, it drives `docker compose`;
# otherwise it drives the native stack of real servers on loopback (scripts/lib/native-stack.sh):
# a Kafka-protocol broker (tansu), an S3 API (moto) and an RTSP server (GStreamer) looping the
# videos of ../shared/media. Force one with VP_STACK=native or VP_STACK=docker.
#
#   scripts/local-test.sh up              install what is missing, start, wait until ready
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
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/lib/env.sh"
# shellcheck source=scripts/lib/native-stack.sh
source "$here/lib/native-stack.sh"

usage() {
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
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

main() {
  local cmd="${1:-}"
  [ -n "$cmd" ] || usage
  shift
  local kind
  kind="$(stack_kind)"
  case "$cmd" in
    up)
      if [ "$kind" = docker ]; then
        compose up -d --wait
      else
        "$here/install-deps.sh" apt moto tansu
        native_up
      fi
      ;;
    down) if [ "$kind" = docker ]; then compose down; else native_down; fi ;;
    status) if [ "$kind" = docker ]; then compose ps; else native_status; fi ;;
    logs) if [ "$kind" = docker ]; then compose logs --tail=100 "$@"; else native_logs "$@"; fi ;;
    test-inference) test_inference "$@" ;;
    producer)
      if [ "$kind" = docker ]; then compose --profile with-producer up producer; else run_producer "$@"; fi
      ;;
    -h | --help | help) usage ;;
    *)
      log "unknown command '$cmd'"
      usage
      ;;
  esac
}

main "$@"
