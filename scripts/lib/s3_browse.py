"""The pipeline's results in S3: list the newest, download the newest annotated image.

  s3_browse.py list [--limit N] [--stream ID]
      newest per-batch JSON documents first, with each one's frames, detections and images
  s3_browse.py download [--dest DIR] [--stream ID]
      the newest annotated JPEG and the newest results JSON into DIR; prints their paths

The endpoint and bucket come from S3_ENDPOINT (empty: AWS) and S3_BUCKET, the same settings
the consumer reads. Runs with the moto venv's Python, which has boto3.
"""
import argparse
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


def client():
    endpoint = os.environ.get("S3_ENDPOINT") or None
    kwargs = {"region_name": os.environ.get("AWS_REGION", "us-east-1")}
    if endpoint:
        kwargs.update(
            endpoint_url=endpoint,
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )
    return boto3.client("s3", **kwargs)


def objects(s3, bucket, prefix):
    """Every object under prefix, newest first (by upload time, then key)."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.extend(page.get("Contents", []))
    found.sort(key=lambda o: (o["LastModified"], o["Key"]), reverse=True)
    return found


def prefix(kind, stream):
    return f"{kind}/{stream}/" if stream else f"{kind}/"


def list_results(s3, bucket, args):
    results = objects(s3, bucket, prefix("results", args.stream))
    images = objects(s3, bucket, prefix("annotated", args.stream))
    print(f"s3://{bucket}: {len(results)} result documents, {len(images)} annotated images")
    for o in results[: args.limit]:
        doc = json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
        frames = doc.get("frames", [])
        counts = ", ".join(f"{k} {v}" for k, v in sorted(doc.get("detection_counts", {}).items()))
        drawn = sum(1 for f in frames if f.get("image_key"))
        print(
            f"{o['LastModified']:%Y-%m-%d %H:%M:%S}  {o['Key']}\n"
            f"    {len(frames)} frames, {drawn} images, detections: {counts or 'none'}"
        )
    if not results:
        print("no results yet (is the consumer running, and the producer publishing?)")


def download(s3, bucket, args):
    os.makedirs(args.dest, exist_ok=True)
    wrote = 0
    for kind in ("annotated", "results"):
        newest = objects(s3, bucket, prefix(kind, args.stream))
        if not newest:
            print(f"no {kind} objects in s3://{bucket}", file=sys.stderr)
            continue
        key = newest[0]["Key"]
        path = os.path.join(args.dest, key.replace("/", "_"))
        s3.download_file(bucket, key, path)
        print(f"s3://{bucket}/{key} -> {path}")
        wrote += 1
    return 0 if wrote else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list")
    listing.add_argument("--limit", type=int, default=10)
    listing.add_argument("--stream")
    fetch = sub.add_parser("download")
    fetch.add_argument("--dest", default="s3-download")
    fetch.add_argument("--stream")
    args = parser.parse_args()
    bucket = os.environ.get("S3_BUCKET", "video-pipeline-results")
    s3 = client()
    try:
        if args.command == "list":
            list_results(s3, bucket, args)
            return 0
        return download(s3, bucket, args)
    except (BotoCoreError, ClientError) as e:
        print(f"error: s3://{bucket} at {os.environ.get('S3_ENDPOINT') or 'AWS'}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
