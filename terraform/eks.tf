module "eks" {
  # checkov:skip=CKV_TF_1: a registry module pinned to an exact version is immutable; commit hashes apply to git sources
  source  = "terraform-aws-modules/eks/aws"
  version = "20.37.0"

  cluster_name    = var.name
  cluster_version = var.kubernetes_version

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # Terraform itself installs charts through the API (helm_release below) and the deploy job
  # applies manifests: whoever runs them must reach it. Either the public endpoint, limited to
  # the given CIDRs (required unless cluster_api_private_only), or the private endpoint only, with
  # terraform and the workflows running inside the VPC (vars.AWS_RUNNER; terraform/README.md).
  cluster_endpoint_private_access      = true
  cluster_endpoint_public_access       = !var.cluster_api_private_only
  cluster_endpoint_public_access_cidrs = var.cluster_api_private_only ? null : var.cluster_endpoint_public_access_cidrs

  # IRSA: the consumer's S3 role and KEDA's MSK role trust the cluster's OIDC provider.
  enable_irsa                              = true
  enable_cluster_creator_admin_permissions = true
  cluster_enabled_log_types                = ["api", "audit", "authenticator"]
  create_kms_key                           = false
  cluster_encryption_config = {
    provider_key_arn = aws_kms_key.data.arn
    resources        = ["secrets"]
  }

  cluster_addons = {
    coredns    = {}
    kube-proxy = {}
    # Without enableNetworkPolicy the VPC CNI accepts NetworkPolicy objects and enforces none.
    vpc-cni = {
      before_compute       = true
      configuration_values = jsonencode({ enableNetworkPolicy = "true" })
    }
    # The inference HPA scales on CPU, which only metrics-server reports.
    metrics-server = {}
  }

  eks_managed_node_groups = {
    pipeline = {
      ami_type       = "AL2023_x86_64_STANDARD"
      instance_types = var.node_instance_types
      min_size       = var.node_min_size
      max_size       = var.node_max_size
      desired_size   = var.node_desired_size
      metadata_options = {
        http_endpoint               = "enabled"
        http_tokens                 = "required"
        http_put_response_hop_limit = 1
      }
    }
  }

  # The GitHub roles that talk to the Kubernetes API (see github.tf): deploy applies the
  # manifests; terraform-apply installs and upgrades the KEDA release; terraform-plan refreshes
  # it (helm keeps its release state in Secrets, which the admin-view policy may read). The
  # person who runs the first apply (it creates these roles) is the cluster's creator admin.
  access_entries = var.github_repository == "" ? {} : {
    for name, access in {
      github_deploy          = { role = aws_iam_role.github_deploy[0].arn, as = "admin", policy = "AmazonEKSClusterAdminPolicy" }
      github_terraform_apply = { role = aws_iam_role.github_terraform_apply[0].arn, as = "admin", policy = "AmazonEKSClusterAdminPolicy" }
      github_terraform_plan  = { role = aws_iam_role.github_terraform_plan[0].arn, as = "view", policy = "AmazonEKSAdminViewPolicy" }
      } : name => {
      principal_arn = access.role
      policy_associations = {
        (access.as) = {
          policy_arn   = "arn:aws:eks::aws:cluster-access-policy/${access.policy}"
          access_scope = { type = "cluster" }
        }
      }
    }
  }
}

# The consumer writes annotated images and results, and nothing else.
data "aws_iam_policy_document" "consumer_s3" {
  statement {
    sid       = "WriteResults"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.results.arn}/annotated/*", "${aws_s3_bucket.results.arn}/results/*"]
  }
  statement {
    sid       = "FindBucket"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.results.arn]
  }
  statement {
    sid       = "EncryptWithProjectKey"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_policy" "consumer_s3" {
  name   = "${var.name}-consumer-s3"
  policy = data.aws_iam_policy_document.consumer_s3.json
}

# KEDA's Kafka scaler reads the consumer group's committed offsets and the topic's end offsets.
locals {
  msk_topic_arn_prefix = replace(aws_msk_cluster.this.arn, ":cluster/", ":topic/")
  msk_group_arn_prefix = replace(aws_msk_cluster.this.arn, ":cluster/", ":group/")
}

data "aws_iam_policy_document" "keda_msk" {
  statement {
    sid       = "Connect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [aws_msk_cluster.this.arn]
  }
  statement {
    sid       = "DescribeTopics"
    actions   = ["kafka-cluster:DescribeTopic"]
    resources = ["${local.msk_topic_arn_prefix}/*"]
  }
  statement {
    sid       = "DescribeConsumerGroup"
    actions   = ["kafka-cluster:DescribeGroup"]
    resources = ["${local.msk_group_arn_prefix}/*"]
  }
}

resource "aws_iam_policy" "keda_msk" {
  name   = "${var.name}-keda-msk"
  policy = data.aws_iam_policy_document.keda_msk.json
}

# IRSA roles: each trusts one service account of the cluster and carries one policy. The
# pipeline's namespace is the one k8s/ deploys into (fixed there, not derived from var.name);
# check-deploy-rules.py compares the two.
locals {
  k8s_namespace = "video-pipeline"
  irsa = {
    "consumer"      = { service_account = "${local.k8s_namespace}:consumer", policy_arn = aws_iam_policy.consumer_s3.arn }
    "keda-operator" = { service_account = "keda:keda-operator", policy_arn = aws_iam_policy.keda_msk.arn }
  }
}

module "irsa" {
  # checkov:skip=CKV_TF_1: a registry module pinned to an exact version is immutable; commit hashes apply to git sources
  source   = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts-eks"
  version  = "5.55.0"
  for_each = local.irsa

  role_name        = "${var.name}-${each.key}"
  role_policy_arns = { main = each.value.policy_arn }
  oidc_providers = {
    main = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = [each.value.service_account]
    }
  }
}

resource "helm_release" "keda" {
  name             = "keda"
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = var.keda_chart_version
  namespace        = "keda"
  create_namespace = true

  # The operator's service account carries the IRSA role that the TriggerAuthentication's
  # `podIdentity: {provider: aws, identityOwner: keda}` uses.
  set {
    name  = "podIdentity.aws.irsa.enabled"
    value = "true"
  }
  set {
    name  = "podIdentity.aws.irsa.roleArn"
    value = module.irsa["keda-operator"].iam_role_arn
  }

  depends_on = [module.eks]
}
