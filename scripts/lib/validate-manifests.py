#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests against the API's schemas, strictly.

Built-in kinds go through kubernetes-validate (the OpenAPI schemas of Kubernetes
K8S_VERSION, strict: an unknown field is an error, not silently dropped by the API server);
KEDA's kinds (keda.sh) through KEDA's CRD schemas, by lint-node.mjs. Any other kind is an error,
so that a resource is never left unchecked.

Usage: validate-manifests.py FILE...   (LINT_NODE_DIR must point at the npm packages)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

K8S_VERSION = os.environ.get("K8S_VERSION", "1.33.0")


def main() -> int:
    failures = 0
    keda: list[dict] = []
    checked = 0
    for path in sys.argv[1:]:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not doc:
                continue
            name = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if str(doc.get("apiVersion", "")).startswith("keda.sh/"):
                keda.append({"source": path, "doc": doc})
                continue
            checked += 1
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures += 1
                print(f"{name}: {'.'.join(str(p) for p in e.path)}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                failures += 1
                print(f"{name}: no schema ({e})")
    print(f"{checked} Kubernetes resources checked against {K8S_VERSION} schemas, {failures} invalid")
    here = Path(__file__).parent
    result = subprocess.run(["node", str(here / "lint-node.mjs"), "keda"], input=json.dumps(keda), text=True)
    return 1 if failures or result.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
