# MSK: TLS everywhere, two ways in. The services authenticate with SASL/SCRAM (librdkafka has
# no AWS_MSK_IAM mechanism) with a password kept in Secrets Manager; KEDA reads consumer lag
# with IAM (its operator's IRSA role), so no password is shared with it.

resource "aws_msk_configuration" "this" {
  name           = var.name
  kafka_versions = [var.kafka_version]

  # message.max.bytes / replica.fetch.max.bytes: a 25-frame batch up to MAX_MESSAGE_BYTES plus
  # record overhead, as the services create their topics with. Topics are created by the
  # producer (frames) and consumer (dead letters) with TOPIC_REPLICATION=3 from cluster-values.
  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    num.partitions=6
    message.max.bytes=${var.max_message_bytes + 1048576}
    replica.fetch.max.bytes=${var.max_message_bytes + 1048576}
    log.retention.hours=${var.kafka_retention_hours}
    unclean.leader.election.enable=false
  PROPERTIES
}

resource "aws_security_group" "msk" {
  name        = "${var.name}-msk"
  description = "MSK brokers: TLS client ports from the EKS nodes only"
  vpc_id      = module.vpc.vpc_id

  ingress {
    description     = "SASL/SCRAM over TLS (services) and IAM over TLS (KEDA)"
    from_port       = 9096
    to_port         = 9098
    protocol        = "tcp"
    security_groups = [module.eks.node_security_group_id]
  }

  egress {
    description = "Replies within the VPC"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = [var.vpc_cidr]
  }
}

resource "aws_cloudwatch_log_group" "msk" {
  name              = "/aws/msk/${var.name}"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = length(local.azs)
  enhanced_monitoring    = "PER_TOPIC_PER_BROKER"

  broker_node_group_info {
    instance_type   = var.msk_instance_type
    client_subnets  = module.vpc.private_subnets
    security_groups = [aws_security_group.msk.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.msk_volume_size_gb
      }
    }
  }

  client_authentication {
    unauthenticated = false
    sasl {
      iam   = true
      scram = true
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.data.arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.msk.name
      }
    }
  }
}

# The services' SCRAM user. Alphanumeric on purpose: the services take Kafka settings as one
# comma-separated KAFKA_PROPERTIES value.
resource "random_password" "kafka" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "kafka" {
  # checkov:skip=CKV2_AWS_57: MSK SCRAM secrets cannot be rotated by a Lambda without re-associating; rotate by replacing random_password
  # MSK requires the AmazonMSK_ prefix and a customer-managed key.
  name       = "AmazonMSK_${var.name}-services"
  kms_key_id = aws_kms_key.data.key_id
}

resource "aws_secretsmanager_secret_version" "kafka" {
  secret_id = aws_secretsmanager_secret.kafka.id
  secret_string = jsonencode({
    username = "video-pipeline"
    password = random_password.kafka.result
  })
}

resource "aws_secretsmanager_secret_policy" "kafka" {
  secret_arn = aws_secretsmanager_secret.kafka.arn
  policy     = data.aws_iam_policy_document.kafka_secret.json
}

data "aws_iam_policy_document" "kafka_secret" {
  statement {
    sid       = "AWSKafkaResourcePolicy"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.kafka.arn]
    principals {
      type        = "Service"
      identifiers = ["kafka.amazonaws.com"]
    }
  }
}

resource "aws_msk_scram_secret_association" "this" {
  cluster_arn     = aws_msk_cluster.this.arn
  secret_arn_list = [aws_secretsmanager_secret.kafka.arn]

  depends_on = [aws_secretsmanager_secret_version.kafka]
}
