#!/usr/bin/env bash
# Benchmarks with figures, each compared against a limit measured in the same run.
#
#   scripts/bench.sh [inference] [extra bench flags]
#
# Builds release binaries, then runs `bench inference`: raw ONNX Runtime session.run on
# preprocessed tensors (the limit) against the inference service over HTTP with 25-frame binary
# FrameBatch requests. Prints a table; writes target/bench/inference.json.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/lib/env.sh"

"$here/install-deps.sh" apt onnxruntime
cd "$VP_ROOT"
what="${1:-inference}"
[ $# -gt 0 ] && shift
target_dir="$(cargo_target_dir)"
log "building release binaries"
cargo build --release --locked -p inference -p bench
export VP_SHARED_DIR ORT_DYLIB_PATH="$ORT_DYLIB"
case "$what" in
  inference) "$target_dir/release/bench" inference --out "$VP_ROOT/target/bench/inference.json" "$@" ;;
  *) die "unknown benchmark '$what' (inference)" ;;
esac
