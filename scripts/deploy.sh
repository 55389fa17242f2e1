#!/usr/bin/env bash
# Deploys the pipeline to the EKS cluster that terraform/ built: what .github/workflows/deploy.yml
# does, for a person with AWS credentials.
#
#   scripts/deploy.sh apply --tag SHA     # render the eks overlay for images SHA, apply, wait
#   scripts/deploy.sh media               # upload the sample videos for the RTSP host
#   scripts/deploy.sh render --values FILE --registry HOST --tag SHA
#                                         # print the manifests only (no AWS; CI checks this)
#
# Everything about the cluster comes from the SSM parameter terraform writes
# (/<name>/deploy, VP_DEPLOY_PARAMETER): region, cluster, registry, bucket, the Kafka secret's ARN
# and the overlay's cluster-values. `apply` fails, printing the pods' state and recent logs, if a
# rollout does not complete within VP_ROLLOUT_TIMEOUT (default 10m).
# Needs: aws (v2), kubectl (its built-in kustomize renders the overlay), python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
PARAMETER="${VP_DEPLOY_PARAMETER:-/video-pipeline/deploy}"
NAMESPACE="video-pipeline"
ROLLOUT_TIMEOUT="${VP_ROLLOUT_TIMEOUT:-10m}"
PLACEHOLDER_REGISTRY="123456789012.dkr.ecr.us-east-1.amazonaws.com"
PLACEHOLDER_TAG="replace-with-commit-sha"
KUBECTL="${KUBECTL:-kubectl}"

log() { printf '%s [deploy] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A copy of k8s/ whose eks overlay has this cluster's values and images (the clone stays clean).
render() {
  local values="$1" registry="$2" tag="$3" work
  [[ "$tag" =~ ^[0-9a-f]{7,40}$ ]] || die "--tag must be a commit SHA (images are tagged with it), got '$tag'"
  work="$(mktemp -d)"
  cp -R "$root/k8s" "$work/k8s"
  cp "$values" "$work/k8s/overlays/eks/cluster-values.yaml"
  sed -i -e "s|$PLACEHOLDER_REGISTRY|$registry|" -e "s|newTag: $PLACEHOLDER_TAG|newTag: \"$tag\"|" \
    "$work/k8s/overlays/eks/kustomization.yaml"
  "$KUBECTL" kustomize "$work/k8s/overlays/eks"
  rm -rf "$work"
}

parameter() {
  aws ssm get-parameter --name "$PARAMETER" --with-decryption --query Parameter.Value --output text
}

field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# Fails unless the image is in ECR. Only ECR's "no such image" means the build has not run; any
# other error (access denied, wrong region, no network) is shown as AWS said it.
require_image() {
  local region="$1" repository="$2" tag="$3" error
  if error="$(aws ecr describe-images --region "$region" --repository-name "$repository" \
    --image-ids "imageTag=$tag" --query 'imageDetails[0].imageTags' --output text 2>&1 >/dev/null)"; then
    return
  fi
  case "$error" in
    *ImageNotFoundException*) die "image $repository:$tag is not in ECR (has the build workflow run for this commit?)" ;;
    *) die "cannot look up image $repository:$tag in ECR: $error" ;;
  esac
}

apply() {
  local tag="$1" config region cluster registry secret values manifests
  config="$(parameter)" || die "cannot read SSM parameter $PARAMETER (terraform applied? right account and region?)"
  region="$(field "$config" region)"
  cluster="$(field "$config" cluster_name)"
  registry="$(field "$config" ecr_registry)"
  secret="$(field "$config" kafka_secret_arn)"
  for service in inference consumer producer; do
    require_image "$region" "video-pipeline/$service" "$tag"
  done
  values="$(mktemp)"
  manifests="$(mktemp)"
  trap 'rm -f "$values" "$manifests"' RETURN
  field "$config" cluster_values_yaml >"$values"
  render "$values" "$registry" "$tag" >"$manifests"

  log "cluster $cluster ($region), images $registry/video-pipeline/*:$tag"
  aws eks update-kubeconfig --region "$region" --name "$cluster" >/dev/null
  # The namespace first (its labels come with the full apply), for the Secret below.
  "$KUBECTL" create namespace "$NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f -
  # The services' SCRAM credentials: Secrets Manager -> Kubernetes Secret (never in a file).
  local credentials
  credentials="$(aws secretsmanager get-secret-value --region "$region" --secret-id "$secret" --query SecretString --output text)"
  "$KUBECTL" -n "$NAMESPACE" create secret generic kafka-credentials \
    --from-literal=username="$(field "$credentials" username)" \
    --from-literal=password="$(field "$credentials" password)" \
    --dry-run=client -o yaml | "$KUBECTL" apply -f -
  "$KUBECTL" apply -f "$manifests"

  local failed=0
  for deployment in inference consumer producer; do
    if ! "$KUBECTL" -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout "$ROLLOUT_TIMEOUT"; then
      failed=1
      log "rollout of $deployment did not complete; its pods:"
      "$KUBECTL" -n "$NAMESPACE" get pods -l "app.kubernetes.io/name=$deployment" -o wide || true
      "$KUBECTL" -n "$NAMESPACE" describe pods -l "app.kubernetes.io/name=$deployment" | tail -40 || true
      "$KUBECTL" -n "$NAMESPACE" logs -l "app.kubernetes.io/name=$deployment" --tail 50 --all-containers || true
    fi
  done
  [ "$failed" = 0 ] || die "deployment of $tag failed"
  log "deployed $tag"
}

media() {
  local config region bucket shared
  config="$(parameter)" || die "cannot read SSM parameter $PARAMETER"
  region="$(field "$config" region)"
  bucket="$(field "$config" results_bucket)"
  shared="${VP_SHARED_DIR:-$root/../shared}"
  for video in bikes.mp4 bigbuckbunny.mp4; do
    aws s3 cp --region "$region" "$shared/media/$video" "s3://$bucket/media/$video"
  done
}

command="${1:-}"
shift || true
values="" registry="" tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --values) values="$2"; shift 2 ;;
    --registry) registry="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
case "$command" in
  render)
    [ -n "$values" ] && [ -n "$registry" ] && [ -n "$tag" ] || die "render needs --values, --registry and --tag"
    render "$values" "$registry" "$tag"
    ;;
  apply)
    [ -n "$tag" ] || die "apply needs --tag SHA"
    apply "$tag"
    ;;
  media) media ;;
  *) die "usage: deploy.sh apply --tag SHA | media | render --values FILE --registry HOST --tag SHA" ;;
esac
