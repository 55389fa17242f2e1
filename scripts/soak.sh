#!/usr/bin/env bash
# The long night: 4 live RTSP streams through producer, broker, consumer, inference and S3 for
# MINUTES (default 10), RSS and CPU of every service sampled every 10 s. Prints first, last and
# max RSS after a 2-minute warm-up and fails if any service grows more than 10% from then to the
# end. Not part of CI (too long); the README's figures come from its latest run.
#
#   scripts/soak.sh [MINUTES] [extra `bench soak` flags, e.g. --frame-rate 2]
#
# Starts the native stack if it is not running (and stops it again). Writes target/bench/soak.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/lib/env.sh"
# shellcheck source=scripts/lib/native-stack.sh
source "$here/lib/native-stack.sh"

minutes="${1:-10}"
[ $# -gt 0 ] && shift
cd "$VP_ROOT"
"$here/install-deps.sh"
bench_dir="$(build_bench_binaries)"
started_here=0
if ! infra_up; then
  log "starting the native stack for the soak"
  started_here=1
  native_up >/dev/null
fi
# shellcheck disable=SC2064 # expand now: the flag is fixed from here on
trap "[ $started_here = 1 ] && native_down" EXIT
VP_SHARED_DIR="$VP_SHARED_DIR" VP_KAFKA_BROKERS="$VP_KAFKA_HOST:$VP_KAFKA_PORT" \
  VP_RTSP_BASE="rtsp://127.0.0.1:$VP_RTSP_PORT" VP_S3_ENDPOINT="http://127.0.0.1:$VP_S3_PORT" \
  ORT_DYLIB_PATH="$ORT_DYLIB" \
  "$bench_dir/bench" soak --minutes "$minutes" --bucket "$VP_S3_BUCKET" \
  --out "$VP_ROOT/target/bench/soak.json" "$@"
