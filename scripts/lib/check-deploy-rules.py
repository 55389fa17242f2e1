#!/usr/bin/env python3
"""Checks of the deployment files that schemas and linters cannot make.

Each rule below is a mistake that once passed every offline check and would have failed on first
use (issue 16). A rule reads the files as the tools that consume them would: the rendered
Kubernetes manifests, terraform as HCL, the Dockerfiles, the workflows and scripts/deploy.sh.

Usage: check-deploy-rules.py RENDERED_DIR   (run from the repo root; LINT_NODE_DIR must point at
the npm packages, for the HCL parser). Prints one line per finding and exits 1 if there was any.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).parent
findings: list[str] = []


def fail(rule: str, where: str, message: str) -> None:
    findings.append(f"[{rule}] {where}: {message}")


# --- inputs -------------------------------------------------------------------------------

def load_rendered(rendered: Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted(rendered.glob("*.yaml")):
        out[path.stem] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def load_terraform() -> dict:
    """All of terraform/*.tf as one JSON document (HashiCorp's HCL parser, through node)."""
    merged: dict = {}
    files = [str(p) for p in sorted(Path("terraform").glob("*.tf"))]
    text = subprocess.run(["node", str(HERE / "lint-node.mjs"), "hcl2json", *files],
                          check=True, capture_output=True, text=True).stdout
    for parsed in json.loads(text).values():
        for block, body in parsed.items():
            if isinstance(body, list):  # locals, terraform
                merged.setdefault(block, []).extend(body)
            elif block in ("resource", "data"):  # kind -> name -> [body]
                for kind, names in body.items():
                    merged.setdefault(block, {}).setdefault(kind, {}).update(names)
            else:  # variable, module, output: name -> [body]
                merged.setdefault(block, {}).update(body)
    return merged


def tf_block(tf: dict, block: str, kind: str, name: str | None = None) -> dict:
    """resource/data: tf_block(tf, block, kind, name); variable/module: tf_block(tf, block, name)."""
    found = tf.get(block, {}).get(kind, {})
    if name is not None:
        found = found.get(name)
    return (found or [{}])[0]


def tf_locals(tf: dict) -> dict:
    return {k: v for body in tf.get("locals", []) for k, v in body.items()}


def policy_actions(tf: dict, document: str) -> set[str]:
    doc = tf_block(tf, "data", "aws_iam_policy_document", document)
    return {a for s in doc.get("statement", []) for a in s.get("actions", [])}


def containers(doc: dict) -> list[dict]:
    """Containers of a Deployment's or Job's pod template (none for other kinds)."""
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return pod.get("containers", []) + pod.get("initContainers", [])


# --- 1. KEDA's kafka trigger: values, not only structure ------------------------------------
# KEDA 2.17.2 (b51655b, unchanged through 2.17.3), pkg/scalers/kafka_scaler.go
# (parseKafkaAuthParams, parseKafkaMetadata): the keys it reads and the values it accepts. MSK IAM
# is sasl oauthbearer + saslTokenProvider aws_msk_iam, needs TLS, and reads awsRegion from the
# trigger's metadata only. A key it does not know is ignored by KEDA, which hides
# typos; a wrong value makes the ScaledObject never ready. Review this table when
# keda_chart_version moves (the rule below fails until it is).
KEDA_VERSION = "2.17.2"
KAFKA_TRIGGER = {
    "bootstrapServers": None, "bootstrapServersFromEnv": None, "consumerGroup": None,
    "consumerGroupFromEnv": None, "topic": None, "topicFromEnv": None, "partitionLimitation": None,
    "lagThreshold": "int", "activationLagThreshold": "int",
    "offsetResetPolicy": {"earliest", "latest"},
    "allowIdleConsumers": "bool", "excludePersistentLag": "bool", "scaleToZeroOnInvalidOffset": "bool",
    "limitToPartitionsWithLag": "bool", "ensureEvenDistributionOfPartitions": "bool",
    "version": None, "unsafeSsl": "bool",
    "sasl": {"none", "plaintext", "scram_sha256", "scram_sha512", "oauthbearer", "gssapi"},
    "saslTokenProvider": {"bearer", "aws_msk_iam"},
    "tls": {"enable", "disable"}, "awsRegion": None, "awsEndpoint": None,
    # Older AWS keys, ignored when the TriggerAuthentication has podIdentity provider aws.
    "identityOwner": {"pod", "operator"}, "awsAccessKeyID": None, "awsAccessKeyIDFromEnv": None,
    "awsSecretAccessKeyFromEnv": None,
}


def check_keda(rendered: dict[str, list[dict]], tf: dict) -> None:
    chart = tf_block(tf, "variable", "keda_chart_version")
    if chart.get("default") != KEDA_VERSION:
        fail("keda-values", "terraform/variables.tf keda_chart_version",
             f"is {chart.get('default')}, the accepted-values table is for {KEDA_VERSION}: review it")
    for overlay, docs in rendered.items():
        for doc in docs:
            if doc.get("kind") != "ScaledObject":
                continue
            for i, trigger in enumerate(doc["spec"].get("triggers", [])):
                where = f"{overlay}: ScaledObject/{doc['metadata']['name']} trigger {i}"
                if trigger.get("type") != "kafka":
                    fail("keda-values", where, f"type {trigger.get('type')} has no table of accepted values")
                    continue
                meta = trigger.get("metadata", {})
                for key, value in meta.items():
                    accepted = KAFKA_TRIGGER.get(key, "unknown")
                    value = str(value)
                    if accepted == "unknown":
                        fail("keda-values", where, f"KEDA {KEDA_VERSION}'s kafka scaler reads no key '{key}'")
                    elif accepted == "int" and not value.isdigit():
                        fail("keda-values", where, f"{key}: '{value}' is not a whole number")
                    elif accepted == "bool" and value not in ("true", "false"):
                        fail("keda-values", where, f"{key}: '{value}' is not true or false")
                    elif isinstance(accepted, set) and value not in accepted:
                        fail("keda-values", where, f"{key}: '{value}' is not one of {sorted(accepted)}")
                if str(meta.get("lagThreshold", "10")) == "0":
                    fail("keda-values", where, "lagThreshold must be above 0")
                if meta.get("allowIdleConsumers") == "true" and meta.get("limitToPartitionsWithLag") == "true":
                    fail("keda-values", where, "allowIdleConsumers and limitToPartitionsWithLag exclude each other")
                if meta.get("saslTokenProvider") == "aws_msk_iam":
                    if meta.get("sasl") != "oauthbearer":
                        fail("keda-values", where, "saslTokenProvider aws_msk_iam needs sasl: oauthbearer")
                    if meta.get("tls") != "enable":
                        fail("keda-values", where, "MSK IAM listeners are TLS only: tls: enable")
                    if not meta.get("awsRegion"):
                        fail("keda-values", where, "MSK IAM signs for a region: awsRegion is required")
                    if not trigger.get("authenticationRef"):
                        fail("keda-values", where, "MSK IAM needs the operator's identity (authenticationRef)")
                # KEDA's operator runs in its own namespace: a short Service name does not resolve.
                for server in str(meta.get("bootstrapServers", "")).split(","):
                    host = server.rsplit(":", 1)[0]
                    if host and not host.startswith("$(") and "." not in host:
                        fail("keda-dns", where, f"bootstrap server '{server}' is a short name; KEDA resolves "
                             "it from the keda namespace: use <service>.<namespace>.svc.cluster.local")


# --- 2. Native libraries of Python wheels in slim images ----------------------------------
# pip packages whose wheels link system libraries that python:*-slim lacks, and the Debian
# packages that provide them (opencv-python's cv2: libGL.so.1, libglib-2.0.so.0, libxcb.so.1;
# Ultralytics imports cv2).
WHEEL_NATIVE_DEPS = {
    "opencv-python": {"libgl1", "libglib2.0-0", "libxcb1"},
    "ultralytics": {"libgl1", "libglib2.0-0", "libxcb1"},
}


def dockerfile_stages(path: Path) -> list[tuple[str, str]]:
    """(FROM line, the stage's instructions with continuations joined)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line.startswith("FROM "):
            stages.append((line, ""))
        elif stages and not line.lstrip().startswith("#"):
            stages[-1] = (stages[-1][0], stages[-1][1] + line + "\n")
    return stages


def apt_installs(body: str) -> list[str]:
    """Package arguments of every `apt-get install` in a stage."""
    out = []
    for m in re.finditer(r"apt-get install ([^&;|\n]*)", body):
        out += [w for w in m.group(1).split() if not w.startswith("-")]
    return out


def check_dockerfiles() -> None:
    stages = [(path, base, body) for path in sorted(Path("docker").glob("Dockerfile.*"))
              for base, body in dockerfile_stages(path)]
    candidates = debian_candidates({p.split("=")[0] for _, _, body in stages for p in apt_installs(body)})
    for path, base, body in stages:
        where = f"{path} ({base.strip()})"
        packages = apt_installs(body)
        names = {p.split("=")[0] for p in packages}
        for pip in re.findall(r"pip install ([^&;|\n]*)", body):
            for wheel, needs in WHEEL_NATIVE_DEPS.items():
                if re.search(rf'"?{re.escape(wheel)}[=<>"\s]', pip + " ") and "slim" in base:
                    missing = needs - names
                    if missing:
                        fail("wheel-libs", where, f"{wheel} needs {sorted(missing)} from apt (absent from slim images)")
        for package in packages:
            name, _, version = package.partition("=")
            if not version:
                continue
            # A Debian revision (-1, +deb12u1) is replaced by every security update, and apt
            # then refuses the pin: pin the upstream version and let the revision float.
            if not version.endswith("*"):
                fail("apt-pins", where, f"{package} pins an exact Debian version, which the next security update replaces; pin the upstream version with a wildcard")
            if candidates is not None:
                have = candidates.get(name)
                if have is None:
                    fail("apt-pins", where, f"{name} has no candidate in this machine's Debian 12 lists")
                elif not fnmatch.fnmatchcase(have, version):
                    fail("apt-pins", where, f"{package} does not match bookworm's current {name} {have}")


def debian_candidates(names: set[str]) -> dict[str, str] | None:
    """name -> candidate version from this machine's apt lists, when it is a Debian 12 machine
    (the images' base); None elsewhere, where the pins are only checked for their form."""
    os_release = Path("/etc/os-release")
    if not shutil.which("apt-cache") or not os_release.exists() or "bookworm" not in os_release.read_text():
        print("apt-pins: not a Debian 12 machine; pins checked for their form only")
        return None
    out = subprocess.run(["apt-cache", "policy", *sorted(names)], capture_output=True, text=True).stdout
    candidates, current = {}, None
    for line in out.splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":")
        elif line.strip().startswith("Candidate:") and current:
            value = line.split(":", 1)[1].strip()
            if value != "(none)":
                candidates[current] = value
    return candidates


# --- 3. What scripts/deploy.sh calls, the deploy role may do; errors are not hidden -----------
SPECIAL_ACTIONS = {("eks", "update-kubeconfig"): "eks:DescribeCluster", ("s3", "cp"): "s3:PutObject"}


def check_deploy_script(tf: dict) -> None:
    allowed = policy_actions(tf, "github_deploy")
    text = Path("scripts/deploy.sh").read_text()
    for line in text.splitlines():
        m = re.search(r"\baws ([a-z0-9-]+) ([a-z0-9-]+)", line)
        if not m or line.lstrip().startswith("#"):
            continue
        service, command = m.groups()
        action = SPECIAL_ACTIONS.get((service, command)) or \
            f"{service}:{''.join(w.capitalize() for w in command.split('-'))}"
        if action not in allowed:
            fail("deploy-iam", "scripts/deploy.sh", f"calls aws {service} {command}, but the deploy role "
                 f"(terraform/github.tf github_deploy) lacks {action}")
        # Discarding stderr (not capturing it with 2>&1 >/dev/null) hides why a call failed.
        if re.search(r">\s*/dev/null\s+2>&1|2>\s*/dev/null|&>\s*/dev/null", line):
            fail("deploy-iam", "scripts/deploy.sh", f"hides the error of aws {service} {command}")


# --- 4/5. The EKS API is reachable by whoever applies and deploys, and they may use it --------
def check_cluster_access(tf: dict) -> None:
    eks = tf_block(tf, "module", "eks")
    cidrs = tf_block(tf, "variable", "cluster_endpoint_public_access_cidrs")
    validations = json.dumps(cidrs.get("validation", []))
    uses_api = tf.get("resource", {}).get("helm_release")
    if uses_api and "cluster_api_private_only" not in validations:
        fail("eks-access", "terraform/variables.tf cluster_endpoint_public_access_cidrs",
             "terraform installs charts through the EKS API: an empty list must be refused unless "
             "cluster_api_private_only says the apply runs inside the VPC")
    if "cluster_api_private_only" not in json.dumps(eks.get("cluster_endpoint_public_access", "")):
        fail("eks-access", "terraform/eks.tf", "the public endpoint does not follow cluster_api_private_only")
    for workflow in (".github/workflows/terraform.yml", ".github/workflows/deploy.yml"):
        text = Path(workflow).read_text()
        if "vars.AWS_RUNNER" not in text:
            fail("eks-access", workflow, "jobs that reach the EKS API must run on vars.AWS_RUNNER when it is set")
    tf_text = Path(".github/workflows/terraform.yml").read_text()
    for var in ("TF_VAR_cluster_endpoint_public_access_cidrs", "TF_VAR_cluster_api_private_only"):
        if var not in tf_text:
            fail("eks-access", ".github/workflows/terraform.yml", f"does not set {var}")

    entries = json.dumps(eks.get("access_entries", ""))
    for role, why in (("github_terraform_apply", "its apply installs the KEDA chart"),
                      ("github_terraform_plan", "its plan refreshes the helm release"),
                      ("github_deploy", "it applies the manifests")):
        if f"aws_iam_role.{role}" not in entries:
            fail("ci-roles", "terraform/eks.tf access_entries", f"{role} has no EKS access entry, yet {why}")
    plan = policy_actions(tf, "github_terraform_plan_secrets")
    for action in ("secretsmanager:GetSecretValue", "kms:Decrypt"):
        if action not in plan:
            fail("ci-roles", "terraform/github.tf", f"the plan role lacks {action} (ReadOnlyAccess has "
                 "neither): refreshing the MSK secret and the SecureString parameter fails")


# --- 6. Containers on the RTSP host reach the instance metadata service ----------------------
def check_imds(tf: dict) -> None:
    hop = tf_block(tf, "resource", "aws_instance", "rtsp").get("metadata_options", [{}])[0] \
        .get("http_put_response_hop_limit", 1)
    for template in Path("terraform/templates").glob("*.tftpl"):
        for line in template.read_text().splitlines():
            if "docker run" in line and "aws-cli" in line and "--network host" not in line and int(hop) < 2:
                fail("imds-hops", str(template), "a bridged container is one hop further from IMDSv2 than "
                     "the hop limit of 1 allows: it gets no credentials (--network host, or hop limit 2)")


# --- 8/9. What the manifests rely on, the cluster has -----------------------------------------
def check_cluster_features(rendered: dict[str, list[dict]], tf: dict) -> None:
    addons = tf_block(tf, "module", "eks").get("cluster_addons", {})
    charts = {b[0].get("chart") for b in tf.get("resource", {}).get("helm_release", {}).values()}
    docs = rendered.get("eks", [])
    if any(d.get("kind") == "HorizontalPodAutoscaler" and any(m.get("type") == "Resource" for m in
           d["spec"].get("metrics", [])) for d in docs):
        if "metrics-server" not in addons and "metrics-server" not in charts:
            fail("cluster-features", "terraform/eks.tf", "an HPA scales on CPU, but the cluster has no metrics-server")
    if any(d.get("kind") == "NetworkPolicy" for d in docs):
        cni = json.dumps(addons.get("vpc-cni", {}))
        if "enableNetworkPolicy" not in cni:
            fail("cluster-features", "terraform/eks.tf", "NetworkPolicies are not enforced: vpc-cni needs enableNetworkPolicy")


# --- 10/11/12. Manifests ----------------------------------------------------------------------
def check_manifests(rendered: dict[str, list[dict]]) -> None:
    for overlay, docs in rendered.items():
        scaled = {(d["spec"]["scaleTargetRef"].get("kind", "Deployment"), d["spec"]["scaleTargetRef"]["name"])
                  for d in docs if d.get("kind") in ("ScaledObject", "HorizontalPodAutoscaler")}
        for doc in docs:
            kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
            where = f"{overlay}: {kind}/{name}"
            if (kind, name) in scaled and "replicas" in doc.get("spec", {}):
                fail("owned-replicas", where, "sets replicas, but an autoscaler owns them: every apply resets the scale")
            for c in containers(doc):
                ports = {p.get("name") for p in c.get("ports", [])} | {p.get("containerPort") for p in c.get("ports", [])}
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    spec = c.get(probe) or {}
                    for handler in ("httpGet", "tcpSocket"):
                        port = (spec.get(handler) or {}).get("port")
                        if port is not None and port not in ports:
                            fail("probes", f"{where} {c['name']}", f"{probe} uses port {port}, which the container "
                                 "does not declare")
                    if "mediamtx" in c.get("image", "") and spec.get("httpGet"):
                        fail("probes", f"{where} {c['name']}", f"{probe}: MediaMTX's API answers 401 to any "
                             "address but localhost")
                for env in c.get("env", []):
                    if env.get("name") == "KAFKA_ADVERTISED_LISTENERS":
                        for listener in str(env.get("value", "")).split(","):
                            host = listener.split("//", 1)[-1].rsplit(":", 1)[0]
                            if host not in ("", "localhost") and "." not in host:
                                fail("keda-dns", where, f"advertised listener {listener} is a short name: "
                                     "clients in other namespaces (KEDA) cannot resolve it")


# --- 14. Images are built from this repository's main, and the built commit is deployed -------
def check_workflows() -> None:
    build = yaml.safe_load(Path(".github/workflows/build.yml").read_text())
    job_if = " ".join(str(j.get("if", "")) for j in build["jobs"].values())
    for guard in ("github.event.workflow_run.event == 'push'",
                  "github.event.workflow_run.head_repository.full_name == github.repository"):
        if guard not in job_if:
            fail("workflow-trust", ".github/workflows/build.yml", f"jobs lack `{guard}`: a fork's pull request "
                 "from a branch named main would be built and pushed with the build role")
    deploy = Path(".github/workflows/deploy.yml").read_text()
    if "workflow_run.head_sha" in deploy:
        fail("workflow-trust", ".github/workflows/deploy.yml", "takes the build run's head_sha, which for a "
             "workflow_run-triggered build is the default branch's head, not the commit that was built")
    if "github.event.workflow_run.head_repository.full_name == github.repository" not in deploy:
        fail("workflow-trust", ".github/workflows/deploy.yml", "does not check that the build ran in this repository")


# --- 15. One Kubernetes namespace --------------------------------------------------------------
def check_namespace(rendered: dict[str, list[dict]], tf: dict) -> None:
    namespaces = {d["metadata"].get("namespace") for d in rendered.get("eks", [])
                  if d.get("kind") == "ServiceAccount" and d["metadata"]["name"] == "consumer"}
    irsa = tf_locals(tf).get("irsa", {})
    account = (irsa.get("consumer") or {}).get("service_account", "")
    resolved = re.sub(r"\$\{local\.(\w+)\}", lambda m: str(tf_locals(tf).get(m.group(1), m.group(0))), account)
    if "${" in resolved or resolved.split(":")[0] not in namespaces:
        fail("namespace", "terraform/eks.tf local.irsa.consumer", f"trusts {account} (= {resolved}), but the "
             f"consumer's ServiceAccount lives in {sorted(n for n in namespaces if n)}")
    deploy = re.search(r'^NAMESPACE="([^"]+)"', Path("scripts/deploy.sh").read_text(), re.M)
    if not deploy or deploy.group(1) not in namespaces:
        fail("namespace", "scripts/deploy.sh", "NAMESPACE is not the namespace of the manifests")


def main() -> int:
    rendered = load_rendered(Path(sys.argv[1]))
    tf = load_terraform()
    check_keda(rendered, tf)
    check_dockerfiles()
    check_deploy_script(tf)
    check_cluster_access(tf)
    check_imds(tf)
    check_cluster_features(rendered, tf)
    check_manifests(rendered)
    check_workflows()
    check_namespace(rendered, tf)
    for line in findings:
        print(line)
    print(f"deployment rules: {len(findings)} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
