data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394: only the first three names (sorted) are used, and AWS adds zones after the existing letters, so the set does not move
  state = "available"
}

data "aws_caller_identity" "current" {}

locals {
  azs        = slice(data.aws_availability_zones.available.names, 0, 3)
  account_id = data.aws_caller_identity.current.account_id
  bucket     = var.results_bucket_name != "" ? var.results_bucket_name : "${var.name}-results-${local.account_id}"
}

# Three AZs: MSK puts one broker in each, EKS nodes spread over them. Everything runs in the
# private subnets; the public ones hold only the NAT gateway and any load balancer.
module "vpc" {
  # checkov:skip=CKV_TF_1: a registry module pinned to an exact version is immutable; commit hashes apply to git sources
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.21.0"

  name            = var.name
  cidr            = var.vpc_cidr
  azs             = local.azs
  private_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, 48 + i)]

  enable_nat_gateway   = true
  single_nat_gateway   = true
  enable_dns_hostnames = true
  enable_dns_support   = true

  enable_flow_log                                 = true
  create_flow_log_cloudwatch_log_group            = true
  create_flow_log_cloudwatch_iam_role             = true
  flow_log_cloudwatch_log_group_retention_in_days = 365

  public_subnet_tags  = { "kubernetes.io/role/elb" = 1 }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = 1 }
}

# Private DNS for names the manifests use (rtsp.video-pipeline.internal).
resource "aws_route53_zone" "internal" {
  # checkov:skip=CKV2_AWS_38: DNSSEC signing does not apply to private hosted zones
  # checkov:skip=CKV2_AWS_39: query logging of a private zone with one record adds cost, not insight
  name = "${var.name}.internal"

  vpc {
    vpc_id = module.vpc.vpc_id
  }
}

# One customer-managed key for the project's data at rest: MSK, the SCRAM secret, S3, ECR,
# logs. Secrets Manager secrets for MSK must use a customer-managed key.
resource "aws_kms_key" "data" {
  description             = "${var.name}: data at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.data.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_111: in a key policy, resource "*" means this key and nothing else
  # checkov:skip=CKV_AWS_356: in a key policy, resource "*" means this key and nothing else
  # checkov:skip=CKV_AWS_109: the account root administers its own key, as AWS's default key policy does
  # The account administers the key (IAM policies grant use); CloudWatch Logs encrypts the
  # MSK broker log group with it.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${local.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
  }
}
