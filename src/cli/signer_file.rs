//! Reading a PodCertificateSigner from a file (`sign --signer`): YAML or JSON, checked the way
//! the signer checks it in the cluster, and stricter on one point: a field the CRD does not
//! know is an error here (the apiserver would drop it silently, and a typo in a policy is
//! exactly what this command is for catching).

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;

use podcert_core::policy::SignerConfig;
use podcert_k8s::crd::{self, PodCertificateSigner};

const MAX_FILE: u64 = 1024 * 1024;

/// The policy of the PodCertificateSigner in `path`.
pub fn load(path: &Path) -> anyhow::Result<SignerConfig> {
    let obj = read(path)?;
    crd::convert::signer_config(&obj.spec)
        .with_context(|| format!("PodCertificateSigner in {}", path.display()))
}

/// Parses and checks the object in `path`.
pub fn read(path: &Path) -> anyhow::Result<PodCertificateSigner> {
    let data = podcert_runtime::ca_files::read_file_bounded(path, MAX_FILE)
        .with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(data)
        .map_err(|_| anyhow::anyhow!("reading {}: not UTF-8 text", path.display()))?;
    parse(&text).with_context(|| format!("reading the PodCertificateSigner in {}", path.display()))
}

/// Parses one PodCertificateSigner from YAML or JSON text.
pub fn parse(text: &str) -> anyhow::Result<PodCertificateSigner> {
    // YAML is a superset of JSON: one parser for both.
    // Depth, alias and size budgets: a hostile file is refused quickly (issue 13, item 7).
    let value: Value = podcert_core::request::wire::parse_yaml(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("not valid YAML or JSON: {}", one_line(&e.to_string())))?;
    if !value.is_object() {
        bail!("expected one object with apiVersion, kind and spec");
    }
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let want = format!("{}/{}", crd::GROUP, crd::VERSION);
    if kind != crd::KIND || api_version != want {
        bail!(
            "expected apiVersion {want} and kind {}, found apiVersion {api_version:?} and kind {kind:?}",
            crd::KIND
        );
    }
    let obj: PodCertificateSigner =
        serde_json::from_value(value.clone()).context("the object does not match the CRD")?;
    let parsed = serde_json::to_value(&obj).context("re-encoding the object")?;
    let unknown = unknown_fields(&value["spec"], &parsed["spec"], "spec");
    if !unknown.is_empty() {
        bail!(
            "unknown field(s) {} (see `kubectl explain podcertificatesigner.spec` or `podcert-signer crd`)",
            unknown.join(", ")
        );
    }
    Ok(obj)
}

/// Paths present in `input` but not in its parsed-and-re-encoded form (serde skipped them).
fn unknown_fields(input: &Value, parsed: &Value, path: &str) -> Vec<String> {
    match (input, parsed) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .flat_map(|(k, v)| match b.get(k) {
                None => vec![format!("{path}.{k}")],
                Some(pv) => unknown_fields(v, pv, &format!("{path}.{k}")),
            })
            .collect(),
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .enumerate()
            .flat_map(|(i, (x, y))| unknown_fields(x, y, &format!("{path}[{i}]")))
            .collect(),
        _ => Vec::new(),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: podcert.dev/v1alpha1
kind: PodCertificateSigner
metadata: {name: web}
spec:
  signerName: example.com/web
  trustDomain: example.org
  dnsNames:
    allowed: ["{serviceAccount}.{namespace}.svc"]
  ca: {secret: {name: web-ca, bootstrap: true}}
"#;

    #[test]
    fn reads_a_signer_and_applies_defaults() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.spec.spiffe_id, "ns/{namespace}/sa/{serviceAccount}");
        assert_eq!(s.spec.max_lifetime, "24h");
        assert!(s.spec.trust_bundle.enabled);
        let cfg = crd::convert::signer_config(&s.spec).unwrap();
        assert_eq!(
            cfg.dns.unwrap().annotation_key,
            podcert_core::policy::DEFAULT_DNS_ANNOTATION_KEY
        );
    }

    #[test]
    fn refuses_typos_wrong_kinds_and_bad_values() {
        let typo = GOOD.replace("dnsNames:", "dnsName:");
        let e = parse(&typo).unwrap_err().to_string();
        assert!(e.contains("spec.dnsName"), "{e}");
        let nested = GOOD.replace("allowed:", "allow:");
        let e = parse(&nested).unwrap_err().to_string();
        assert!(e.contains("spec.dnsNames.allow"), "{e}");
        let kind = GOOD.replace("kind: PodCertificateSigner", "kind: ClusterIssuer");
        assert!(parse(&kind)
            .unwrap_err()
            .to_string()
            .contains("ClusterIssuer"));
        let bad = parse(&GOOD.replace(".svc\"]", ".svc\", \"*\"]")).unwrap();
        let e = crd::convert::signer_config(&bad.spec).unwrap_err();
        assert_eq!(e.field, "dnsNames.allowed[1]");
    }
}
