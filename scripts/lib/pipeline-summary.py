"""Waits for the running pipeline's results in S3, then summarises what it did.

  pipeline-summary.py --since ISO8601 [--batches N] [--deadline SECONDS] [--dest DIR]

Counts only result documents processed after --since (the start of this demo), waits until
--batches of them exist (exit 1 when --deadline passes first), then prints: frames and batches
the producer published (its /metrics), batches the consumer stored (its /metrics), detections by
class, end-to-end frames per second, capture-to-S3 latency percentiles (each frame's capture
time to its batch's results document, exact, from S3), the keys written, and the path of a
downloaded annotated image. Runs with the moto venv's Python (boto3); S3_ENDPOINT, S3_BUCKET
and the services' metrics URLs come from the environment, as scripts/local-test.sh sets them.
"""
import argparse
import datetime as dt
import json
import os
import sys
import time
import urllib.request
from collections import Counter

sys.path.insert(0, os.path.dirname(__file__))
import s3_browse  # noqa: E402  (beside this file, found through the path set above)


def parse_time(value):
    """RFC 3339 with up to nanoseconds (the services write 9 digits; Python reads 6)."""
    value = value.replace("Z", "+00:00")
    if "." in value:
        head, rest = value.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    return dt.datetime.fromisoformat(value)


def metric_sum(url, name):
    """Sum of every sample of a counter, or None when the service does not answer."""
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def documents_since(s3, bucket, since, seen):
    """Result documents processed after `since`; `seen` caches documents by key."""
    for o in s3_browse.objects(s3, bucket, "results/"):
        if o["Key"] in seen or o["LastModified"] < since - dt.timedelta(seconds=1):
            continue
        doc = json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
        seen[o["Key"]] = doc
    return {k: d for k, d in seen.items() if parse_time(d["processed_at"]) >= since}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since", required=True)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=180)
    parser.add_argument("--dest", default="s3-download")
    args = parser.parse_args()
    since = parse_time(args.since)
    bucket = os.environ.get("S3_BUCKET", "video-pipeline-results")
    producer = os.environ.get("PRODUCER_METRICS", "http://127.0.0.1:9101/metrics")
    consumer = os.environ.get("CONSUMER_METRICS", "http://127.0.0.1:9102/metrics")
    s3 = s3_browse.client()

    started, seen, docs, shown = time.monotonic(), {}, {}, -1
    while True:
        docs = documents_since(s3, bucket, since, seen)
        if len(docs) >= args.batches:
            break
        if time.monotonic() - started > args.deadline:
            print(
                f"error: {len(docs)} of {args.batches} result documents in s3://{bucket} after "
                f"{args.deadline:.0f}s; see scripts/local-test.sh status and logs",
                file=sys.stderr,
            )
            return 1
        if len(docs) != shown:
            shown = len(docs)
            print(f"waiting for results: {len(docs)}/{args.batches} batches in s3://{bucket}", file=sys.stderr)
        time.sleep(1)

    frames = [f for d in docs.values() for f in d["frames"]]
    detections = Counter()
    for d in docs.values():
        detections.update(d.get("detection_counts", {}))
    latencies = sorted(
        (parse_time(d["processed_at"]) - parse_time(f["captured_at"])).total_seconds()
        for d in docs.values()
        for f in d["frames"]
    )
    ordered = sorted(docs.values(), key=lambda d: d["processed_at"])
    span = (parse_time(ordered[-1]["processed_at"]) - parse_time(ordered[0]["processed_at"])).total_seconds()
    later_frames = sum(len(d["frames"]) for d in ordered[1:])
    fps = later_frames / span if span > 0 else float("nan")
    seqs = sorted(f["seq"] for f in frames)
    images = [f["image_key"] for f in frames if f.get("image_key")]

    fmt = lambda v: "n/a" if v is None else f"{v:.0f}"  # noqa: E731
    print(f"\npipeline summary ({len(docs)} batches stored since {args.since})")
    print(f"  producer published     {fmt(metric_sum(producer, 'producer_frames_sent_total'))} frames in "
          f"{fmt(metric_sum(producer, 'producer_batches_sent_total'))} batches (since it started)")
    print(f"  consumer stored        {fmt(metric_sum(consumer, 'consumer_results_uploaded_total'))} batches, "
          f"{fmt(metric_sum(consumer, 'consumer_images_uploaded_total'))} images (since it started)")
    print(f"  in this window         {len(frames)} frames, seq {seqs[0]}..{seqs[-1]}, {len(images)} annotated images")
    print(f"  detections by class    {', '.join(f'{c} {n}' for c, n in detections.most_common()) or 'none'}")
    print(f"  end-to-end rate        {fps:.1f} frames/s into S3 (over {span:.1f}s)")
    print(f"  capture-to-S3 latency  p50 {percentile(latencies, 0.5):.2f}s  p99 {percentile(latencies, 0.99):.2f}s"
          f"  max {latencies[-1]:.2f}s")
    print("  keys written (newest)")
    for key in sorted(docs, reverse=True)[:3]:
        print(f"    s3://{bucket}/{key}")
    for key in sorted(images, reverse=True)[:3]:
        print(f"    s3://{bucket}/{key}")
    if images:
        os.makedirs(args.dest, exist_ok=True)
        newest = sorted(images)[-1]
        path = os.path.join(args.dest, newest.replace("/", "_"))
        s3.download_file(bucket, newest, path)
        print(f"  annotated image        {os.path.abspath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
