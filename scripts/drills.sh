#!/usr/bin/env bash
# Fault drills: the whole pipeline on servers of its own (broker on persistent storage, S3 API,
# RTSP server) while one part fails mid-stream, with a table of what it cost.
#
#   scripts/drills.sh [--drill NAME]... [--fault 15s]
#
# Drills: inference-kill, consumer-kill, s3-freeze, broker-freeze, broker-restart (tansu
# stopped and started again on its storage), camera-restart (a live RTSP camera). Each prints
# frames sampled, published, stored, lost, dropped (counted by the producer), stored twice and
# the seconds from the end of the fault to the next stored batch. Target: 0 lost and 0 stored
# twice for the file drills; for the camera, every lost frame counted as dropped. Exits
# non-zero when a drill misses it. About 2 minutes a drill; not part of CI. Writes
# target/bench/drills.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/lib/env.sh"
# shellcheck source=scripts/lib/native-stack.sh
source "$here/lib/native-stack.sh"

cd "$VP_ROOT"
"$here/install-deps.sh"
bench_dir="$(build_bench_binaries)"
prepare_rtsp_media
VP_SHARED_DIR="$VP_SHARED_DIR" ORT_DYLIB_PATH="$ORT_DYLIB" VP_TANSU_BIN="$TANSU_BIN" \
  VP_MOTO_BIN="$MOTO_VENV/bin/moto_server" VP_GST_PYTHON="$GST_PYTHON" \
  VP_RTSP_MEDIA_DIR="$VP_STATE_DIR/media" \
  "$bench_dir/bench" drills --out "$VP_ROOT/target/bench/drills.json" "$@"
