#!/usr/bin/env python3
"""One table and one JSON file from the benchmarks of `scripts/bench.sh all`.

Usage: bench-report.py DIR VIDEO... (the videos of the inference benchmark, in table order).
Reads DIR/inference-<video stem>.json, DIR/producer.json and DIR/pipeline.json (written by the
`bench` binary in the same run), prints the table the README's performance section shows, and
writes DIR/report.json.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: bench-report.py DIR VIDEO...")
    out_dir = Path(sys.argv[1])
    inference = [json.loads((out_dir / f"inference-{Path(video).stem}.json").read_text()) for video in sys.argv[2:]]
    prod = json.loads((out_dir / "producer.json").read_text())
    pipe = json.loads((out_dir / "pipeline.json").read_text())
    machine = {
        "cpu": cpu_model(),
        "cores": inference[0]["machine"]["cores"],
        "memory_gib": round(
            int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1]) / 2**20
        ),
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
    }
    rows = []
    for run in inference:
        frames = f"{run['video']} frames ({run['width']}x{run['height']})"
        rows += [
            (f"the limit: raw ort session.run, yolov8n, batch {run['batch_size']}, {frames}", f"{run['raw_session_run_fps']:.2f} fps", "1.00", ""),
            (
                f"inference service over HTTP, 25-frame binary batches, {frames}",
                f"{run['service_fps']:.2f} fps",
                f"{run['ratio']:.3f}",
                f"target >= 0.95; median of {run['rounds']} alternating rounds, middle half "
                f"{run['ratio_q1']:.3f}-{run['ratio_q3']:.3f}; pre-processing {run['preprocess_ms_per_frame']:.1f} ms/frame caps it at {run['ratio_ceiling_from_preprocessing']:.3f}; "
                f"request p50 {run['latency_ms']['p50']:.0f} ms, p99 {run['latency_ms']['p99']:.0f} ms; peak RSS {run['service_peak_rss_mib']:.0f} MiB",
            ),
        ]
    rows += [
        (
            f"producer, {prod['video']} (720p) as fast as possible",
            f"{prod['producer_file_fast']['decoded_pictures_per_s']:.0f} pictures/s decoded",
            f"{prod['producer_file_fast']['ratio_to_ffmpeg_decode']:.2f} x ffmpeg",
            f"ffmpeg -threads 1 decode {prod['ffmpeg_threads1_decode_fps']:.0f} fps; published {prod['producer_file_fast']['published_frames_per_s']:.0f} frames/s",
        ),
        (
            "producer, one live 720p camera at 10 fps",
            f"{prod['producer_live_720p_10fps']['core_percent']:.1f}% of a core",
            "",
            f"peak RSS {prod['producer_live_720p_10fps']['peak_rss_mib']:.0f} MiB",
        ),
        (
            f"end to end: RTSP {pipe['video']} -> producer -> Kafka -> consumer -> inference -> S3",
            f"{pipe['end_to_end_fps']:.2f} fps",
            f"{pipe['ratio']:.3f}",
            f"target >= 0.85; limit in that run {pipe['limit_fps']:.2f} fps",
        ),
        (
            f"capture-to-S3 latency at {pipe['latency']['fps']:g} fps",
            f"p50 {pipe['latency']['p50_s']:.2f} s",
            "",
            f"p99 {pipe['latency']['p99_s']:.2f} s",
        ),
    ]
    for service in ("inference", "consumer", "producer"):
        rows.append(
            (
                f"end to end: {service}",
                f"{pipe['cpu_percent'][service]:.0f}% of a core",
                "",
                f"peak RSS {pipe['peak_rss_mib'][service]:.0f} MiB",
            )
        )
    print()
    print(f"benchmark report: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['measured_at']}")
    print("| measurement | figure | ratio | notes |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    report = {"machine": machine, "inference": inference, "producer": prod, "pipeline": pipe}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {out_dir / 'report.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
