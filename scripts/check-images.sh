#!/usr/bin/env bash
# Builds every service image's runtime filesystem without a Docker daemon, and runs it.
#
#   scripts/check-images.sh [BIN_DIR]    # BIN_DIR: the built services (default: the debug build)
#
# buildah (Debian's, rootful, chroot isolation, vfs storage in a temporary directory) builds each
# Dockerfile's runtime target. Its runtime stages are used byte for byte; what cannot be built
# here is substituted (scripts/lib/image-containerfile.py):
#   - debian:12.12-slim is a debootstrapped bookworm minbase with the official image's apt
#     sources (scripts/install-deps.sh images); Docker Hub is unreachable from these machines.
#   - the `builder` stages (rust:1.95.0-slim-bookworm + cargo-chef) are the binaries in BIN_DIR,
#     built on this Debian 12 host against the same glibc; the debug build unless told otherwise.
#   - inference's `onnxruntime` stage is the library install-deps.sh took from the same wheel.
#   - `model-export` (Ultralytics downloads its .pt weights from GitHub, unreachable here) is
#     ../shared/models/yolov8n.onnx, which is what that stage exports.
# In each image, as its own user (10001): every shared library of the binaries resolves, the
# health check's curl runs, and the ENTRYPOINT (tini) starts the service with --help. The
# inference images also serve: the server starts from the ENTRYPOINT, loads the model with the
# image's ONNX Runtime and answers /ready and a /predict of bus.jpg. What is not checked: the
# read-only root filesystem and resource limits (chroot isolation has no mount or cgroup
# namespace), and the Rust build stages themselves (hadolint and the rules of check-deploy.sh
# read them).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/lib/env.sh"
"$here/install-deps.sh" images onnxruntime

bin_dir="${1:-$("$here/lib/cargo-bin-dir.sh")}"
model="$VP_SHARED_DIR/models/yolov8n.onnx"
[ -f "$model" ] || die "no model at $model (VP_SHARED_DIR=$VP_SHARED_DIR)"
port="${VP_IMAGE_CHECK_PORT:-18000}"

work="$(mktemp -d)"
server_pid=""
# tree PID: PID and all its descendants. buildah's chroot isolation has no PID namespace, and
# tini's child outlives a killed `buildah run`, so the server is found through its ancestry.
tree() {
  local child
  echo "$1"
  for child in $(pgrep -P "$1"); do tree "$child"; done
}
cleanup() {
  # shellcheck disable=SC2046 # a list of pids
  [ -z "$server_pid" ] || kill -KILL $(tree "$server_pid") 2>/dev/null || true
  buildah_ rm --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
buildah_() {
  buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"
}
export BUILDAH_ISOLATION=chroot

log "base: importing $IMAGES_BASE_TAR as debian:12.12-slim"
ctr="$(buildah_ from scratch)"
buildah_ add "$ctr" "$IMAGES_BASE_TAR" / >/dev/null
buildah_ config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash "$ctr"
buildah_ commit -q --rm "$ctr" docker.io/library/debian:12.12-slim >/dev/null

# The build context: only the substitutes, so no stage can reach the source tree by accident.
ctx="$work/ctx"
cd "$VP_ROOT"
mkdir -p "$ctx/builder/usr/local/bin" "$ctx/onnxruntime/ort" "$ctx/model-export/export"
# Every binary a Dockerfile copies out of its builder stage.
for bin in $(grep -h -- '--from=builder' docker/Dockerfile.* | grep -o '/usr/local/bin/[a-z0-9-]\+' | sort -u | xargs -n1 basename); do
  [ -x "$bin_dir/$bin" ] || die "no $bin in $bin_dir"
  # Debug information is most of a debug build's size, and vfs copies every layer whole.
  strip --strip-debug -o "$ctx/builder/usr/local/bin/$bin" "$bin_dir/$bin"
done
cp "$ORT_DYLIB" "$ctx/onnxruntime/ort/libonnxruntime.so"
cp "$model" "$ctx/model-export/export/model.onnx"

# build IMAGE DOCKERFILE TARGET: the Containerfile for TARGET, built as localhost/IMAGE.
build() {
  local image="$1" dockerfile="$2" target="$3" start=$SECONDS
  python3 "$here/lib/image-containerfile.py" "$dockerfile" "$target" \
    --prebuilt builder=builder $(grep -q -- '--from=onnxruntime' "$dockerfile" && echo --prebuilt onnxruntime=onnxruntime) \
    $([ "$target" = runtime-with-model ] && echo --prebuilt model-export=model-export) \
    >"$work/$image.Containerfile"
  buildah_ bud -q --format docker --pull=never --target "$target" -t "localhost/$image" \
    -f "$work/$image.Containerfile" "$ctx" >"$work/$image.build.log" 2>&1 \
    || { tail -30 "$work/$image.build.log" >&2; die "$image: build failed"; }
  log "$image: built from $dockerfile --target $target ($((SECONDS - start))s)"
}

# in_image IMAGE CMD...: runs CMD in a fresh container of IMAGE as the image's user.
in_image() {
  local image="$1" c rc=0
  shift
  c="$(buildah_ from -q --pull=never "localhost/$image")"
  buildah_ run "$c" -- "$@" || rc=$?
  buildah_ rm "$c" >/dev/null
  return $rc
}

entrypoint() {
  buildah_ inspect --format '{{range .Docker.Config.Entrypoint}}{{.}} {{end}}' "localhost/$1"
}

check_runs() {
  local image="$1"
  # One container for the three looks: vfs copies the whole image for each new container.
  # shellcheck disable=SC2016 # expanded inside the image
  in_image "$image" sh -c '
    for f in /usr/local/bin/* /usr/local/lib/*.so; do
      if [ -f "$f" ] && ldd "$f" | sed "s|^|$f: |" | grep "not found"; then exit 11; fi
    done
    [ "$(id -u)" = 10001 ] || exit 12
    curl --version >/dev/null || exit 13' || case $? in
    11) die "$image: a shared library is missing from the image (above)" ;;
    12) die "$image: does not run as user 10001" ;;
    13) die "$image: the health check's curl does not run" ;;
    *) die "$image: the checks could not run in the image" ;;
  esac
  # shellcheck disable=SC2046 # the ENTRYPOINT's words
  in_image "$image" $(entrypoint "$image") --help >"$work/$image.help" 2>&1 \
    || { cat "$work/$image.help" >&2; die "$image: ENTRYPOINT --help failed"; }
  grep -q -- "--help" "$work/$image.help" || die "$image: ENTRYPOINT --help printed no usage"
  log "$image: libraries resolve, runs as 10001, curl runs, ENTRYPOINT --help works"
}

# serve IMAGE [buildah run options]: the ENTRYPOINT serves /ready and detects on bus.jpg.
serve() {
  local image="$1" c deadline body listener p
  shift
  ! curl -s -m 2 -o /dev/null "http://127.0.0.1:$port/" || die "something already answers on port $port (VP_IMAGE_CHECK_PORT)"
  c="$(buildah_ from -q --pull=never "localhost/$image")"
  # shellcheck disable=SC2046 # the ENTRYPOINT's words
  buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs run \
    --env "INFERENCE_LISTEN=127.0.0.1:$port" "$@" "$c" -- $(entrypoint "$image") \
    >"$work/$image.serve.log" 2>&1 &
  server_pid=$!
  deadline=$((SECONDS + 120))
  until curl -sf -m 2 -o /dev/null "http://127.0.0.1:$port/ready"; do
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/$image.serve.log" >&2; die "$image: server exited"; }
    [ $SECONDS -lt $deadline ] || { cat "$work/$image.serve.log" >&2; die "$image: not ready in 120 s"; }
    sleep 1
  done
  listener="$(ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
  tree "$server_pid" | grep -qx "$listener" || die "$image: what answers on port $port is not the image's server"
  body="$(curl -sf -m 60 -F "file=@$VP_SHARED_DIR/media/bus.jpg" "http://127.0.0.1:$port/predict")" || { cat "$work/$image.serve.log" >&2; die "$image: /predict failed"; }
  # SIGTERM to tini, which forwards it: the service drains and exits as it would in a pod.
  for p in $(tree "$server_pid"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" != tini ] || kill -TERM "$p"
  done
  deadline=$((SECONDS + 30))
  while kill -0 "$server_pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "$image: the server did not stop within 30 s of SIGTERM"
    sleep 1
  done
  server_pid=""
  deadline=$((SECONDS + 30))
  while curl -s -m 2 -o /dev/null "http://127.0.0.1:$port/"; do
    [ $SECONDS -lt $deadline ] || die "$image: the server still answers after it was stopped"
    sleep 1
  done
  buildah_ rm "$c" >/dev/null
  python3 -c 'import json, sys; d = json.loads(sys.argv[1]); n = sum(x["class_name"] == "person" for x in d["results"][0]["detections"]); sys.exit(n < 4)' "$body" \
    || die "$image: /predict on bus.jpg did not find the four people: $body"
  log "$image: ENTRYPOINT serves; model loaded by the image's ONNX Runtime; bus.jpg gives its people"
}

build producer docker/Dockerfile.producer runtime
check_runs producer
build consumer docker/Dockerfile.consumer runtime
check_runs consumer
build inference docker/Dockerfile.inference runtime
check_runs inference
serve inference --volume "$model:/models/model.onnx:ro"
build inference-with-model docker/Dockerfile.inference runtime-with-model
serve inference-with-model
log "images: all built and run"
