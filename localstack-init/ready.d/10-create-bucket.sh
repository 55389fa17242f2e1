#!/bin/bash
# LocalStack "ready" hook: creates the results bucket the consumer writes to, with the same
# name as the consumer's default (S3_BUCKET) and the native stack's VP_S3_BUCKET. The compose
# health check waits for this hook to finish before the consumer starts.
set -euo pipefail
bucket="${S3_BUCKET:-video-pipeline-results}"
if awslocal s3api head-bucket --bucket "$bucket" 2>/dev/null; then
  echo "bucket $bucket already exists"
else
  awslocal s3api create-bucket --bucket "$bucket"
  echo "bucket $bucket created"
fi
