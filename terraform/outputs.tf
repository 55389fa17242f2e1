output "region" {
  description = "AWS region."
  value       = var.region
}

output "cluster_name" {
  description = "EKS cluster; `aws eks update-kubeconfig --name <this> --region <region>`."
  value       = module.eks.cluster_name
}

output "ecr_registry" {
  description = "Registry host the images are pushed to."
  value       = "${local.account_id}.dkr.ecr.${var.region}.amazonaws.com"
}

output "ecr_repositories" {
  description = "Repository URL per service."
  value       = { for k, r in aws_ecr_repository.service : k => r.repository_url }
}

output "results_bucket" {
  description = "Bucket of annotated images (annotated/), per-batch JSON (results/) and sample media (media/)."
  value       = aws_s3_bucket.results.id
}

output "kafka_bootstrap_brokers_scram" {
  description = "MSK brokers for SASL/SCRAM over TLS (the services)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "kafka_bootstrap_brokers_iam" {
  description = "MSK brokers for IAM over TLS (KEDA)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "kafka_credentials_secret_arn" {
  description = "Secrets Manager secret holding the services' SCRAM username and password (JSON)."
  value       = aws_secretsmanager_secret.kafka.arn
}

output "consumer_role_arn" {
  description = "IRSA role of the consumer's service account (S3 writes)."
  value       = module.irsa["consumer"].iam_role_arn
}

output "keda_role_arn" {
  description = "IRSA role of KEDA's operator (MSK lag reads)."
  value       = module.irsa["keda-operator"].iam_role_arn
}

output "rtsp_url_base" {
  description = "RTSP base URL of the camera host inside the VPC; cameras are <this>/<name>."
  value       = "rtsp://${aws_route53_record.rtsp.fqdn}:8554"
}

output "rtsp_instance_id" {
  description = "RTSP host's instance; `aws ssm start-session --target <this>`."
  value       = aws_instance.rtsp.id
}

output "github_role_arns" {
  description = "Roles for the GitHub workflows (repository variables AWS_BUILD_ROLE_ARN and friends)."
  value = local.github == 0 ? {} : {
    build           = aws_iam_role.github_build[0].arn
    deploy          = aws_iam_role.github_deploy[0].arn
    terraform_plan  = aws_iam_role.github_terraform_plan[0].arn
    terraform_apply = aws_iam_role.github_terraform_apply[0].arn
  }
}

# k8s/overlays/eks/cluster-values.yaml for this cluster (scripts/deploy.sh takes it from the
# deploy parameter; this output is for looking at it).
output "k8s_cluster_values" {
  description = "The eks overlay's cluster-values ConfigMap, rendered for this cluster."
  value       = templatefile("${path.module}/templates/cluster-values.yaml.tftpl", local.cluster_values)
}

output "deploy_parameter" {
  description = "SSM parameter (SecureString, JSON) from which scripts/deploy.sh reads everything it needs."
  value       = aws_ssm_parameter.deploy.name
}
