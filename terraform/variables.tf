variable "name" {
  description = "Prefix of every resource name; also the Kubernetes namespace's part-of label."
  type        = string
  default     = "video-pipeline"
}

variable "region" {
  description = "AWS region of everything."
  type        = string
  default     = "us-east-1"
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; the RTSP host accepts connections from this range only."
  type        = string
  default     = "10.40.0.0/16"
}

variable "kubernetes_version" {
  description = "EKS control plane version."
  type        = string
  default     = "1.33"
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "Who may reach the EKS API's public endpoint: where terraform runs (it installs KEDA through the API), the deploy job's runners, operators. Required unless cluster_api_private_only."
  type        = list(string)
  default     = []
  validation {
    condition     = var.cluster_api_private_only || length(var.cluster_endpoint_public_access_cidrs) > 0
    error_message = "terraform installs KEDA through the EKS API in this same apply: give the CIDRs that may reach its public endpoint (TF_VAR_cluster_endpoint_public_access_cidrs), or set cluster_api_private_only = true and run terraform and the workflows inside the VPC."
  }
}

variable "cluster_api_private_only" {
  description = "true: the EKS API has no public endpoint; terraform, the deploy workflow and kubectl must run inside the VPC (self-hosted runners in its private subnets, GitHub variable AWS_RUNNER)."
  type        = bool
  default     = false
}

variable "node_instance_types" {
  description = "Instance types of the worker nodes. Inference is CPU-bound: compute-optimized."
  type        = list(string)
  default     = ["c6i.xlarge"]
}

variable "node_min_size" {
  description = "Fewest worker nodes."
  type        = number
  default     = 2
}

variable "node_max_size" {
  description = "Most worker nodes (the cluster autoscaler or Karpenter, not included, moves between the two)."
  type        = number
  default     = 6
}

variable "node_desired_size" {
  description = "Worker nodes at creation."
  type        = number
  default     = 3
}

variable "kafka_version" {
  description = "Apache Kafka version of the MSK cluster."
  type        = string
  default     = "3.8.x"
}

variable "msk_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "msk_volume_size_gb" {
  description = "EBS storage per broker, GiB. A 720p camera at 5 fps writes ~0.5 GB an hour of 25-frame JPEG batches."
  type        = number
  default     = 200
}

variable "max_message_bytes" {
  description = "Largest Kafka message (a 25-frame batch): the services' MAX_MESSAGE_BYTES default, and the broker's message.max.bytes."
  type        = number
  default     = 10485760
}

variable "kafka_retention_hours" {
  description = "How long frame batches stay in Kafka (the consumer's window to catch up after an outage)."
  type        = number
  default     = 24
}

variable "results_bucket_name" {
  description = "Results bucket name; empty means <name>-results-<account id>."
  type        = string
  default     = ""
}

variable "annotated_image_retention_days" {
  description = "Days before annotated JPEGs (annotated/ prefix) are deleted."
  type        = number
  default     = 30
}

variable "results_ia_transition_days" {
  description = "Days before per-batch JSON results (results/ prefix) move to Standard-IA; they are kept."
  type        = number
  default     = 30
}

variable "keda_chart_version" {
  description = "Version of the kedacore/keda Helm chart (KEDA 2.17's Kafka scaler takes MSK IAM as sasl: oauthbearer with saslTokenProvider: aws_msk_iam; scripts/lib/check-deploy-rules.py holds the accepted trigger values of this version)."
  type        = string
  default     = "2.17.2"
}

variable "rtsp_instance_type" {
  description = "Instance type of the RTSP host (MediaMTX and one ffmpeg per camera, no re-encoding)."
  type        = string
  default     = "t3.small"
}

variable "rtsp_cameras" {
  description = "Cameras the RTSP host serves: path name => sample video under s3://<bucket>/media/."
  type        = map(string)
  default = {
    bikes        = "bikes.mp4"
    bigbuckbunny = "bigbuckbunny.mp4"
  }
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflows may assume the CI roles; empty: no GitHub roles."
  type        = string
  default     = ""
}

variable "github_production_environment" {
  description = "GitHub environment (with required reviewers) whose jobs may apply terraform and deploy."
  type        = string
  default     = "production"
}
