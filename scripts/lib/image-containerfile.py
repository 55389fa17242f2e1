#!/usr/bin/env python3
"""Writes the Containerfile that scripts/check-images.sh builds for one Dockerfile target.

The target's own stages are copied byte for byte; only the stages that compile or download
something (named with --prebuilt STAGE=DIR) become `FROM scratch` + `COPY DIR/ /`, so the image
filesystem is what the Dockerfile assembles, from binaries built natively instead of in
`rust:*` (Docker Hub is unreachable here). Stages the target does not need are left out, and
a --prebuilt stage the target does not use is an error: the mapping would be stale.

    image-containerfile.py DOCKERFILE TARGET --prebuilt builder=builder [--prebuilt ...]
"""

import argparse
import re
import sys
from pathlib import Path

FROM = re.compile(r"^FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)
COPY_FROM = re.compile(r"^(?:COPY|ADD)\s.*--from=(\S+)", re.IGNORECASE | re.MULTILINE)


def stages(text: str) -> list[tuple[str, str, str]]:
    """(name, base, raw text) of each stage; the header before the first FROM is dropped."""
    found: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines(keepends=True):
        m = FROM.match(line.strip())
        if m:
            found.append((m.group(2) or str(len(found)), m.group(1), [line]))
        elif found:
            found[-1][2].append(line)
    return [(name, base, "".join(lines)) for name, base, lines in found]


def needed(all_stages: dict[str, tuple[str, str]], target: str, prebuilt: set[str]) -> list[str]:
    """Stages the target depends on (FROM and COPY --from), in file order."""
    want: set[str] = set()
    todo = [target]
    while todo:
        name = todo.pop()
        if name in want:
            continue
        want.add(name)
        if name in prebuilt:
            continue
        base, body = all_stages[name]
        deps = [base] + COPY_FROM.findall(body)
        todo.extend(d for d in deps if d in all_stages)
    return [n for n in all_stages if n in want]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dockerfile", type=Path)
    ap.add_argument("target")
    ap.add_argument("--prebuilt", action="append", default=[], metavar="STAGE=DIR")
    args = ap.parse_args()

    parsed = stages(args.dockerfile.read_text())
    all_stages = {name: (base, body) for name, base, body in parsed}
    prebuilt = dict(p.split("=", 1) for p in args.prebuilt)
    if args.target not in all_stages:
        sys.exit(f"{args.dockerfile}: no stage named {args.target}")
    order = needed(all_stages, args.target, set(prebuilt))
    stale = set(prebuilt) - set(order)
    if stale:
        sys.exit(f"{args.dockerfile} {args.target}: does not use stage(s) {sorted(stale)}")
    out = []
    for name in order:
        if name in prebuilt:
            out.append(f"FROM scratch AS {name}\nCOPY {prebuilt[name]}/ /\n")
        else:
            out.append(all_stages[name][1])
    sys.stdout.write("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
