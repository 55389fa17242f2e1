# Results: annotated/ (JPEGs, deleted after annotated_image_retention_days), results/ (per-batch
# JSON, moved to Standard-IA and kept), media/ (sample videos for the RTSP host).
resource "aws_s3_bucket" "results" {
  # checkov:skip=CKV_AWS_144: results are reproducible from the cameras' history only within Kafka's retention; a second region is a cost decision left to the operator
  # checkov:skip=CKV2_AWS_62: nothing consumes bucket events yet
  # checkov:skip=CKV_AWS_18: CloudTrail data events, not server access logs, are the audit trail of choice; enable per account
  bucket = local.bucket
}

resource "aws_s3_bucket_public_access_block" "results" {
  bucket                  = aws_s3_bucket.results.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "results" {
  bucket = aws_s3_bucket.results.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "results" {
  bucket = aws_s3_bucket.results.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "results" {
  bucket = aws_s3_bucket.results.id

  rule {
    id     = "annotated-images-expire"
    status = "Enabled"
    filter {
      prefix = "annotated/"
    }
    expiration {
      days = var.annotated_image_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }

  rule {
    id     = "results-to-infrequent-access"
    status = "Enabled"
    filter {
      prefix = "results/"
    }
    transition {
      days          = var.results_ia_transition_days
      storage_class = "STANDARD_IA"
    }
    # A redelivered batch overwrites its keys; the older copy is noise after a week.
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# HTTPS only.
data "aws_iam_policy_document" "results_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.results.arn, "${aws_s3_bucket.results.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "results" {
  bucket = aws_s3_bucket.results.id
  policy = data.aws_iam_policy_document.results_bucket.json
}
