#!/usr/bin/env python3
"""Checks that the deployment files say what the services themselves say.

The source of truth is each binary's `--help` (clap prints every option's environment variable
and default). Against it, this compares docker-compose.yaml, the rendered Kubernetes overlays,
the Dockerfiles, Prometheus' scrape targets, LocalStack's init hook and terraform's variables:

- every environment variable set for a service is one that service reads (a typo is an error);
- the topic, group, bucket, message size and listen ports equal the services' defaults, except
  where a file deliberately points somewhere else (OVERRIDABLE: broker addresses, endpoints);
- ports in probes, Services, scrape annotations and health checks are the listen ports.

Usage: check-deploy-consistency.py --bin-dir DIR --rendered NAME=FILE... (run from the repo root)
Exits 1 with one line per disagreement.
"""

from __future__ import annotations

import argparse
import functools
import re
import subprocess
import sys
from pathlib import Path

import yaml

SERVICES = {"producer": "PRODUCER_LISTEN", "consumer": "CONSUMER_LISTEN", "inference": "INFERENCE_LISTEN"}
# Values a deployment is expected to set differently from the built-in default: where the other
# servers are, where the model is, what to read. Everything else must equal the default.
OVERRIDABLE = {
    "KAFKA_BROKERS", "KAFKA_PROPERTIES", "INFERENCE_URL", "S3_ENDPOINT", "AWS_REGION",
    "CREATE_BUCKET", "MODEL_PATH", "ORT_DYLIB_PATH", "INTRA_THREADS", "SOURCES", "SOURCES_FILE",
    "FRAME_RATE", "MAX_IN_FLIGHT", "SHUTDOWN_TIMEOUT", "TOPIC_REPLICATION", "RUST_LOG",
    "PRODUCER_LISTEN", "CONSUMER_LISTEN", "INFERENCE_LISTEN",
}
# Read by libraries the services link (the AWS SDK, glibc's malloc), not by their flags.
LIBRARY_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "MALLOC_ARENA_MAX"}
# Helper variables that Kubernetes expands into KAFKA_PROPERTIES, never read by a service.
K8S_HELPER_ENV = {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}
# cluster-values keys that kustomize substitutes into non-env fields.
CLUSTER_ONLY_KEYS = {"KAFKA_BROKERS_IAM", "CONSUMER_ROLE_ARN"}

errors: list[str] = []


@functools.cache
def record_overhead() -> int:
    """The services' RECORD_OVERHEAD_BYTES, from its one definition (read once)."""
    path = "crates/common/src/kafka/settings.rs"
    m = re.search(r"RECORD_OVERHEAD_BYTES: usize = (\d+) \* (\d+);", Path(path).read_text())
    if not m:
        sys.exit(f"{path}: RECORD_OVERHEAD_BYTES not found; has it moved?")
    return int(m.group(1)) * int(m.group(2))


def record_limit(defaults: dict[str, str | None]) -> int:
    """The largest record a service writes: a MAX_MESSAGE_BYTES batch plus its headers (and, in a
    dead letter, the reason headers), allowed for by RECORD_OVERHEAD_BYTES.
    Brokers and topics must accept at least this, or a full batch is refused."""
    return int(str(defaults["MAX_MESSAGE_BYTES"])) + record_overhead()


def check_size(where: str, what: str, value: object, limit: int) -> None:
    if value is None or not str(value).isdigit() or int(str(value)) < limit:
        fail(where, f"{what} is {value}, below the largest record the services write ({limit} bytes: "
             "MAX_MESSAGE_BYTES plus RECORD_OVERHEAD_BYTES)")


def topic_max_bytes(script: str) -> str | None:
    m = re.search(r"max\.message\.bytes=(\d+)", script)
    return m.group(1) if m else None


def fail(where: str, message: str) -> None:
    errors.append(f"{where}: {message}")


def read_help(binary: Path) -> dict[str, str | None]:
    """Environment variable -> default (None when the option has no default)."""
    # A clean environment: clap shows variables that are set, and the defaults are the point.
    text = subprocess.run([str(binary), "--help"], check=True, capture_output=True, text=True, env={}).stdout
    options: dict[str, str | None] = {}
    # Long help: one block per option, starting at a line that begins with `-`.
    for block in re.split(r"\n(?=\s*-{1,2}[a-zA-Z])", text):
        env = re.search(r"\[env: ([A-Z0-9_]+)=", block)
        if not env:
            continue
        default = re.search(r"\[default: ([^\]]*)\]", block)
        options[env.group(1)] = default.group(1) if default else None
    if not options:
        sys.exit(f"{binary} --help listed no environment variables; has its format changed?")
    # The producer's partition count of a shared topic is a rule, not a clap default.
    shared = re.search(r"default:\s+(\d+)\s+for\s+one\s+shared\s+topic", text)
    if shared:
        options["TOPIC_PARTITIONS"] = shared.group(1)
    return options


def port_of(listen: str | None) -> int:
    return int(str(listen).rsplit(":", 1)[1])


def check_env(where: str, service: str, env: dict[str, object], known: dict[str, dict[str, str | None]]) -> None:
    options = known[service]
    for name, value in env.items():
        if name in LIBRARY_ENV or name in K8S_HELPER_ENV:
            continue
        if name not in options:
            fail(where, f"{name} is not an environment variable of {service} (see `{service} --help`)")
            continue
        default = options[name]
        if name in OVERRIDABLE or default is None or value is None:
            continue
        if str(value) != default:
            fail(where, f"{name}={value} but {service}'s default is {default}")
    listen = env.get(SERVICES[service])
    if listen is not None and port_of(listen) != port_of(options[SERVICES[service]]):
        fail(where, f"{SERVICES[service]}={listen}: not {service}'s default port {port_of(options[SERVICES[service]])}")


def check_compose(known: dict[str, dict[str, str | None]]) -> None:
    compose = yaml.safe_load(Path("docker-compose.yaml").read_text())
    services = compose["services"]
    defaults = {k: v for opts in known.values() for k, v in opts.items()}
    for service in SERVICES:
        spec = services[service]
        env = dict(spec.get("environment") or {})
        check_env(f"docker-compose.yaml services.{service}", service, env, known)
        port = port_of(known[service][SERVICES[service]])
        ports = [str(p) for p in spec.get("ports", [])]
        if f"{port}:{port}" not in ports:
            fail(f"docker-compose.yaml services.{service}", f"does not publish port {port}: {ports}")
        health = " ".join(spec.get("healthcheck", {}).get("test", []))
        if f":{port}/" not in health:
            fail(f"docker-compose.yaml services.{service}", f"health check does not probe port {port}: {health}")
    init = " ".join(services["kafka-init"]["command"])
    topic = defaults["KAFKA_TOPIC"]
    if f"--partitions {known['producer'].get('TOPIC_PARTITIONS')} " not in init:
        fail("docker-compose.yaml services.kafka-init", "partitions differ from the producer's default for a shared topic")
    if f"for t in {topic} {topic}.dlq;" not in init:
        fail("docker-compose.yaml services.kafka-init", f"does not create {topic} and {topic}.dlq")
    limit = record_limit(defaults)
    check_size("docker-compose.yaml services.kafka-init", "topic max.message.bytes", topic_max_bytes(init), limit)
    for key in ("KAFKA_MESSAGE_MAX_BYTES", "KAFKA_REPLICA_FETCH_MAX_BYTES"):
        check_size("docker-compose.yaml services.kafka", key, services["kafka"]["environment"].get(key), limit)
    if services["localstack"]["environment"].get("S3_BUCKET") != defaults["S3_BUCKET"]:
        fail("docker-compose.yaml services.localstack", "S3_BUCKET is not the consumer's default bucket")


def check_rendered(name: str, path: Path, known: dict[str, dict[str, str | None]]) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_kind: dict[tuple[str, str], dict] = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    defaults = {k: v for opts in known.values() for k, v in opts.items()}
    configmaps = {n: d.get("data", {}) for (k, n), d in by_kind.items() if k == "ConfigMap"}
    for service in SERVICES:
        where = f"{name} Deployment/{service}"
        deployment = by_kind.get(("Deployment", service))
        if deployment is None:
            fail(where, "missing")
            continue
        pod = deployment["spec"]["template"]
        (container,) = [c for c in pod["spec"]["containers"] if c["name"] == service]
        env: dict[str, object] = {}
        for source in container.get("envFrom", []):
            cm = source.get("configMapRef", {}).get("name")
            for key, value in configmaps.get(cm, {}).items():
                if key not in CLUSTER_ONLY_KEYS and (key in known[service] or key in LIBRARY_ENV):
                    # cluster-values are terraform's outputs for one cluster (a bucket name is
                    # global, so it carries the account id): only their names are checked.
                    env[key] = None if cm == "cluster-values" else value
        for item in container.get("env", []):
            env[item["name"]] = item.get("value")
        check_env(where, service, env, known)
        port = port_of(known[service][SERVICES[service]])
        if [p["containerPort"] for p in container.get("ports", [])] != [port]:
            fail(where, f"containerPort is not {port}")
        annotations = pod["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/port") != str(port):
            fail(where, f"prometheus.io/port is not {port}")
        for probe in ("readinessProbe", "livenessProbe"):
            if container.get(probe, {}).get("httpGet", {}).get("port") not in ("http", port):
                fail(where, f"{probe} does not probe the service's port")
    # Every key of the shared ConfigMaps is read by some service (or is a cluster-only key).
    for cm in ("pipeline-config", "cluster-values"):
        for key in configmaps.get(cm, {}):
            if key not in defaults and key not in CLUSTER_ONLY_KEYS and key not in LIBRARY_ENV:
                fail(f"{name} ConfigMap/{cm}", f"{key} is read by no service")
    for service, svc_name in (("inference", "inference"), ("consumer", "consumer-metrics"), ("producer", "producer-metrics")):
        svc = by_kind.get(("Service", svc_name))
        port = port_of(known[service][SERVICES[service]])
        if svc is None or [p["port"] for p in svc["spec"]["ports"]] != [port]:
            fail(f"{name} Service/{svc_name}", f"missing or not on port {port}")
    inference_url = configmaps.get("pipeline-config", {}).get("INFERENCE_URL", "")
    if not inference_url.endswith(f":{port_of(known['inference']['INFERENCE_LISTEN'])}"):
        fail(f"{name} ConfigMap/pipeline-config", f"INFERENCE_URL {inference_url} is not the inference Service's port")
    scaled = by_kind.get(("ScaledObject", "consumer"))
    if scaled is None:
        fail(name, "ScaledObject/consumer missing")
    else:
        trigger = scaled["spec"]["triggers"][0]["metadata"]
        if trigger.get("topic") != defaults["KAFKA_TOPIC"]:
            fail(f"{name} ScaledObject/consumer", f"topic {trigger.get('topic')} is not {defaults['KAFKA_TOPIC']}")
        if trigger.get("consumerGroup") != defaults["CONSUMER_GROUP"]:
            fail(f"{name} ScaledObject/consumer", f"consumerGroup is not {defaults['CONSUMER_GROUP']}")
        if str(scaled["spec"]["maxReplicaCount"]) != str(known["producer"].get("TOPIC_PARTITIONS")):
            fail(f"{name} ScaledObject/consumer", "maxReplicaCount is not the topic's partition count")
    job = by_kind.get(("Job", "kafka-topics"))
    if job is not None:
        script = " ".join(job["spec"]["template"]["spec"]["containers"][0].get("args", []))
        topic = defaults["KAFKA_TOPIC"]
        if f"for t in {topic} {topic}.dlq;" not in script:
            fail(f"{name} Job/kafka-topics", f"does not create {topic} and {topic}.dlq")
        if f"--partitions {known['producer'].get('TOPIC_PARTITIONS')} " not in script:
            fail(f"{name} Job/kafka-topics", "partitions differ from the producer's default for a shared topic")
        check_size(f"{name} Job/kafka-topics", "topic max.message.bytes", topic_max_bytes(script), record_limit(defaults))
    broker = by_kind.get(("Deployment", "kafka"))
    if broker is not None:
        env = {e["name"]: e.get("value") for e in broker["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        for key in ("KAFKA_MESSAGE_MAX_BYTES", "KAFKA_REPLICA_FETCH_MAX_BYTES"):
            check_size(f"{name} Deployment/kafka", key, env.get(key), record_limit(defaults))
    hpas = [d for (k, _), d in by_kind.items() if k == "HorizontalPodAutoscaler"]
    if any(h["spec"]["scaleTargetRef"]["name"] == "consumer" for h in hpas):
        fail(name, "an HPA targets the consumer, which KEDA scales")


def check_dockerfiles(known: dict[str, dict[str, str | None]]) -> None:
    for service in SERVICES:
        path = Path(f"docker/Dockerfile.{service}")
        text = path.read_text()
        port = port_of(known[service][SERVICES[service]])
        if not re.search(rf"{SERVICES[service]}=0\.0\.0\.0:{port}\b", text):
            fail(str(path), f"ENV {SERVICES[service]} is not 0.0.0.0:{port}")
        if not re.search(rf"^EXPOSE {port}$", text, re.M):
            fail(str(path), f"does not EXPOSE {port}")
        if f"127.0.0.1:{port}/health" not in text:
            fail(str(path), f"HEALTHCHECK does not probe port {port}")


def check_monitoring_and_init(known: dict[str, dict[str, str | None]]) -> None:
    prometheus = Path("monitoring/prometheus.yml").read_text()
    for service in SERVICES:
        port = port_of(known[service][SERVICES[service]])
        if f"{service}:{port}" not in prometheus:
            fail("monitoring/prometheus.yml", f"does not scrape {service}:{port}")
    hook = Path("localstack-init/ready.d/10-create-bucket.sh").read_text()
    if f"${{S3_BUCKET:-{known['consumer']['S3_BUCKET']}}}" not in hook:
        fail("localstack-init/ready.d/10-create-bucket.sh", "default bucket is not the consumer's")


def check_terraform(known: dict[str, dict[str, str | None]]) -> None:
    variables = Path("terraform/variables.tf").read_text()
    m = re.search(r'variable "max_message_bytes" \{.*?default\s*=\s*(\d+)', variables, re.S)
    if not m or m.group(1) != known["producer"]["MAX_MESSAGE_BYTES"]:
        fail("terraform/variables.tf", "max_message_bytes default is not MAX_MESSAGE_BYTES")
    # MSK's broker limits: var.max_message_bytes plus a headroom of at least the record overhead.
    msk = Path("terraform/msk.tf").read_text()
    overhead = record_overhead()
    for key in ("message.max.bytes", "replica.fetch.max.bytes"):
        m = re.search(rf"^\s*{re.escape(key)}=\$\{{var\.max_message_bytes \+ (\d+)\}}", msk, re.M)
        if not m or int(m.group(1)) < overhead:
            fail("terraform/msk.tf", f"{key} is not var.max_message_bytes plus at least {overhead} bytes of headroom")
    base = yaml.safe_load(Path("k8s/base/kustomization.yaml").read_text())
    m = re.search(r'k8s_namespace\s*=\s*"([^"]+)"', Path("terraform/eks.tf").read_text())
    if not m or m.group(1) != base["namespace"]:
        fail("terraform/eks.tf", "local.k8s_namespace is not the Kubernetes namespace (IRSA trusts <namespace>:consumer)")
    template = Path("terraform/templates/cluster-values.yaml.tftpl").read_text()
    committed = yaml.safe_load(Path("k8s/overlays/eks/cluster-values.yaml").read_text())["data"]
    keys = set(re.findall(r"^  ([A-Z0-9_]+):", template, re.M))
    if keys != set(committed):
        fail("terraform/templates/cluster-values.yaml.tftpl", f"keys {sorted(keys)} differ from k8s/overlays/eks/cluster-values.yaml {sorted(committed)}")
    if "kafka-cluster:DescribeGroup" not in Path("terraform/eks.tf").read_text():
        fail("terraform/eks.tf", "KEDA's role cannot describe the consumer group")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", type=Path, required=True)
    parser.add_argument("--rendered", action="append", default=[], metavar="NAME=FILE")
    args = parser.parse_args()
    known = {s: read_help(args.bin_dir / s) for s in SERVICES}
    check_compose(known)
    for item in args.rendered:
        name, _, path = item.partition("=")
        check_rendered(name, Path(path), known)
    check_dockerfiles(known)
    check_monitoring_and_init(known)
    check_terraform(known)
    for e in errors:
        print(f"inconsistent: {e}")
    if errors:
        sys.exit(1)
    print(f"deployment files agree with the services' own settings ({len(args.rendered)} overlays)")


if __name__ == "__main__":
    main()
