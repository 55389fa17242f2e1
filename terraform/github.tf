# Roles the GitHub workflows assume with OIDC (no long-lived keys in GitHub):
#   build             push images to the three ECR repositories      (.github/workflows/build.yml)
#   deploy            read the SCRAM secret, apply the manifests     (.github/workflows/deploy.yml)
#   terraform-plan    read everything, plan                          (.github/workflows/terraform.yml, PRs)
#   terraform-apply   change everything, only from the protected environment
# Created only when var.github_repository is set.

locals {
  github = var.github_repository != "" ? 1 : 0
  # Subjects: any ref for build/plan (PR plans included), the protected environment for apply/deploy.
  github_any_ref     = "repo:${var.github_repository}:*"
  github_environment = "repo:${var.github_repository}:environment:${var.github_production_environment}"
}

resource "aws_iam_openid_connect_provider" "github" {
  count           = local.github
  url             = "https://token.actions.githubusercontent.com"
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = ["6938fd4d98bab03faadb97b34396831e3780aea1"] # not checked by AWS for this issuer, but required
}

data "aws_iam_policy_document" "github_assume" {
  for_each = local.github == 1 ? {
    "build"           = [local.github_any_ref]
    "deploy"          = [local.github_environment]
    "terraform-plan"  = [local.github_any_ref]
    "terraform-apply" = [local.github_environment]
  } : {}

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github[0].arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringLike"
      variable = "token.actions.githubusercontent.com:sub"
      values   = each.value
    }
  }
}

resource "aws_iam_role" "github_build" {
  count              = local.github
  name               = "${var.name}-github-build"
  assume_role_policy = data.aws_iam_policy_document.github_assume["build"].json
}

data "aws_iam_policy_document" "github_build" {
  statement {
    sid       = "Login"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action has no resource-level permissions
  }
  statement {
    sid = "PushImages"
    actions = [
      "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
      "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload",
      "ecr:PutImage", "ecr:UploadLayerPart",
    ]
    resources = [for r in aws_ecr_repository.service : r.arn]
  }
  statement {
    sid       = "EncryptLayers"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "github_build" {
  count  = local.github
  name   = "push-images"
  role   = aws_iam_role.github_build[0].id
  policy = data.aws_iam_policy_document.github_build.json
}

resource "aws_iam_role" "github_deploy" {
  count              = local.github
  name               = "${var.name}-github-deploy"
  assume_role_policy = data.aws_iam_policy_document.github_assume["deploy"].json
}

data "aws_iam_policy_document" "github_deploy" {
  statement {
    sid       = "FindCluster"
    actions   = ["eks:DescribeCluster"]
    resources = [module.eks.cluster_arn]
  }
  statement {
    sid       = "CheckImagesExist" # scripts/deploy.sh: the commit's images are in ECR before it applies
    actions   = ["ecr:DescribeImages"]
    resources = [for r in aws_ecr_repository.service : r.arn]
  }
  statement {
    sid       = "ReadDeployParameter"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.deploy.arn]
  }
  statement {
    sid       = "ReadKafkaCredentials"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.kafka.arn]
  }
  statement {
    sid       = "DecryptParameterAndSecretEncryptMedia"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
  }
  statement {
    sid       = "UploadSampleMedia"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.results.arn}/media/*"]
  }
}

resource "aws_iam_role_policy" "github_deploy" {
  count  = local.github
  name   = "deploy"
  role   = aws_iam_role.github_deploy[0].id
  policy = data.aws_iam_policy_document.github_deploy.json
}

resource "aws_iam_role" "github_terraform_plan" {
  count              = local.github
  name               = "${var.name}-github-terraform-plan"
  assume_role_policy = data.aws_iam_policy_document.github_assume["terraform-plan"].json
}

resource "aws_iam_role_policy_attachment" "github_terraform_plan" {
  count      = local.github
  role       = aws_iam_role.github_terraform_plan[0].name
  policy_arn = "arn:aws:iam::aws:policy/ReadOnlyAccess"
}

# ReadOnlyAccess reads no secret values and decrypts nothing, but refreshing the state reads the
# MSK SCRAM secret's value and the SecureString deploy parameter.
data "aws_iam_policy_document" "github_terraform_plan_secrets" {
  statement {
    sid       = "RefreshKafkaSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.kafka.arn]
  }
  statement {
    sid       = "DecryptSecretAndParameter"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "github_terraform_plan_secrets" {
  count  = local.github
  name   = "refresh-secrets"
  role   = aws_iam_role.github_terraform_plan[0].id
  policy = data.aws_iam_policy_document.github_terraform_plan_secrets.json
}

resource "aws_iam_role" "github_terraform_apply" {
  count              = local.github
  name               = "${var.name}-github-terraform-apply"
  assume_role_policy = data.aws_iam_policy_document.github_assume["terraform-apply"].json
}

resource "aws_iam_role_policy_attachment" "github_terraform_apply" {
  # checkov:skip=CKV_AWS_274: applying this configuration creates IAM roles, VPCs and clusters; the role is reachable only from the protected GitHub environment, whose reviewers approve each apply
  count      = local.github
  role       = aws_iam_role.github_terraform_apply[0].name
  policy_arn = "arn:aws:iam::aws:policy/AdministratorAccess"
}
