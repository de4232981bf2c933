"""Checks on the podcert-signer chart and the kind demo manifests, on their rendered output.

Run through scripts/check-chart.sh (it prepares a venv with pinned helm-python-sdk and
kubernetes-validate). `python scripts/test_chart.py --update` rewrites the committed render.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import unittest
from typing import Any, Iterable

import helm_python as helm
import kubernetes_validate
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import chart_render as cr  # noqa: E402

# Strict schema validation against these releases (1.35 is the demo default, 1.37 the newest;
# 1.34 and 1.36 are cheap to add and also supported).
KUBE_VERSIONS = ["1.34.0", "1.35.0", "1.36.0", "1.37.0"]
# CRD kinds kubernetes-validate has no schema for; their shape is asserted by a test below.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}

SIGNER = "podcert.dev/spiffe"
# Command-line flags that configure only the flag signer (absent when signer.enabled is false).
FLAG_SIGNER_ARGS = ("--signer-name", "--trust-domain", "--max-lifetime", "--key-types", "--ca-secret",
                    "--ca-bootstrap", "--ca-key-type", "--ca-validity", "--ca-cert", "--ca-key",
                    "--trust-anchors", "--trust-bundle-suffix", "--trust-bundle-label",
                    "--trust-bundle-configmap-namespace", "--trust-bundle-configmap-name")
# What the PodCertificateSigner RBAC names (the CRD's group and plural).
CRD_GROUP, CRD_PLURAL, CRD_VERSION = "podcert.dev", "podcertificatesigners", "v1alpha1"


def flag_on(variant: str) -> bool:
    return (cr.VARIANTS[variant].get("signer") or {}).get("enabled", True)


def crd_values(variant: str) -> dict[str, Any]:
    """The variant's crdSigners block with the chart's defaults filled in ({} when off)."""
    crd = {"enabled": False, "domains": ["podcert.dev"], "trustBundles": True, "caSecrets": [],
           "allowBootstrap": True, "configMapNamespaces": [], "configMapNames": ["podcert-trust-bundle"],
           "podData": False,
           **(cr.VARIANTS[variant].get("crdSigners") or {})}
    return crd if crd["enabled"] else {}


def flag_bundle(variant: str) -> bool:
    return flag_on(variant) and (cr.VARIANTS[variant].get("trustBundle") or {}).get("enabled", True)


def crd_bundle(variant: str) -> bool:
    return bool(crd_values(variant).get("trustBundles"))


def domain_signers(variant: str) -> set[str]:
    return {f"{d}/*" for d in crd_values(variant).get("domains", [])}


def by_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    if len(found) != 1:
        raise AssertionError(f"expected one {kind}, found {len(found)}")
    return found[0]


def restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    """The "restricted" Pod Security Standard (with "baseline"), as the admission plugin checks it."""
    bad = []
    psc = pod_spec.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(host):
            bad.append(f"{host} is set")
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret", "image"}
    for vol in pod_spec.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= allowed_volumes:
            bad.append(f"volume {vol['name']} uses {sorted(kinds - allowed_volumes)}")
    for sysctl in psc.get("sysctls") or []:  # only a short safe list is allowed; this chart needs none
        bad.append(f"sysctl {sysctl['name']}")
    containers = (pod_spec.get("initContainers") or []) + pod_spec["containers"]
    pod_non_root = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":
        bad.append("pod seccompProfile Unconfined")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    for c in containers:
        sc = c.get("securityContext") or {}
        n = c["name"]
        if sc.get("privileged"):
            bad.append(f"{n}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{n}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{n}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{n}: adds capabilities {caps['add']}")
        if sc.get("runAsNonRoot", pod_non_root) is not True:
            bad.append(f"{n}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            bad.append(f"{n}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{n}: seccompProfile is {seccomp!r}")
        if sc.get("procMount", "Default") != "Default":
            bad.append(f"{n}: procMount")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                bad.append(f"{n}: hostPort {p['hostPort']}")
    return bad


def kube_validate(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


class Renders(unittest.TestCase):
    """Every variant renders, lints strictly and validates strictly against the schemas."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.renders = {name: cr.render(values) for name, values in cr.VARIANTS.items()}

    def test_lint_is_clean_in_strict_mode(self) -> None:
        for name, values in cr.VARIANTS.items():
            with self.subTest(variant=name):
                report = cr.lint(values)
                problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
                self.assertEqual(problems, [], f"helm lint --strict ({name})")

    def test_every_manifest_validates_strictly_against_kubernetes_schemas(self) -> None:
        seen = set()
        checked = 0
        for name, docs in self.renders.items():
            for doc in docs:
                if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
                    continue
                key = json.dumps(doc, sort_keys=True)
                if key in seen:
                    continue
                seen.add(key)
                for version in KUBE_VERSIONS:
                    with self.subTest(variant=name, kind=doc["kind"], name=doc["metadata"]["name"], k8s=version):
                        kube_validate(doc, version)
                        checked += 1
        self.assertGreater(checked, 40)

    def test_strict_validation_catches_a_misspelled_field(self) -> None:
        # Proves the validator is strict: a field Kubernetes does not know fails.
        dep = json.loads(json.dumps(one(self.renders["default"], "Deployment")))
        dep["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
        with self.assertRaises(kubernetes_validate.ValidationError):
            kube_validate(dep, "1.35.0")

    def test_kinds_rendered_by_default(self) -> None:
        kinds = sorted(d["kind"] for d in self.renders["default"])
        self.assertEqual(kinds, sorted([
            "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
            "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
            "Deployment", "Service", "PodDisruptionBudget"]))

    def test_optional_parts_appear_only_when_enabled(self) -> None:
        self.assertEqual(by_kind(self.renders["default"], "ServiceMonitor"), [])
        self.assertEqual(by_kind(self.renders["default"], "NetworkPolicy"), [])
        self.assertEqual(len(by_kind(self.renders["servicemonitor"], "ServiceMonitor")), 1)
        self.assertEqual(len(by_kind(self.renders["networkpolicy"], "NetworkPolicy")), 1)

    def test_bad_combinations_fail_to_render(self) -> None:
        for values, needle in [
            ({"ca": {"mode": "existingSecret"}}, "ca.existingSecret.name is required"),
            ({"ca": {"mode": "files"}}, "ca.files.secretName is required"),
            ({"leaderElection": {"enabled": False}}, "leaderElection.enabled must be true"),
            ({"signer": {"enabled": False}}, "nothing to serve: signer.enabled and crdSigners.enabled are both false"),
            ({"crdSigners": {"enabled": True, "trustBundles": False}},
             "trustBundle.enabled and crdSigners.trustBundles must be equal"),
        ]:
            with self.subTest(values=values):
                with self.assertRaisesRegex(helm.HelmError, re.escape(needle)):
                    cr.render(values)


class Schema(unittest.TestCase):
    """values.schema.json refuses unknown keys and wrong types, at every level."""

    def assert_rejected(self, values: dict[str, Any], needle: str) -> None:
        with self.assertRaises(helm.HelmValuesError) as err:
            cr.validate_schema(values)
        self.assertIn(needle, str(err.exception))
        # The same values also stop a render and fail lint, as `helm install` would.
        with self.assertRaises(helm.HelmError):
            cr.render(values)
        report = cr.lint(values)
        self.assertTrue(report["errors"] or any(m["severity"] >= 3 for m in report["messages"]))

    def test_defaults_and_variants_are_accepted(self) -> None:
        for name, values in cr.VARIANTS.items():
            with self.subTest(variant=name):
                cr.validate_schema(values)

    def test_unknown_top_level_key_is_rejected(self) -> None:
        self.assert_rejected({"replicaCount": 3}, "replicaCount")

    def test_unknown_nested_key_is_rejected(self) -> None:
        self.assert_rejected({"signer": {"signerName": "example.com/x"}}, "signerName")
        self.assert_rejected({"metrics": {"serviceMonitor": {"enable": True}}}, "enable")
        self.assert_rejected({"networkPolicy": {"metricsFrom": [{"podSelector": {"matchLabel": {}}}]}}, "matchLabel")

    def test_wrong_types_are_rejected(self) -> None:
        self.assert_rejected({"replicas": "2"}, "replicas")
        self.assert_rejected({"leaderElection": {"enabled": "yes"}}, "enabled")
        self.assert_rejected({"metrics": {"port": 80.5}}, "port")
        self.assert_rejected({"podLabels": {"team": 7}}, "team")

    def test_admission_policy_keys_are_checked(self) -> None:
        self.assert_rejected({"admissionPolicy": {"enabled": "yes"}}, "enabled")
        self.assert_rejected({"admissionPolicy": {"enable": True}}, "enable")

    def test_crd_signers_keys_and_types_are_checked(self) -> None:
        self.assert_rejected({"crdSigners": {"domain": ["podcert.dev"]}}, "domain")
        self.assert_rejected({"crdSigners": {"enabled": "yes"}}, "enabled")
        self.assert_rejected({"signer": {"enabled": "no"}}, "enabled")
        self.assert_rejected({"crdSigners": {"domains": "podcert.dev"}}, "domains")
        self.assert_rejected({"crdSigners": {"caSecrets": [7]}}, "caSecrets")
        self.assert_rejected({"crdSigners": {"allowBootstrap": 1}}, "allowBootstrap")

    def test_crd_signer_domains_must_be_dns_names(self) -> None:
        # An empty list would serve nothing; a path or wildcard would widen the <domain>/* grant;
        # Kubernetes' own domains would hand the signer the built-in signers.
        for bad in [[], ["podcert"], ["Podcert.dev"], ["podcert.dev/spiffe"], ["*.podcert.dev"],
                    ["-podcert.dev"], ["podcert.dev."], ["kubernetes.io"], ["x.kubernetes.io"], ["k8s.io"],
                    ["podcert.dev", "podcert.dev"], ["a" * 64 + ".dev"]]:
            with self.subTest(domains=bad):
                self.assert_rejected({"crdSigners": {"enabled": True, "domains": bad}}, "domains")
        cr.validate_schema({"crdSigners": {"domains": ["podcert.dev", "a-b.example.co.uk", "notkubernetes.io"]}})

    def test_crd_signer_names_and_namespaces_are_checked(self) -> None:
        self.assert_rejected({"crdSigners": {"caSecrets": ["Team_CA"]}}, "caSecrets")
        self.assert_rejected({"crdSigners": {"caSecrets": ["a", "a"]}}, "caSecrets")
        self.assert_rejected({"crdSigners": {"configMapNamespaces": ["team.a"]}}, "configMapNamespaces")
        self.assert_rejected({"crdSigners": {"configMapNames": []}}, "configMapNames")
        self.assert_rejected({"crdSigners": {"configMapNames": ["Bundle"]}}, "configMapNames")

    def test_bad_enums_and_formats_are_rejected(self) -> None:
        self.assert_rejected({"ca": {"mode": "vault"}}, "mode")
        self.assert_rejected({"signer": {"keyTypes": ["RSA2048"]}}, "keyTypes")
        self.assert_rejected({"signer": {"name": "no-domain"}}, "name")
        self.assert_rejected({"signer": {"maxLifetime": "one day"}}, "maxLifetime")

    def test_every_object_in_the_schema_refuses_unknown_keys(self) -> None:
        schema = json.loads((cr.CHART / "values.schema.json").read_text())
        self.assertEqual(schema["$schema"], "http://json-schema.org/draft-07/schema#")

        def walk(node: Any, path: str) -> None:
            if isinstance(node, dict):
                if node.get("type") == "object" or "properties" in node:
                    self.assertIn("additionalProperties", node, path)
                    # Maps of strings (labels, annotations) allow any key but only string values.
                    self.assertIn(node["additionalProperties"], (False, {"type": "string"}), path)
                for k, v in node.items():
                    walk(v, f"{path}/{k}")
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, f"{path}[{i}]")

        walk(schema, "#")


class Security(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.renders = {name: cr.render(values) for name, values in cr.VARIANTS.items()}

    def pod(self, variant: str = "default") -> dict[str, Any]:
        return one(self.renders[variant], "Deployment")["spec"]["template"]["spec"]

    def test_pods_pass_the_restricted_pod_security_standard(self) -> None:
        for name in self.renders:
            with self.subTest(variant=name):
                self.assertEqual(restricted_violations(self.pod(name)), [])

    def test_restricted_checker_catches_violations(self) -> None:
        pod = json.loads(json.dumps(self.pod()))
        c = pod["containers"][0]
        c["securityContext"]["allowPrivilegeEscalation"] = True
        c["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
        pod["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
        del c["securityContext"]["seccompProfile"]
        pod["volumes"] = [{"name": "h", "hostPath": {"path": "/"}}]
        self.assertEqual(len(restricted_violations(pod)), 5)

    def test_hardened_container(self) -> None:
        pod = self.pod()
        self.assertEqual(pod["securityContext"]["runAsNonRoot"], True)
        self.assertEqual(pod["securityContext"]["runAsUser"], 65532)
        self.assertEqual(pod["securityContext"]["runAsGroup"], 65532)
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertIs(pod["automountServiceAccountToken"], True)
        (c,) = pod["containers"]
        sc = c["securityContext"]
        self.assertEqual(sc["runAsNonRoot"], True)
        self.assertEqual((sc["runAsUser"], sc["runAsGroup"]), (65532, 65532))
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertEqual(c["resources"], {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})

    def test_probes_on_the_metrics_port(self) -> None:
        (c,) = self.pod()["containers"]
        self.assertEqual(c["ports"], [{"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"}])
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/livez", "port": "http-metrics"})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http-metrics"})

    def test_replicas_leader_election_and_pdb(self) -> None:
        dep = one(self.renders["default"], "Deployment")
        self.assertEqual(dep["spec"]["replicas"], 2)
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertIn("--leader-election=true", args)
        self.assertIn("--leader-election-namespace=podcert-system", args)
        self.assertIn("--leader-election-lease=podcert-signer", args)
        pdb = one(self.renders["default"], "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["minAvailable"], 1)
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"])
        # One replica: a PDB with minAvailable 1 would block every node drain.
        self.assertEqual(by_kind(self.renders["single-replica"], "PodDisruptionBudget"), [])

    def test_spread_across_nodes(self) -> None:
        pod = self.pod()
        (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        self.assertEqual(term["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname")
        self.assertEqual(pod["topologySpreadConstraints"][0]["whenUnsatisfiable"], "ScheduleAnyway")
        hard = self.pod("configmaps-and-options")["affinity"]["podAntiAffinity"]
        self.assertIn("requiredDuringSchedulingIgnoredDuringExecution", hard)

    def test_command_line_and_downward_api(self) -> None:
        (c,) = self.pod()["containers"]
        self.assertEqual(c["args"][0], "run")
        for arg in [f"--signer-name={SIGNER}", "--trust-domain=cluster.local", "--log-format=json",
                    "--metrics-addr=0.0.0.0:8080", "--ca-secret=podcert-system/podcert-signer-ca",
                    "--ca-bootstrap", "--ca-rotate-at-fraction=0.5", "--ca-propagation-delay=1h",
                    "--trust-bundle=true", "--trust-bundle-suffix=live"]:
            self.assertIn(arg, c["args"])
        env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
        self.assertEqual(env, {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"})

    def test_ca_modes(self) -> None:
        (c,) = self.pod("ca-existing-secret")["containers"]
        self.assertIn("--ca-secret=podcert-system/my-ca", c["args"])
        self.assertNotIn("--ca-bootstrap", c["args"])
        pod = self.pod("ca-files")
        (c,) = pod["containers"]
        self.assertTrue({"--ca-cert=/etc/podcert/ca/tls.crt", "--ca-key=/etc/podcert/ca/tls.key",
                         "--trust-anchors=/etc/podcert/ca/ca.crt"} <= set(c["args"]))
        self.assertFalse([a for a in c["args"] if a.startswith("--ca-secret")])
        self.assertEqual(c["volumeMounts"], [{"name": "ca", "mountPath": "/etc/podcert/ca", "readOnly": True}])
        self.assertEqual(pod["volumes"][0]["secret"]["secretName"], "my-ca-files")
        self.assertNotIn("volumes", self.pod())

    def test_ca_pkcs11(self) -> None:
        pod = self.pod("ca-pkcs11")
        (c,) = pod["containers"]
        uri = ("--ca-key=pkcs11:token=podcert;object=ca-2026?module-path=/opt/pkcs11/libsofthsm2.so"
               "&pin-source=file:/etc/podcert/pkcs11-pin/pin")
        self.assertIn(uri, c["args"])
        self.assertIn("--ca-cert=/etc/podcert/ca/tls.crt", c["args"])
        self.assertNotIn("--ca-key=/etc/podcert/ca/tls.key", c["args"])
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        self.assertEqual(mounts, {"ca": "/etc/podcert/ca", "pkcs11-module": "/opt/pkcs11",
                                  "pkcs11-pin": "/etc/podcert/pkcs11-pin", "pkcs11-data": "/var/lib/pkcs11"})
        volumes = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(volumes["pkcs11-module"]["persistentVolumeClaim"],
                         {"claimName": "pkcs11-module", "readOnly": True})
        self.assertEqual(volumes["pkcs11-pin"]["secret"]["secretName"], "hsm-pin")
        self.assertIn({"name": "SOFTHSM2_CONF", "value": "/var/lib/pkcs11/softhsm2.conf"}, c["env"])
        # A token key needs the image that can load a module (Dockerfile.pkcs11).
        self.assertEqual(c["image"], "podcert-signer:0.1.0-pkcs11")
        (default,) = self.pod()["containers"]
        self.assertEqual(default["image"], "podcert-signer:0.1.0")

    def args(self, variant: str) -> list[str]:
        (c,) = self.pod(variant)["containers"]
        return c["args"]

    def test_crd_mode_command_line(self) -> None:
        args = self.args("crd-only")
        self.assertEqual(args[0], "run")
        for arg in ["--crd-signers", "--signer-domain=podcert.dev", "--trust-bundle=true", "--ca-reload-interval=5s",
                    "--leader-election=true", "--leader-election-namespace=podcert-system", "--events=true"]:
            self.assertIn(arg, args)
        self.assertEqual([a for a in args if a.startswith(FLAG_SIGNER_ARGS)], [])
        # The CA Secrets of the objects are read from $POD_NAMESPACE, which the chart sets.
        (c,) = self.pod("crd-only")["containers"]
        self.assertIn({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                      c["env"])

    def test_crd_mode_ignores_the_flag_signers_ca(self) -> None:
        # ca.mode files would mount a Secret and fail without ca.files.secretName: not when the flag signer is off.
        pod = self.pod("crd-no-bundles")
        self.assertNotIn("volumes", pod)
        self.assertNotIn("volumeMounts", pod["containers"][0])
        args = self.args("crd-no-bundles")
        self.assertEqual([a for a in args if a.startswith(FLAG_SIGNER_ARGS)], [])
        self.assertIn("--trust-bundle=false", args)
        self.assertIn("--signer-domain=example.com", args)

    def test_both_signers_on_one_command_line(self) -> None:
        args = self.args("crd-and-flag")
        for arg in [f"--signer-name={SIGNER}", "--trust-domain=cluster.local", "--ca-bootstrap",
                    "--trust-bundle-suffix=live", "--trust-bundle-configmap-namespace=team-a",
                    "--crd-signers", "--signer-domain=podcert.dev,other.example", "--trust-bundle=true"]:
            self.assertIn(arg, args)
        self.assertEqual(len([a for a in args if a.startswith("--signer-domain")]), 1)
        self.assertNotIn("--crd-signers", self.args("default"))
        self.assertFalse([a for a in self.args("default") if a.startswith("--signer-domain")])

    def test_options_reach_the_command_line(self) -> None:
        (c,) = self.pod("configmaps-and-options")["containers"]
        for arg in ["--signer-name=example.com/workloads", "--key-types=ECDSAP256,ED25519", "--events=false",
                    "--trust-bundle-configmap-namespace=team-a", "--trust-bundle-configmap-namespace=team-b",
                    "--trust-bundle-label=tier=prod"]:
            self.assertIn(arg, c["args"])
        self.assertEqual(self.pod("configmaps-and-options")["priorityClassName"], "system-cluster-critical")

    def test_metrics_service_and_servicemonitor(self) -> None:
        svc = one(self.renders["servicemonitor"], "Service")
        self.assertEqual(svc["spec"]["ports"], [{"name": "http-metrics", "port": 8080,
                                                 "targetPort": "http-metrics", "protocol": "TCP"}])
        # ServiceMonitor is a CRD kubernetes-validate has no schema for: its shape is checked here.
        sm = one(self.renders["servicemonitor"], "ServiceMonitor")
        self.assertEqual(sm["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(set(sm), {"apiVersion", "kind", "metadata", "spec"})
        self.assertEqual(set(sm["spec"]), {"selector", "namespaceSelector", "endpoints"})
        labels = svc["metadata"]["labels"]
        for k, v in sm["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(labels.get(k), v)
        self.assertEqual(sm["spec"]["namespaceSelector"], {"matchNames": ["podcert-system"]})
        (ep,) = sm["spec"]["endpoints"]
        self.assertEqual(set(ep), {"port", "path", "interval", "scrapeTimeout"})
        self.assertEqual((ep["port"], ep["path"]), ("http-metrics", "/metrics"))
        self.assertEqual(sm["metadata"]["labels"]["release"], "prom")

    def test_prometheus_rule_and_grafana_dashboard(self) -> None:
        for kind in ("PrometheusRule", "ConfigMap"):
            self.assertEqual(by_kind(self.renders["default"], kind), [])
        # PrometheusRule is a CRD kubernetes-validate has no schema for: its shape is checked here.
        rule = one(self.renders["monitoring"], "PrometheusRule")
        self.assertEqual(rule["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(set(rule), {"apiVersion", "kind", "metadata", "spec"})
        self.assertEqual(set(rule["spec"]), {"groups"})
        self.assertEqual(rule["metadata"]["namespace"], "podcert-system")
        self.assertEqual(rule["metadata"]["labels"]["release"], "prom")
        source = (cr.CHART / "files" / "alerts.rules.yaml").read_text()
        url = "https://example.com/podcert/runbook.md"
        self.assertEqual(rule["spec"]["groups"], yaml.safe_load(source.replace("RUNBOOK_URL", url))["groups"])
        rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
        self.assertGreaterEqual(len(rules), 7)
        for r in rules:
            self.assertEqual(set(r) - {"for"}, {"alert", "expr", "labels", "annotations"})
            self.assertEqual(r["annotations"]["runbook_url"], f"{url}#{r['alert'].lower()}")
            self.assertIn(r["labels"]["severity"], ("critical", "warning"))
        cm = one(self.renders["monitoring"], "ConfigMap")
        self.assertEqual(cm["metadata"]["namespace"], "monitoring")
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(cm["metadata"]["annotations"], {"grafana_folder": "Security"})
        dashboard = json.loads(cm["data"]["podcert-signer.json"])
        self.assertEqual(dashboard, json.loads((cr.CHART / "files" / "dashboard.json").read_text()))
        self.assertEqual(dashboard["uid"], "podcert-signer")

    def test_network_policy(self) -> None:
        np = one(self.renders["networkpolicy"], "NetworkPolicy")
        dep = one(self.renders["networkpolicy"], "Deployment")
        self.assertEqual(np["spec"]["podSelector"], dep["spec"]["selector"])
        self.assertEqual(np["spec"]["policyTypes"], ["Ingress", "Egress"])
        (ingress,) = np["spec"]["ingress"]
        self.assertEqual(ingress["ports"], [{"port": "http-metrics", "protocol": "TCP"}])
        self.assertEqual(ingress["from"], cr.VARIANTS["networkpolicy"]["networkPolicy"]["metricsFrom"])
        (egress,) = np["spec"]["egress"]
        self.assertEqual(egress["ports"], [{"port": 6443, "protocol": "TCP"}])
        self.assertEqual(egress["to"], [{"ipBlock": {"cidr": "172.18.0.0/16"}}])


class SignerAcceptsTheArgs(unittest.TestCase):
    """The real binary parses every variant's command line (flags and values in sync with clap).

    Uses $PODCERT_SIGNER_BIN, else target/image-context/podcert-signer or target/debug/podcert-signer
    when built; .ci/run builds the image (and so the binary) first.
    """

    def binary(self) -> str:
        import os
        candidates = [os.environ.get("PODCERT_SIGNER_BIN", ""),
                      str(cr.ROOT / "target" / "image-context" / "podcert-signer"),
                      str(cr.ROOT / "target" / "debug" / "podcert-signer")]
        for c in candidates:
            if c and os.access(c, os.X_OK):
                return c
        self.skipTest("no podcert-signer binary built yet")

    def test_every_variant_parses_and_fails_only_at_the_kubeconfig(self) -> None:
        binary = self.binary()
        for name, values in cr.VARIANTS.items():
            with self.subTest(variant=name):
                (c,) = one(cr.render(values), "Deployment")["spec"]["template"]["spec"]["containers"]
                # Past argument parsing and configuration checks, `run` stops at the missing kubeconfig.
                r = subprocess.run([binary, *c["args"], "--kubeconfig", "/nonexistent/podcert-kubeconfig"],
                                   capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("/nonexistent/podcert-kubeconfig", r.stderr, r.stderr)
                self.assertNotIn("Usage:", r.stderr)

    def test_a_wrong_flag_is_caught(self) -> None:
        r = subprocess.run([self.binary(), "run", "--signer-name=a.b/c", "--trust-domain=td", "--ca-memry"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--ca-memry", r.stderr)


class Rbac(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.renders = {name: cr.render(values) for name, values in cr.VARIANTS.items()}

    @staticmethod
    def rules(docs: list[dict[str, Any]], kind: str) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
        """(namespace, group/resource, verbs, resourceNames) for every rule of every `kind`."""
        out = []
        for role in by_kind(docs, kind):
            ns = role["metadata"].get("namespace", "")
            for r in role["rules"]:
                for g in r["apiGroups"]:
                    for res in r["resources"]:
                        out.append((ns, f"{g}/{res}", tuple(r["verbs"]), tuple(r.get("resourceNames", ()))))
        return out

    def test_default_rbac_is_exactly_what_the_signer_uses(self) -> None:
        docs = self.renders["default"]
        self.assertEqual(sorted(self.rules(docs, "ClusterRole")), sorted([
            ("", "certificates.k8s.io/podcertificaterequests", ("list", "watch"), ()),
            ("", "certificates.k8s.io/podcertificaterequests/status", ("patch",), ()),
            ("", "certificates.k8s.io/signers", ("sign",), (SIGNER,)),
            ("", "certificates.k8s.io/signers", ("attest",), (SIGNER,)),
            ("", "certificates.k8s.io/clustertrustbundles", ("get", "update"), ("podcert.dev:spiffe:live", "podcert.dev:spiffe:preview")),
            ("", "certificates.k8s.io/clustertrustbundles", ("create",), ()),
            ("", "events.k8s.io/events", ("create", "patch"), ()),
        ]))
        self.assertEqual(sorted(self.rules(docs, "Role")), sorted([
            ("podcert-system", "coordination.k8s.io/leases", ("get", "update"), ("podcert-signer",)),
            ("podcert-system", "coordination.k8s.io/leases", ("create",), ()),
            ("podcert-system", "coordination.k8s.io/leases", ("get", "list", "update"), ()),
            ("podcert-system", "/secrets", ("get", "update"), ("podcert-signer-ca",)),
            ("podcert-system", "/secrets", ("create",), ()),
        ]))

    def test_no_wildcards_and_no_escalation_verbs(self) -> None:
        for name, docs in self.renders.items():
            for kind in ("ClusterRole", "Role"):
                for role in by_kind(docs, kind):
                    for r in role["rules"]:
                        with self.subTest(variant=name, role=role["metadata"]["name"], rule=r):
                            for field in ("apiGroups", "resources", "verbs"):
                                self.assertFalse([x for x in r.get(field, []) if "*" in x], field)
                            # The only "*": `<domain>/*` on signers, for the served domains.
                            starred = {x for x in r.get("resourceNames", []) if "*" in x}
                            if starred:
                                self.assertEqual(r["resources"], ["signers"])
                                self.assertLessEqual(starred, domain_signers(name))
                            self.assertFalse({"escalate", "bind", "impersonate", "delete", "deletecollection"}
                                             & set(r["verbs"]))
                            self.assertNotIn("nonResourceURLs", r)

    def test_sign_and_attest_only_for_the_served_signer_names(self) -> None:
        for name, docs in self.renders.items():
            signer = (cr.VARIANTS[name].get("signer") or {}).get("name", SIGNER)
            flag = {signer} if flag_on(name) else set()
            allowed = flag | domain_signers(name)
            granted: dict[str, set[str]] = {"sign": set(), "attest": set()}
            for ns, res, verbs, names in self.rules(docs, "ClusterRole") + self.rules(docs, "Role"):
                with self.subTest(variant=name, resource=res, verbs=verbs):
                    if {"sign", "attest", "approve"} & set(verbs):
                        self.assertEqual(res, "certificates.k8s.io/signers")
                        self.assertNotIn("approve", verbs)
                    if res.endswith("/signers"):
                        self.assertTrue(names)
                        self.assertLessEqual(set(names), allowed)
                        for v in verbs:
                            granted[v] |= set(names)
            with self.subTest(variant=name):
                # sign for exactly the flag signer's name and `<domain>/*` per served domain (each
                # domain once); attest only where trust bundles are published.
                self.assertEqual(granted["sign"], allowed)
                attest = (flag if flag_bundle(name) else set()) | (domain_signers(name) if crd_bundle(name) else set())
                self.assertEqual(granted["attest"], attest)
        no_bundle = self.rules(self.renders["single-replica"], "ClusterRole")
        self.assertFalse([r for r in no_bundle if "attest" in r[2] or "clustertrustbundles" in r[1]])
        self.assertEqual(domain_signers("crd-and-flag"), {"podcert.dev/*", "other.example/*"})

    def test_crd_rbac_is_exactly_what_the_crd_signers_use(self) -> None:
        docs = self.renders["crd-only"]
        self.assertEqual(sorted(self.rules(docs, "ClusterRole")), sorted([
            ("", "certificates.k8s.io/podcertificaterequests", ("list", "watch"), ()),
            ("", "certificates.k8s.io/podcertificaterequests/status", ("patch",), ()),
            ("", f"{CRD_GROUP}/{CRD_PLURAL}", ("list", "watch"), ()),
            ("", f"{CRD_GROUP}/{CRD_PLURAL}/status", ("patch",), ()),
            ("", "certificates.k8s.io/signers", ("sign",), ("podcert.dev/*",)),
            ("", "certificates.k8s.io/signers", ("attest",), ("podcert.dev/*",)),
            ("", "certificates.k8s.io/clustertrustbundles", ("get", "update"), ()),
            ("", "certificates.k8s.io/clustertrustbundles", ("create",), ()),
            ("", "/namespaces", ("list", "watch"), ()),
            ("", "/pods", ("get",), ()),
            ("", "/services", ("list", "watch"), ()),
            ("", "events.k8s.io/events", ("create", "patch"), ()),
        ]))
        self.assertEqual(sorted(self.rules(docs, "Role")), sorted([
            ("podcert-system", "coordination.k8s.io/leases", ("get", "update"), ("podcert-signer",)),
            ("podcert-system", "coordination.k8s.io/leases", ("create",), ()),
            ("podcert-system", "coordination.k8s.io/leases", ("get", "list", "update"), ()),
            ("podcert-system", "/secrets", ("get", "update"), ("team-ca", "web-ca", "other-ca")),
            ("podcert-system", "/secrets", ("create",), ()),
            ("team-a", "/configmaps", ("get", "update"), ("podcert-trust-bundle",)),
            ("team-a", "/configmaps", ("create",), ()),
        ]))

    def test_crd_rules_only_in_crd_mode(self) -> None:
        for name, docs in self.renders.items():
            cluster = self.rules(docs, "ClusterRole")
            with self.subTest(variant=name):
                crd_rules = [r for r in cluster if r[1].startswith(f"{CRD_GROUP}/")]
                namespaces = [r for r in cluster if r[1] == "/namespaces"]
                if crd_values(name):
                    self.assertEqual(sorted(crd_rules), sorted([
                        ("", f"{CRD_GROUP}/{CRD_PLURAL}", ("list", "watch"), ()),
                        ("", f"{CRD_GROUP}/{CRD_PLURAL}/status", ("patch",), ())]))
                    self.assertEqual(namespaces, [("", "/namespaces", ("list", "watch"), ())])
                else:
                    self.assertEqual(crd_rules, [])
                    self.assertEqual(namespaces, [])
                # The only core resources granted cluster-wide: the namespaces watch, and with
                # crdSigners.podData a pod GET and a Services watch.
                core = {r[1] for r in cluster if r[1].startswith("/")}
                self.assertLessEqual(core, {"/namespaces", "/pods", "/services"})

    def test_pods_and_services_only_with_pod_data(self) -> None:
        seen = False
        for name, docs in self.renders.items():
            cluster = self.rules(docs, "ClusterRole")
            namespaced = self.rules(docs, "Role")
            with self.subTest(variant=name):
                pod_rules = sorted(r for r in cluster if r[1] in ("/pods", "/services"))
                if crd_values(name).get("podData"):
                    seen = True
                    # get only (no list or watch of pods), and Services read, never written.
                    self.assertEqual(pod_rules, [("", "/pods", ("get",), ()),
                                                 ("", "/services", ("list", "watch"), ())])
                else:
                    self.assertEqual(pod_rules, [])
                self.assertFalse([r for r in namespaced if r[1] in ("/pods", "/services")])
        self.assertTrue(seen, "no variant sets crdSigners.podData")

    def test_cluster_trust_bundle_rules_only_with_trust_bundles(self) -> None:
        for name, docs in self.renders.items():
            ctb = [r for r in self.rules(docs, "ClusterRole") if r[1] == "certificates.k8s.io/clustertrustbundles"]
            with self.subTest(variant=name):
                expected = []
                if flag_bundle(name):
                    signer = (cr.VARIANTS[name].get("signer") or {}).get("name", SIGNER)
                    suffix = (cr.VARIANTS[name].get("trustBundle") or {}).get("suffix", "live")
                    preview = "preview" if suffix == "live" else f"{suffix}-preview"
                    prefix = signer.replace('/', ':')
                    expected.append(("", "certificates.k8s.io/clustertrustbundles", ("get", "update"),
                                     (f"{prefix}:{suffix}", f"{prefix}:{preview}")))
                if crd_bundle(name):
                    # Names come from the objects: get/update cannot be limited by name.
                    expected.append(("", "certificates.k8s.io/clustertrustbundles", ("get", "update"), ()))
                if expected:
                    expected.append(("", "certificates.k8s.io/clustertrustbundles", ("create",), ()))
                self.assertEqual(sorted(ctb), sorted(expected))
        self.assertTrue(crd_values("crd-no-bundles") and not crd_bundle("crd-no-bundles"))

    def test_secrets_only_by_name_in_the_release_namespace(self) -> None:
        for name, docs in self.renders.items():
            cluster = [r for r in self.rules(docs, "ClusterRole") if r[1] == "/secrets"]
            self.assertEqual(cluster, [], name)
            for ns, res, verbs, names in self.rules(docs, "Role"):
                if res != "/secrets":
                    continue
                with self.subTest(variant=name, verbs=verbs):
                    self.assertEqual(ns, "podcert-system")
                    self.assertFalse({"list", "watch", "patch", "delete"} & set(verbs))
                    if {"get", "update"} & set(verbs):
                        self.assertTrue(names)
                    if "update" in verbs:  # the rotation state, only when the signer owns the CA
                        crd = cr.VARIANTS[name].get("crdSigners", {})
                        crd_bootstrap = crd.get("enabled") and crd.get("allowBootstrap", True)
                        self.assertTrue(crd_bootstrap or cr.VARIANTS[name].get("ca", {}).get("mode", "bootstrap") == "bootstrap")
        secret_rules = lambda v: [r for r in self.rules(self.renders[v], "Role") if r[1] == "/secrets"]  # noqa: E731
        self.assertEqual(secret_rules("ca-existing-secret"), [("podcert-system", "/secrets", ("get",), ("my-ca",))])
        self.assertEqual(secret_rules("ca-files"), [])  # the kubelet mounts it; the signer reads no Secret
        # Bootstrapped CAs of objects rotate: the leader writes the state back (update by name).
        self.assertEqual(secret_rules("crd-only"), [
            ("podcert-system", "/secrets", ("get", "update"), ("team-ca", "web-ca", "other-ca")),
            ("podcert-system", "/secrets", ("create",), ())])
        # No bootstrap allowed: read only; the flag signer's CA (ca.mode files) adds nothing when it is off.
        self.assertEqual(secret_rules("crd-no-bundles"), [("podcert-system", "/secrets", ("get",), ("ext-ca",))])
        self.assertEqual(sorted(secret_rules("crd-and-flag")), sorted([
            ("podcert-system", "/secrets", ("get", "update"), ("podcert-signer-ca",)),
            ("podcert-system", "/secrets", ("get", "update"), ("team-ca",)),
            ("podcert-system", "/secrets", ("create",), ())]))
        # No Secret names listed: nothing to read, so no bootstrap create either.
        only_crd = cr.render({"signer": {"enabled": False}, "crdSigners": {"enabled": True}})
        self.assertFalse([r for r in self.rules(only_crd, "Role") if r[1] == "/secrets"])

    def test_configmaps_only_where_the_bundle_is_published(self) -> None:
        for name, docs in self.renders.items():
            flag_ns = (cr.VARIANTS[name].get("trustBundle") or {}).get("configMapNamespaces", []) \
                if flag_bundle(name) else []
            flag_names = ((cr.VARIANTS[name].get("trustBundle") or {}).get("configMapName", "podcert-trust-bundle"),)
            crd = crd_values(name)
            crd_ns = crd["configMapNamespaces"] if crd_bundle(name) else []
            expected = {("Role", "podcert-signer-trust-bundle", ns) for ns in flag_ns} | \
                {("Role", "podcert-signer-crd-trust-bundle", ns) for ns in crd_ns}
            roles = {("Role", d["metadata"]["name"], d["metadata"]["namespace"]) for d in by_kind(docs, "Role")
                     if any("configmaps" in r["resources"] for r in d["rules"])}
            with self.subTest(variant=name):
                self.assertEqual(roles, expected)
                for role in by_kind(docs, "Role"):
                    names = flag_names if role["metadata"]["name"].endswith("-signer-trust-bundle") \
                        else tuple(crd.get("configMapNames", ()))
                    for ns, res, verbs, rnames in self.rules([role], "Role"):
                        if res != "/configmaps":
                            continue
                        self.assertTrue(set(verbs) <= {"get", "update", "create"})
                        if set(verbs) & {"get", "update"}:
                            self.assertEqual(rnames, names)
                        else:
                            self.assertEqual(verbs, ("create",))
                no_cm_cluster = [r for r in self.rules(docs, "ClusterRole") if r[1] == "/configmaps"]
                self.assertEqual(no_cm_cluster, [])
        # Flag and CRD ConfigMap Roles side by side in one namespace, under different names.
        both = {(d["metadata"]["name"], d["metadata"]["namespace"])
                for d in by_kind(self.renders["crd-and-flag"], "Role")}
        self.assertLessEqual({("podcert-signer-trust-bundle", "team-a"), ("podcert-signer-crd-trust-bundle", "team-a"),
                              ("podcert-signer-crd-trust-bundle", "team-b")}, both)
        self.assertFalse([r for r in self.rules(self.renders["crd-no-bundles"], "Role") if r[1] == "/configmaps"])

    def test_no_events_rule_when_events_are_off(self) -> None:
        self.assertFalse([r for r in self.rules(self.renders["configmaps-and-options"], "ClusterRole")
                          if r[1] == "events.k8s.io/events"])

    def test_leases_only_with_leader_election(self) -> None:
        self.assertFalse([r for r in self.rules(self.renders["single-replica"], "Role") if "leases" in r[1]])

    def test_member_leases_only_in_active_active_mode(self) -> None:
        unnamed = [r for r in self.rules(self.renders["leader-mode"], "Role")
                   if r[1] == "coordination.k8s.io/leases" and not r[3] and r[2] != ("create",)]
        self.assertEqual(unnamed, [])
        args = one(self.renders["leader-mode"], "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertIn("--ha-mode=leader", args)
        self.assertFalse([a for a in args if a.startswith("--hedge-delay")])
        default = one(self.renders["default"], "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        self.assertIn("--ha-mode=active-active", default)
        self.assertIn("--hedge-delay=2s", default)

    def test_bindings_grant_the_roles_to_the_service_account_only(self) -> None:
        for name, docs in self.renders.items():
            roles = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs
                     if d["kind"] in ("ClusterRole", "Role")}
            for b in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
                with self.subTest(variant=name, binding=b["metadata"]["name"]):
                    self.assertEqual(b["subjects"], [{"kind": "ServiceAccount", "name": "podcert-signer",
                                                      "namespace": "podcert-system"}])
                    ref = b["roleRef"]
                    ns = None if ref["kind"] == "ClusterRole" else b["metadata"]["namespace"]
                    self.assertIn((ref["kind"], ref["name"], ns), roles)


class AdmissionPolicy(unittest.TestCase):
    """The ValidatingAdmissionPolicy that confines the signer's ClusterTrustBundle writes.

    Its CEL is compiled and evaluated with cel-python here; testkit/tests/apiserver_admission_policy.rs
    runs the rendered policy in the API emulator against real requests.
    """

    POLICY = "podcert-signer-cluster-trust-bundles"
    USER = "system:serviceaccount:podcert-system:podcert-signer"

    @classmethod
    def setUpClass(cls) -> None:
        cls.renders = {name: cr.render(values) for name, values in cr.VARIANTS.items()}

    def policy(self, docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        return one(docs, "ValidatingAdmissionPolicy"), one(docs, "ValidatingAdmissionPolicyBinding")

    def evaluate(self, expr: str, op: str, obj: Any = None, old: Any = None, user: str = USER) -> Any:
        import celpy
        env = celpy.Environment()
        prog = env.program(env.compile(expr))
        return prog.evaluate({
            "object": celpy.json_to_cel(obj), "oldObject": celpy.json_to_cel(old),
            "request": celpy.json_to_cel({"operation": op, "userInfo": {"username": user, "groups": []}})})

    def allowed(self, docs: list[dict[str, Any]], op: str, new: str | None, old: str | None,
                user: str = USER) -> bool:
        """Whether the policy lets `user` do `op` on a bundle whose signerName goes from old to new."""
        vap, _ = self.policy(docs)
        bundle = lambda s: {"spec": {"trustBundle": "x", **({"signerName": s} if s else {})}}  # noqa: E731
        obj = bundle(new) if op != "DELETE" else None
        prev = bundle(old) if op != "CREATE" else None
        for c in vap["spec"]["matchConditions"]:
            if not self.evaluate(c["expression"], op, obj, prev, user):
                return True  # not the signer: the policy does not apply
        return all(self.evaluate(v["expression"], op, obj, prev, user) for v in vap["spec"]["validations"])

    def test_rendered_where_the_signer_writes_bundles(self) -> None:
        for name, docs in self.renders.items():
            with self.subTest(variant=name):
                expected = flag_bundle(name) or crd_bundle(name)
                self.assertEqual(len(by_kind(docs, "ValidatingAdmissionPolicy")), int(expected))
                self.assertEqual(len(by_kind(docs, "ValidatingAdmissionPolicyBinding")), int(expected))
        off = cr.render({"admissionPolicy": {"enabled": False}})
        self.assertEqual(by_kind(off, "ValidatingAdmissionPolicy"), [])
        self.assertEqual(by_kind(off, "ValidatingAdmissionPolicyBinding"), [])

    def test_binding_denies_and_matches_only_the_signers_service_account(self) -> None:
        vap, binding = self.policy(self.renders["default"])
        self.assertEqual(vap["metadata"]["name"], self.POLICY)
        self.assertEqual(binding["spec"], {"policyName": self.POLICY, "validationActions": ["Deny"]})
        spec = vap["spec"]
        self.assertEqual(spec["failurePolicy"], "Fail")
        self.assertEqual(spec["matchConstraints"], {"resourceRules": [{
            "apiGroups": ["certificates.k8s.io"], "apiVersions": ["*"], "resources": ["clustertrustbundles"],
            "operations": ["CREATE", "UPDATE", "DELETE"]}]})
        self.assertEqual(spec["matchConditions"], [{
            "name": "signer-service-account", "expression": f"request.userInfo.username == '{self.USER}'"}])
        self.assertEqual({v["reason"] for v in spec["validations"]}, {"Forbidden"})
        # The service account's name follows serviceAccount.name.
        renamed = self.policy(cr.render({"serviceAccount": {"name": "custom-sa"}}))[0]
        self.assertIn("'system:serviceaccount:podcert-system:custom-sa'",
                      renamed["spec"]["matchConditions"][0]["expression"])

    def test_cel_compiles(self) -> None:
        import celpy
        env = celpy.Environment()
        for name, docs in self.renders.items():
            for vap in by_kind(docs, "ValidatingAdmissionPolicy"):
                for item in vap["spec"]["matchConditions"] + vap["spec"]["validations"]:
                    with self.subTest(variant=name, expression=item["expression"]):
                        env.compile(item["expression"])
        with self.assertRaises(celpy.CELParseError):
            env.compile("object.spec.signerName in [")

    def test_flag_signer_writes_only_its_own_name(self) -> None:
        docs = self.renders["default"]
        own = SIGNER
        self.assertTrue(self.allowed(docs, "CREATE", own, None))
        self.assertTrue(self.allowed(docs, "UPDATE", own, own))
        self.assertTrue(self.allowed(docs, "DELETE", None, own))
        for other in (None, "podcert.dev/other", "other.example/spiffe", "podcert.dev/spiffe2"):
            with self.subTest(signer_name=other):
                self.assertFalse(self.allowed(docs, "CREATE", other, None))
                self.assertFalse(self.allowed(docs, "UPDATE", other, other))
                self.assertFalse(self.allowed(docs, "DELETE", None, other))
                # Taking over another bundle by giving it the signer's name.
                self.assertFalse(self.allowed(docs, "UPDATE", own, other))
                # Admins and other users are not evaluated.
                self.assertTrue(self.allowed(docs, "UPDATE", other, other, user="admin"))

    def test_crd_signers_write_only_under_their_domains(self) -> None:
        docs = self.renders["crd-and-flag"]
        for ok in (SIGNER, "podcert.dev/team-a", "other.example/x"):
            with self.subTest(signer_name=ok):
                self.assertTrue(self.allowed(docs, "CREATE", ok, None))
                self.assertTrue(self.allowed(docs, "UPDATE", ok, ok))
        for bad in (None, "", "podcert.dev", "podcert.devx/a", "sub.podcert.dev/a", "example.com/x"):
            with self.subTest(signer_name=bad):
                self.assertFalse(self.allowed(docs, "CREATE", bad, None))
                self.assertFalse(self.allowed(docs, "UPDATE", "podcert.dev/team-a", bad))
        # Only the flag signer's exact name when CRD-mode bundles are off.
        self.assertFalse(self.allowed(self.renders["default"], "CREATE", "podcert.dev/team-a", None))

    def test_rbac_names_bundles_where_the_names_are_known(self) -> None:
        # Flag mode: get/update only on <signer name with / as :>:<suffix>; create cannot be
        # limited by name in RBAC (the policy covers it). CRD mode: the names come from objects.
        for name, docs in self.renders.items():
            for role in by_kind(docs, "ClusterRole"):
                for r in role["rules"]:
                    if "clustertrustbundles" not in r["resources"]:
                        continue
                    with self.subTest(variant=name, rule=r):
                        if r["verbs"] == ["create"]:
                            self.assertNotIn("resourceNames", r)
                        elif not crd_bundle(name):
                            # The live bundle and its preview (SPIFFE Filesystem Delivery canarying).
                            self.assertEqual(len(r["resourceNames"]), 2)
                            self.assertTrue(r["resourceNames"][0].endswith(":live"))
                            self.assertTrue(r["resourceNames"][1].endswith(":preview"))


class Committed(unittest.TestCase):
    def test_rendered_rbac_is_up_to_date(self) -> None:
        self.assertTrue(cr.RENDERED_RBAC.exists(), "run scripts/check-chart.sh --update")
        self.assertEqual(cr.RENDERED_RBAC.read_text(), cr.rbac_yaml(),
                         f"{cr.RENDERED_RBAC.relative_to(cr.ROOT)} drifted: run scripts/check-chart.sh --update")

    def test_rendered_rbac_holds_only_rbac(self) -> None:
        docs = [d for d in yaml.safe_load_all(cr.RENDERED_RBAC.read_text()) if d]
        self.assertEqual([d["kind"] for d in docs], cr.RBAC_KINDS)

    def test_rendered_crd_rbac_is_up_to_date(self) -> None:
        self.assertTrue(cr.RENDERED_RBAC_CRD.exists(), "run scripts/check-chart.sh --update")
        self.assertEqual(cr.RENDERED_RBAC_CRD.read_text(), cr.rbac_crd_yaml(),
                         f"{cr.RENDERED_RBAC_CRD.relative_to(cr.ROOT)} drifted: run scripts/check-chart.sh --update")

    def test_rendered_crd_rbac_holds_only_rbac_and_validates(self) -> None:
        docs = [d for d in yaml.safe_load_all(cr.RENDERED_RBAC_CRD.read_text()) if d]
        self.assertEqual([(d["kind"], d["metadata"].get("namespace")) for d in docs], [
            ("ServiceAccount", "podcert-system"), ("ClusterRole", None), ("ClusterRoleBinding", None),
            ("Role", "team-a"), ("Role", "podcert-system"), ("RoleBinding", "team-a"),
            ("RoleBinding", "podcert-system"), ("ValidatingAdmissionPolicy", None),
            ("ValidatingAdmissionPolicyBinding", None)])
        for doc in docs:
            for version in KUBE_VERSIONS:
                with self.subTest(kind=doc["kind"], name=doc["metadata"]["name"], k8s=version):
                    kube_validate(doc, version)

    def test_chart_crds_match_the_repository_crds(self) -> None:
        ours = {p.name: p.read_text() for p in (cr.CHART / "crds").glob("*.y*ml")}
        top = cr.ROOT / "crds"
        theirs = {p.name: p.read_text() for p in top.glob("*.y*ml")} if top.is_dir() else {}
        self.assertEqual(ours, theirs, "charts/podcert-signer/crds drifted: run scripts/check-chart.sh --update")


class Crds(unittest.TestCase):
    """The chart's crds/ (copied from the repository's crds/) validate and match the RBAC."""

    def docs(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((cr.CHART / "crds").glob("*.y*ml")):
            out += [d for d in yaml.safe_load_all(path.read_text()) if d]
        if not out:
            self.skipTest("no CRD manifests in charts/podcert-signer/crds yet (scripts/check-chart.sh --update)")
        return out

    def test_crds_validate_strictly(self) -> None:
        for doc in self.docs():
            self.assertEqual((doc["apiVersion"], doc["kind"]),
                             ("apiextensions.k8s.io/v1", "CustomResourceDefinition"))
            for version in KUBE_VERSIONS:
                with self.subTest(name=doc["metadata"]["name"], k8s=version):
                    kube_validate(doc, version)

    def test_pod_certificate_signer_crd_is_what_the_rbac_names(self) -> None:
        crd = pod_certificate_signer_crd(self.docs())
        self.assertEqual(crd["metadata"]["name"], f"{CRD_PLURAL}.{CRD_GROUP}")
        self.assertEqual(crd["spec"]["scope"], "Cluster")  # the ClusterRole's list/watch covers it
        self.assertEqual(crd["spec"]["names"]["kind"], "PodCertificateSigner")
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == CRD_VERSION]
        self.assertTrue(version["served"])
        self.assertIn("status", version.get("subresources", {}))  # podcertificatesigners/status: patch


def pod_certificate_signer_crd(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (crd,) = [d for d in docs if d["kind"] == "CustomResourceDefinition"
              and d["spec"]["group"] == CRD_GROUP and d["spec"]["names"]["plural"] == CRD_PLURAL]
    return crd


def strict_crd_check(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the CRD's structural schema does not declare (the apiserver would prune them)."""
    bad = []
    if isinstance(obj, dict) and "properties" in schema:
        for k, v in obj.items():
            if k in schema["properties"]:
                bad += strict_crd_check(v, schema["properties"][k], f"{path}.{k}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("additionalProperties"):
                bad.append(f"{path}.{k}")
    elif isinstance(obj, list) and "items" in schema:
        for i, v in enumerate(obj):
            bad += strict_crd_check(v, schema["items"], f"{path}[{i}]")
    return bad


class Notes(unittest.TestCase):
    def test_notes_hold_a_valid_pod_with_a_certificate_volume(self) -> None:
        notes = cr.render_texts({})["podcert-signer/templates/NOTES.txt"]
        start = notes.index("apiVersion: v1\nkind: Pod")
        snippet = notes[start:notes.index("\n\n", start)]
        pod = yaml.safe_load(snippet)
        for version in KUBE_VERSIONS:
            kube_validate(pod, version)
        sources = pod["spec"]["volumes"][0]["projected"]["sources"]
        self.assertEqual(sources[0]["podCertificate"],
                         {"signerName": SIGNER, "keyType": "ECDSAP256", "credentialBundlePath": "credentials.pem"})
        self.assertEqual(sources[1]["clusterTrustBundle"], {
            "signerName": SIGNER, "labelSelector": {"matchLabels": {"podcert.dev/trust-bundle": "live"}},
            "path": "trust-bundle.pem"})

    @staticmethod
    def signer_example(values: dict[str, Any]) -> dict[str, Any]:
        notes = cr.render_texts(values)["podcert-signer/templates/NOTES.txt"]
        start = notes.index("apiVersion: podcert.dev/v1alpha1\nkind: PodCertificateSigner")
        return yaml.safe_load(notes[start:notes.index("\n\n", start)])

    def test_notes_show_a_pod_certificate_signer_the_rbac_allows(self) -> None:
        for variant in ("crd-only", "crd-and-flag", "crd-no-bundles"):
            crd = crd_values(variant)
            with self.subTest(variant=variant):
                obj = self.signer_example(cr.VARIANTS[variant])
                self.assertEqual((obj["apiVersion"], obj["kind"]),
                                 (f"{CRD_GROUP}/{CRD_VERSION}", "PodCertificateSigner"))
                self.assertEqual(obj["spec"]["signerName"], f"{crd['domains'][0]}/team-a")
                secret = obj["spec"]["ca"]["secret"]
                self.assertEqual(secret["name"], crd["caSecrets"][0])
                self.assertEqual(secret.get("bootstrap", False), crd["allowBootstrap"])
                self.assertEqual(obj["spec"].get("trustBundle", {}).get("enabled", True), crd["trustBundles"])
        notes = cr.render_texts({"signer": {"enabled": False}, "crdSigners": {"enabled": True}})
        self.assertIn("must be listed in crdSigners.caSecrets (empty now: add it and upgrade)",
                      notes["podcert-signer/templates/NOTES.txt"])
        # The flag signer's pod example only when it runs; no PodCertificateSigner hint by default.
        self.assertNotIn("kind: Pod\n", cr.render_texts(cr.VARIANTS["crd-only"])["podcert-signer/templates/NOTES.txt"])
        self.assertNotIn("PodCertificateSigner", cr.render_texts({})["podcert-signer/templates/NOTES.txt"])

    def test_notes_example_matches_the_crd_schema(self) -> None:
        import jsonschema
        docs = [d for p in sorted((cr.CHART / "crds").glob("*.y*ml")) for d in yaml.safe_load_all(p.read_text()) if d]
        if not docs:
            self.skipTest("no CRD manifests in charts/podcert-signer/crds yet")
        (version,) = [v for v in pod_certificate_signer_crd(docs)["spec"]["versions"] if v["name"] == CRD_VERSION]
        schema = version["schema"]["openAPIV3Schema"]
        for variant in ("crd-only", "crd-no-bundles"):
            with self.subTest(variant=variant):
                obj = self.signer_example(cr.VARIANTS[variant])
                jsonschema.validate(obj, schema)
                # apiVersion, kind and metadata are the apiserver's, not in the CRD's schema.
                body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
                self.assertEqual(strict_crd_check(body, schema), [])


class DemoManifests(unittest.TestCase):
    """demo/manifests validate like the chart, and each workload mounts what the demo needs."""

    def docs(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(cr.DEMO_MANIFESTS.glob("*.yaml")):
            out += [d for d in yaml.safe_load_all(path.read_text()) if d]
        return out

    def test_validate_strictly(self) -> None:
        docs = self.docs()
        self.assertTrue(docs)
        for doc in docs:
            for version in KUBE_VERSIONS:
                with self.subTest(kind=doc["kind"], name=doc["metadata"]["name"], k8s=version):
                    kube_validate(doc, version)

    def test_workloads_mount_a_pod_certificate_and_the_trust_bundle(self) -> None:
        deps = by_kind(self.docs(), "Deployment")
        self.assertEqual(sorted(d["metadata"]["namespace"] for d in deps), ["demo-a", "demo-b"])
        for dep in deps:
            pod = dep["spec"]["template"]["spec"]
            with self.subTest(namespace=dep["metadata"]["namespace"]):
                self.assertEqual(restricted_violations(pod), [])
                sources = [s for v in pod["volumes"] for s in v.get("projected", {}).get("sources", [])]
                pc = [s["podCertificate"] for s in sources if "podCertificate" in s]
                ctb = [s["clusterTrustBundle"] for s in sources if "clusterTrustBundle" in s]
                self.assertEqual([p["signerName"] for p in pc], [SIGNER])
                self.assertEqual([c["signerName"] for c in ctb], [SIGNER])
                # SPIFFE Filesystem Delivery's labels, as the signer sets them on its live bundle.
        self.assertEqual(ctb[0]["labelSelector"], {"matchLabels": {
            "k8s.spiffe.io/canarying": "live",
            "k8s.spiffe.io/workload-trust-domain": "cluster.local",
            "k8s.spiffe.io/peer-trust-domain": "cluster.local"}})


class KindConfig(unittest.TestCase):
    """demo/kind.sh writes the gates and runtime-config the contract names for each version."""

    def config(self, version: str) -> dict[str, Any]:
        out = subprocess.run(["bash", str(cr.ROOT / "demo" / "kind.sh"), "config", "--k8s", version],
                             check=True, capture_output=True, text=True).stdout
        return yaml.safe_load(out)

    def test_feature_gates_and_runtime_config_per_version(self) -> None:
        pcr = {"1.34": "v1alpha1", "1.35": "v1beta1", "1.36": "v1beta1", "1.37": "v1beta1"}
        for version, pcr_version in pcr.items():
            with self.subTest(k8s=version):
                c = self.config(version)
                self.assertEqual((c["kind"], c["apiVersion"]), ("Cluster", "kind.x-k8s.io/v1alpha4"))
                self.assertEqual(c["featureGates"], {"PodCertificateRequest": True, "ClusterTrustBundle": True,
                                                     "ClusterTrustBundleProjection": True})
                self.assertEqual(c["runtimeConfig"], {
                    f"certificates.k8s.io/{pcr_version}/podcertificaterequests": "true",
                    "certificates.k8s.io/v1beta1/clustertrustbundles": "true"})
                self.assertEqual([n["role"] for n in c["nodes"]], ["control-plane", "worker", "worker"])

    def test_unsupported_version_is_refused(self) -> None:
        r = subprocess.run(["bash", str(cr.ROOT / "demo" / "kind.sh"), "config", "--k8s", "1.33"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("1.34 1.35 1.36 1.37", r.stderr)


def update() -> None:
    cr.RENDERED_RBAC.parent.mkdir(exist_ok=True)
    cr.RENDERED_RBAC.write_text(cr.rbac_yaml())
    print(f"wrote {cr.RENDERED_RBAC.relative_to(cr.ROOT)}")
    cr.RENDERED_RBAC_CRD.write_text(cr.rbac_crd_yaml())
    print(f"wrote {cr.RENDERED_RBAC_CRD.relative_to(cr.ROOT)}")
    crds = cr.CHART / "crds"
    for p in crds.glob("*.y*ml"):
        p.unlink()
    top = cr.ROOT / "crds"
    if top.is_dir():
        for p in sorted(top.glob("*.y*ml")):
            (crds / p.name).write_text(p.read_text())
            print(f"copied {p.relative_to(cr.ROOT)} into {crds.relative_to(cr.ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        unittest.main()
