# Everything scripts/deploy.sh needs, in one SSM parameter, so that deploying needs neither the
# terraform state nor terraform itself (the GitHub deploy role may read this and nothing else
# of the infrastructure).
resource "aws_ssm_parameter" "deploy" {
  name   = "/${var.name}/deploy"
  type   = "SecureString"
  key_id = aws_kms_key.data.arn
  value = jsonencode({
    region              = var.region
    cluster_name        = module.eks.cluster_name
    ecr_registry        = "${local.account_id}.dkr.ecr.${var.region}.amazonaws.com"
    results_bucket      = aws_s3_bucket.results.id
    kafka_secret_arn    = aws_secretsmanager_secret.kafka.arn
    cluster_values_yaml = templatefile("${path.module}/templates/cluster-values.yaml.tftpl", local.cluster_values)
  })
}

locals {
  cluster_values = {
    kafka_brokers     = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
    kafka_brokers_iam = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
    bucket            = aws_s3_bucket.results.id
    region            = var.region
    consumer_role_arn = module.irsa["consumer"].iam_role_arn
  }
}
