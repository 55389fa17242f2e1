#!/usr/bin/env bash
# Prints the directory of the workspace's debug binaries, building them if one is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/env.sh"
dir="$(cargo_target_dir)/debug"
for bin in producer consumer inference; do
  if [ ! -x "$dir/$bin" ]; then
    (cd "$VP_ROOT" && cargo build --locked -q -p producer -p consumer -p inference --bins) >&2
    break
  fi
done
echo "$dir"
