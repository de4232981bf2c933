"""Renders the podcert-signer chart offline with helm-python-sdk (the Helm v4 library).

Shared by scripts/test_chart.py and `scripts/check-chart.sh --update`.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "podcert-signer"
RENDERED_RBAC = CHART / "rendered" / "rbac.yaml"
RENDERED_RBAC_CRD = CHART / "rendered" / "rbac-crd.yaml"
DEMO_MANIFESTS = ROOT / "demo" / "manifests"

# The release the integration tests load: `helm install podcert-signer -n podcert-system`.
RELEASE = "podcert-signer"
NAMESPACE = "podcert-system"

# The values of rendered/rbac-crd.yaml: PodCertificateSigner objects only (the Rust integration
# tests run the signer under this RBAC with objects that use these Secrets and namespaces).
CRD_RBAC_VALUES: dict[str, Any] = {
    "signer": {"enabled": False},
    "crdSigners": {
        "enabled": True,
        "domains": ["podcert.dev"],
        "caSecrets": ["team-ca", "web-ca", "other-ca"],
        "configMapNamespaces": ["team-a"],
        "podData": True,
    },
}

# Value sets CI renders: the defaults and each optional part switched on.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "ca-existing-secret": {"ca": {"mode": "existingSecret", "existingSecret": {"name": "my-ca"}}},
    "ca-files": {"ca": {"mode": "files", "files": {"secretName": "my-ca-files", "trustAnchors": True}}},
    "ca-pkcs11": {"ca": {"mode": "files", "files": {"secretName": "my-ca-cert"}, "pkcs11": {
        "uri": "pkcs11:token=podcert;object=ca-2026?module-path=/opt/pkcs11/libsofthsm2.so",
        "module": {"claimName": "pkcs11-module"},
        "pinSecret": {"name": "hsm-pin"},
        "data": {"claimName": "softhsm-tokens"},
        "env": {"SOFTHSM2_CONF": "/var/lib/pkcs11/softhsm2.conf"}}}},
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "labels": {"release": "prom"},
                               "runbookUrl": "https://example.com/podcert/runbook.md"},
            "grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                                 "annotations": {"grafana_folder": "Security"}},
        }
    },
    "networkpolicy": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                }
            ],
            "apiServer": {"cidrs": ["172.18.0.0/16"], "ports": [6443]},
        }
    },
    "configmaps-and-options": {
        "signer": {
            "name": "example.com/workloads",
            "trustDomain": "prod.example.com",
            "keyTypes": ["ECDSAP256", "ED25519"],
            "events": False,
        },
        "trustBundle": {"configMapNamespaces": ["team-a", "team-b"], "labels": {"tier": "prod"}},
        "priorityClassName": "system-cluster-critical",
        "podAntiAffinity": "hard",
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
    },
    "single-replica": {"replicas": 1, "leaderElection": {"enabled": False}, "trustBundle": {"enabled": False}},
    "leader-mode": {"leaderElection": {"haMode": "leader"}},
    "crd-only": CRD_RBAC_VALUES,
    "crd-and-flag": {
        "crdSigners": {
            "enabled": True,
            "domains": ["podcert.dev", "other.example"],
            "caSecrets": ["team-ca"],
            "configMapNamespaces": ["team-a", "team-b"],
            "configMapNames": ["podcert-trust-bundle", "ca-bundle"],
            "podData": True,
        },
        "trustBundle": {"configMapNamespaces": ["team-a"]},
    },
    "crd-no-bundles": {
        "signer": {"enabled": False, "events": False},
        "ca": {"mode": "files"},  # the flag signer's CA is ignored when it is off
        "crdSigners": {
            "enabled": True,
            "domains": ["example.com"],
            "trustBundles": False,
            "caSecrets": ["ext-ca"],
            "allowBootstrap": False,
            "configMapNamespaces": ["team-a"],
        },
        "replicas": 1,
        "leaderElection": {"enabled": False},
    },
}

# RBAC kinds, in the order the committed render lists them; the ValidatingAdmissionPolicy that
# narrows the ClusterTrustBundle rules is part of the signer's permissions, so it is included.
RBAC_KINDS = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
              "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]


def render_texts(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included), as `helm template` would."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values=values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(texts: dict[str, str]) -> list[dict[str, Any]]:
    """The Kubernetes objects of a render (NOTES.txt left out), in template order."""
    docs = []
    for path in sorted(texts):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(texts[path]):
            if doc:
                docs.append(doc)
    return docs


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return documents(render_texts(values))


def rbac_yaml(values: dict[str, Any] | None = None, described: str = "the\n# default values") -> str:
    """The RBAC of `values` as one YAML stream, comments kept (a committed file under rendered/)."""
    texts = render_texts(values or {})
    by_kind: dict[str, list[str]] = {k: [] for k in RBAC_KINDS}
    for path in sorted(texts):
        if not path.endswith(".yaml"):
            continue
        for chunk in texts[path].split("\n---\n"):
            doc = yaml.safe_load(chunk)
            if doc and doc.get("kind") in by_kind:
                by_kind[doc["kind"]].append(chunk.strip("\n").removeprefix("---\n"))
    header = (
        "# GENERATED by `scripts/check-chart.sh --update` from charts/podcert-signer with "
        f"{described} (release {RELEASE}, namespace {NAMESPACE}). Do not edit: CI fails when\n"
        "# it differs from a fresh render. The integration tests load it into the API emulator so\n"
        "# the signer runs with exactly the permissions the chart ships.\n"
    )
    body = "\n---\n".join(chunk for kind in RBAC_KINDS for chunk in by_kind[kind])
    return header + "---\n" + body + "\n"


def rbac_crd_yaml() -> str:
    """rendered/rbac-crd.yaml: the RBAC of CRD_RBAC_VALUES."""
    described = (
        "the values\n# " + json.dumps(CRD_RBAC_VALUES, separators=(",", ":")) + "\n#"
    )
    return rbac_yaml(CRD_RBAC_VALUES, described)


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return helm.lint(CHART, values or {}, strict=True, namespace=NAMESPACE)


def validate_schema(values: dict[str, Any]) -> None:
    """Raises helm_python.HelmValuesError when values.schema.json refuses the values."""
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
