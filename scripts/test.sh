#!/usr/bin/env bash
# The project's test command (README quick start; .ci/run runs exactly this).
#
# Installs what is missing, starts the native stack of real servers unless it is already running
# (and then stops it again when the tests end, pass or fail), and runs the whole workspace's
# tests against it. Extra arguments go to `cargo test`, e.g. `scripts/test.sh -p common`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/lib/env.sh"
# shellcheck source=scripts/lib/native-stack.sh
source "$here/lib/native-stack.sh"

"$here/install-deps.sh"

started_here=0
if ! infra_up; then
  log "starting the native stack for the tests"
  started_here=1
  native_up >/dev/null
fi
cleanup() {
  local rc=$?
  if [ "$started_here" = 1 ]; then
    log "stopping the native stack this run started"
    native_down
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

export VP_SHARED_DIR VP_KAFKA_BROKERS="$VP_KAFKA_HOST:$VP_KAFKA_PORT" \
  VP_S3_ENDPOINT="http://127.0.0.1:$VP_S3_PORT" VP_RTSP_BASE="rtsp://127.0.0.1:$VP_RTSP_PORT" \
  ORT_DYLIB_PATH="$ORT_DYLIB" VP_TANSU_BIN="$TANSU_BIN" VP_MOTO_BIN="$MOTO_VENV/bin/moto_server" VP_GST_PYTHON="$GST_PYTHON" \
  VP_RTSP_MEDIA_DIR="$VP_STATE_DIR/media"
cd "$VP_ROOT"
# `-p NAME` narrows the run to packages; otherwise the whole workspace.
scope=(--workspace)
for arg in "$@"; do
  case "$arg" in -p | --package | -p* | --package=*) scope=() ;; esac
done
cargo test "${scope[@]}" --locked "$@"
