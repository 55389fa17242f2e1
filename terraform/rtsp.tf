# The RTSP host: MediaMTX plus one ffmpeg per camera looping a sample video into it, the same
# images as docker-compose.yaml. Private subnet, port 8554 open to the VPC only, no SSH: the
# SSM agent (Ubuntu ships it) is the way in (`aws ssm start-session --target <id>`).

data "aws_ssm_parameter" "ubuntu" {
  name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
}

resource "aws_security_group" "rtsp" {
  name        = "${var.name}-rtsp"
  description = "RTSP host: RTSP from the VPC; out: HTTPS (SSM, images, S3), HTTP (Ubuntu mirrors)"
  vpc_id      = module.vpc.vpc_id

  ingress {
    description = "RTSP (TCP interleaved) from the VPC"
    from_port   = 8554
    to_port     = 8554
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }

  egress {
    description = "HTTPS: SSM, the container registry, S3"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"] # through the NAT gateway; the endpoints have no fixed addresses
  }

  egress {
    description = "HTTP: Ubuntu's package mirrors (apt verifies signatures)"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rtsp" {
  name               = "${var.name}-rtsp-host"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "rtsp_ssm" {
  role       = aws_iam_role.rtsp.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

# Reads the sample videos that scripts/deploy.sh uploads to s3://<bucket>/media/.
data "aws_iam_policy_document" "rtsp_media" {
  statement {
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.results.arn}/media/*"]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "rtsp_media" {
  name   = "read-sample-media"
  role   = aws_iam_role.rtsp.id
  policy = data.aws_iam_policy_document.rtsp_media.json
}

resource "aws_iam_instance_profile" "rtsp" {
  name = "${var.name}-rtsp-host"
  role = aws_iam_role.rtsp.name
}

resource "aws_instance" "rtsp" {
  ami                    = data.aws_ssm_parameter.ubuntu.value
  instance_type          = var.rtsp_instance_type
  subnet_id              = module.vpc.private_subnets[0]
  vpc_security_group_ids = [aws_security_group.rtsp.id]
  iam_instance_profile   = aws_iam_instance_profile.rtsp.name
  monitoring             = true
  ebs_optimized          = true

  user_data = templatefile("${path.module}/templates/rtsp-host.sh.tftpl", {
    region  = var.region
    bucket  = aws_s3_bucket.results.id
    cameras = var.rtsp_cameras
  })
  user_data_replace_on_change = true

  # One hop: only processes on the host (and containers on its network: the user data runs the
  # aws-cli container with --network host) reach IMDSv2.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_size = 20
    volume_type = "gp3"
    encrypted   = true
    kms_key_id  = aws_kms_key.data.arn
  }

  tags = { Name = "${var.name}-rtsp" }
}

resource "aws_route53_record" "rtsp" {
  zone_id = aws_route53_zone.internal.zone_id
  name    = "rtsp.${aws_route53_zone.internal.name}"
  type    = "A"
  ttl     = 60
  records = [aws_instance.rtsp.private_ip]
}
