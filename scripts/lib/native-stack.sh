# The native stack: real servers on loopback, without Docker. Sourced by scripts/local-test.sh.
#
#   broker  tansu (Kafka protocol)        $VP_KAFKA_HOST:$VP_KAFKA_PORT, in-memory storage
#   s3      moto server (S3 API)          http://127.0.0.1:$VP_S3_PORT, bucket $VP_S3_BUCKET
#   rtsp    GStreamer RTSP server         rtsp://127.0.0.1:$VP_RTSP_PORT/<stem>[-high], every
#                                         video in $VP_SHARED_DIR/media, looped forever
#
# On top of it, the pipeline's own services (release builds of this workspace), started by
# `services_up` for `scripts/local-test.sh up`:
#
#   inference  http://127.0.0.1:$VP_INFERENCE_PORT          /ready /metrics /predict
#   consumer   $VP_VIDEO_TOPIC -> inference -> S3 bucket     ops on :$VP_CONSUMER_PORT
#   producer   rtsp://127.0.0.1:$VP_RTSP_PORT/$VP_DEMO_STREAM -> Kafka $VP_VIDEO_TOPIC
#                                                            ops on :$VP_PRODUCER_PORT
#
# Each component runs in its own session (setsid) so that stopping it stops its children too.
# Pid files and logs live under $VP_STATE_DIR (.local/, git-ignored). Starting waits for each
# server to answer with a deadline, never with a fixed sleep.

NATIVE_COMPONENTS=(broker s3 rtsp)
SERVICE_COMPONENTS=(inference consumer producer)

# Builds the services and `bench` for the drills and the soak, in VP_BUILD_PROFILE: `release`
# (default), or `dev`, which shares the test build's optimised dependencies and builds faster;
# figures in the README say which was used. Prints the directory of the binaries.
build_bench_binaries() {
  local profile="${VP_BUILD_PROFILE:-release}" flag=() dir
  case "$profile" in
    release) flag=(--release) dir=release ;;
    dev) dir=debug ;;
    *) die "VP_BUILD_PROFILE must be release or dev, not '$profile'" ;;
  esac
  log "building $profile binaries"
  (cd "$VP_ROOT" && cargo build "${flag[@]}" --locked -p producer -p consumer -p inference -p bench) >&2
  echo "$(cargo_target_dir)/$dir"
}

run_dir() { echo "$VP_STATE_DIR/run"; }
log_dir() { echo "$VP_STATE_DIR/logs"; }
pid_file() { echo "$(run_dir)/$1.pid"; }
log_file() { echo "$(log_dir)/$1.log"; }

pid_of() {
  local f
  f="$(pid_file "$1")"
  [ -f "$f" ] && cat "$f"
}

is_running() {
  local pid
  pid="$(pid_of "$1")" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Answers 0 when the component serves requests, not merely when its process exists.
probe() {
  case "$1" in
    broker) timeout 3 "$TANSU_BIN" topic list --broker "tcp://$VP_KAFKA_HOST:$VP_KAFKA_PORT" >/dev/null 2>&1 ;;
    s3) curl -sf -m 2 -o /dev/null "http://127.0.0.1:$VP_S3_PORT/moto-api/" ;;
    rtsp) [ "$(curl -s -m 3 -o /dev/null -w '%{http_code}' -X OPTIONS "rtsp://127.0.0.1:$VP_RTSP_PORT/")" = "200" ] ;;
    inference) curl -sf -m 2 -o /dev/null "$VP_INFERENCE_URL/ready" ;;
    consumer) curl -sf -m 2 -o /dev/null "http://127.0.0.1:$VP_CONSUMER_PORT/ready" ;;
    producer) curl -sf -m 2 -o /dev/null "http://127.0.0.1:$VP_PRODUCER_PORT/ready" ;;
  esac
}

# launch NAME CMD...: starts CMD in its own session with output to the component's log.
launch() {
  local name="$1"
  shift
  mkdir -p "$(run_dir)" "$(log_dir)"
  setsid "$@" >"$(log_file "$name")" 2>&1 </dev/null &
  echo $! >"$(pid_file "$name")"
}

wait_ready() {
  local name="$1" deadline=$((SECONDS + STACK_START_TIMEOUT))
  until probe "$name"; do
    if ! is_running "$name"; then
      tail -n 20 "$(log_file "$name")" >&2 || true
      die "$name exited during start-up; full log: $(log_file "$name")"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$(log_file "$name")" >&2 || true
      die "$name not ready after ${STACK_START_TIMEOUT}s; log: $(log_file "$name")"
    fi
    sleep 0.2
  done
}

start_broker() {
  [ -x "$TANSU_BIN" ] || die "tansu missing at $TANSU_BIN: run scripts/install-deps.sh"
  launch broker "$TANSU_BIN" broker \
    --listener-url "tcp://$VP_KAFKA_HOST:$VP_KAFKA_PORT" \
    --advertised-listener-url "tcp://$VP_KAFKA_HOST:$VP_KAFKA_PORT" \
    --storage-engine "memory://tansu/"
}

start_s3() {
  [ -x "$MOTO_VENV/bin/moto_server" ] || die "moto missing in $MOTO_VENV: run scripts/install-deps.sh"
  launch s3 "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$VP_S3_PORT"
}

# The server re-encodes an Annex-B copy of each sample video (see scripts/rtsp-server.py); make
# it once per video, and remember each video's frame rate beside it.
prepare_rtsp_media() {
  local media_dir="$VP_STATE_DIR/media" found=0
  mkdir -p "$media_dir"
  for mp4 in "$VP_SHARED_DIR"/media/*.mp4; do
    [ -f "$mp4" ] || continue
    found=1
    local stem
    stem="$(basename "$mp4" .mp4)"
    if [ ! -s "$media_dir/$stem.h264" ] || [ "$mp4" -nt "$media_dir/$stem.h264" ]; then
      ffmpeg -v error -y -i "$mp4" -an -c:v copy -bsf:v h264_mp4toannexb -f h264 "$media_dir/$stem.h264.tmp" \
        && mv "$media_dir/$stem.h264.tmp" "$media_dir/$stem.h264"
      ffprobe -v error -select_streams v:0 -show_entries stream=r_frame_rate -of csv=p=0 "$mp4" >"$media_dir/$stem.fps"
    fi
  done
  [ "$found" = 1 ] || die "no .mp4 files in $VP_SHARED_DIR/media (set VP_SHARED_DIR)"
}

start_rtsp() {
  [ -x "$GST_PYTHON" ] || die "$GST_PYTHON missing: run scripts/install-deps.sh"
  prepare_rtsp_media
  launch rtsp "$GST_PYTHON" "$VP_ROOT/scripts/rtsp-server.py" --host 127.0.0.1 --port "$VP_RTSP_PORT" \
    --media-dir "$VP_STATE_DIR/media"
}

# The bucket the services write to, as localstack-init does for the Docker stack.
create_bucket() {
  local code
  code="$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$VP_S3_PORT/$VP_S3_BUCKET")"
  case "$code" in
    200 | 409) ;;
    *) die "creating bucket $VP_S3_BUCKET answered HTTP $code" ;;
  esac
}

# The services, as release builds; their settings are the services' own defaults except for
# addresses on loopback. LOG_FORMAT (default json) applies to all three.
start_inference() {
  launch inference env MALLOC_ARENA_MAX="$MALLOC_ARENA_MAX" ORT_DYLIB_PATH="$ORT_DYLIB" "$(service_bin inference)" \
    --listen "127.0.0.1:$VP_INFERENCE_PORT" --model "$VP_SHARED_DIR/models/yolov8n.onnx"
}

start_consumer() {
  launch consumer env MALLOC_ARENA_MAX="$MALLOC_ARENA_MAX" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "$(service_bin consumer)" \
    --brokers "$VP_KAFKA_HOST:$VP_KAFKA_PORT" --topic "$VP_VIDEO_TOPIC" \
    --inference-url "$VP_INFERENCE_URL" --s3-endpoint "http://127.0.0.1:$VP_S3_PORT" \
    --bucket "$VP_S3_BUCKET" --listen "127.0.0.1:$VP_CONSUMER_PORT"
}

start_producer() {
  launch producer env MALLOC_ARENA_MAX="$MALLOC_ARENA_MAX" "$(service_bin producer)" --brokers "$VP_KAFKA_HOST:$VP_KAFKA_PORT" \
    --topic "$VP_VIDEO_TOPIC" --source "$VP_DEMO_STREAM=rtsp://127.0.0.1:$VP_RTSP_PORT/$VP_DEMO_STREAM" \
    --frame-rate "$VP_DEMO_FPS" --listen "127.0.0.1:$VP_PRODUCER_PORT"
}

service_bin() { echo "$VP_SERVICE_BIN_DIR/$1"; }

# Builds the three services once (release) and starts those not running, in data-flow order
# from the sink back, so nothing is produced before something can consume it.
services_up() {
  log "building the services (cargo build --release; the first build takes minutes)"
  (cd "$VP_ROOT" && cargo build --release --locked -q -p inference -p consumer -p producer)
  VP_SERVICE_BIN_DIR="$(cargo_target_dir)/release"
  export LOG_FORMAT="${LOG_FORMAT:-json}"
  for c in "${SERVICE_COMPONENTS[@]}"; do
    if is_running "$c" && probe "$c"; then
      log "$c: already running (pid $(pid_of "$c"))"
      continue
    fi
    if ! is_running "$c" && probe "$c"; then
      die "$c: something else already answers on its port; stop it first"
    fi
    "start_$c"
    wait_ready "$c"
    log "$c: ready (pid $(pid_of "$c"))"
  done
}

services_down() {
  local i
  # Producer first, so the consumer can finish what was published.
  for ((i = ${#SERVICE_COMPONENTS[@]} - 1; i >= 0; i--)); do stop_component "${SERVICE_COMPONENTS[$i]}"; done
}

native_up() {
  for c in "${NATIVE_COMPONENTS[@]}"; do
    if is_running "$c" && probe "$c"; then
      log "$c: already running (pid $(pid_of "$c"))"
      continue
    fi
    if ! is_running "$c" && probe "$c"; then
      die "$c: something else already answers on its port; stop it or change the port (scripts/lib/env.sh)"
    fi
    "start_$c"
    wait_ready "$c"
    log "$c: ready (pid $(pid_of "$c"))"
  done
  create_bucket
  native_status
}

stop_component() {
  local name="$1" pid
  pid="$(pid_of "$name")" || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name: did not stop on SIGTERM within 10s; killing"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    log "$name: stopped"
  fi
  # Children that left the process group are still in the session setsid gave them.
  pkill -KILL -s "$pid" 2>/dev/null || true
  rm -f "$(pid_file "$name")"
}

# Processes of the stack still alive, found by their command lines rather than pid files, so
# that a server whose pid file was lost is found too.
native_leftovers() {
  pgrep -af -- "$TANSU_BIN broker|$MOTO_VENV/bin/moto_server|scripts/rtsp-server.py|release/(inference|consumer|producer) " || true
}

native_down() {
  services_down
  for c in "${NATIVE_COMPONENTS[@]}"; do stop_component "$c"; done
  local left
  left="$(native_leftovers)"
  if [ -n "$left" ]; then
    log "still running after down:"
    printf '%s\n' "$left" >&2
    return 1
  fi
}

# 0 when every server of the stack (not the services) answers.
infra_up() {
  local c
  for c in "${NATIVE_COMPONENTS[@]}"; do
    is_running "$c" && probe "$c" || return 1
  done
}

# One line per component; exit 1 if a server is down (services count only once started).
native_status() {
  local down=0
  printf '%-10s %-8s %-8s %s\n' COMPONENT STATE PID ENDPOINT
  for c in "${NATIVE_COMPONENTS[@]}" "${SERVICE_COMPONENTS[@]}"; do
    local state="down" endpoint
    if [[ " ${SERVICE_COMPONENTS[*]} " == *" $c "* ]] && [ ! -f "$(pid_file "$c")" ]; then
      continue
    fi
    case "$c" in
      inference) endpoint="$VP_INFERENCE_URL" ;;
      consumer) endpoint="http://127.0.0.1:$VP_CONSUMER_PORT/metrics ($VP_VIDEO_TOPIC -> s3://$VP_S3_BUCKET)" ;;
      producer) endpoint="http://127.0.0.1:$VP_PRODUCER_PORT/metrics ($VP_DEMO_STREAM -> $VP_VIDEO_TOPIC)" ;;
      broker) endpoint="$VP_KAFKA_HOST:$VP_KAFKA_PORT" ;;
      s3) endpoint="http://127.0.0.1:$VP_S3_PORT (bucket $VP_S3_BUCKET)" ;;
      rtsp) endpoint="rtsp://127.0.0.1:$VP_RTSP_PORT/{$(ls "$VP_STATE_DIR/media" 2>/dev/null | sed -n 's/\.h264$//p' | paste -sd, -)}" ;;
    esac
    if is_running "$c"; then
      if probe "$c"; then state="up"; else state="starting"; fi
    fi
    [ "$state" = "up" ] || down=1
    printf '%-10s %-8s %-8s %s\n' "$c" "$state" "$(pid_of "$c" || echo -)" "$endpoint"
  done
  return "$down"
}

native_logs() {
  local name="${1:-}"
  if [ -z "$name" ]; then
    for c in "${NATIVE_COMPONENTS[@]}" "${SERVICE_COMPONENTS[@]}"; do
      [ -f "$(log_file "$c")" ] && tail -n 20 "$(log_file "$c")" | sed "s/^/[$c] /"
    done
    return 0
  fi
  local f
  f="$(log_file "$name")"
  [ -f "$f" ] || die "no log for '$name' (components: ${NATIVE_COMPONENTS[*]} ${SERVICE_COMPONENTS[*]})"
  if [ -t 1 ]; then tail -n 100 -f "$f"; else cat "$f"; fi
}
