//! `podcert-signer sign --signer FILE`: every PodCertificateSigner policy rule, offline, through
//! the binary, with the README cookbook files in examples/signers/ (so the cookbook is tested)
//! and Go-built kubelet requests. Includes the annotation forgeries peers fell for.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use x509_parser::prelude::*;

use crate::fixtures::vectors::object as vector;
use crate::fixtures::{ca_init, BIN};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/signers")
        .join(name)
}

struct Ca(tempfile::TempDir);

fn ca() -> Ca {
    let d = tempfile::tempdir().unwrap();
    ca_init(&d.path().join("ca"));
    Ca(d)
}

fn signer_name(file: &Path) -> String {
    let v: Value = serde_saphyr::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    v["spec"]["signerName"].as_str().unwrap().to_string()
}

/// A vector addressed to the file's signer, with `tweak` applied.
fn request(vector_name: &str, file: &Path, tweak: impl FnOnce(&mut Value)) -> Value {
    let mut obj = vector(vector_name);
    obj["spec"]["signerName"] = json!(signer_name(file));
    tweak(&mut obj);
    obj
}

fn run(ca: &Ca, file: &Path, obj: &Value, extra: &[&str]) -> Output {
    let dir = ca.0.path().join("ca");
    let mut child = Command::new(BIN)
        .arg("sign")
        .arg("--ca-cert")
        .arg(dir.join("ca.crt"))
        .arg("--ca-key")
        .arg(dir.join("ca.key"))
        .arg("--signer")
        .arg(file)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The binary may refuse its flags before reading stdin: a closed pipe is not an error here.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(obj).unwrap().as_bytes());
    child.wait_with_output().unwrap()
}

/// The decision: (type, reason, message, leaf DER when issued).
fn decide(ca: &Ca, file: &Path, obj: &Value, extra: &[&str]) -> (String, String, String, Vec<u8>) {
    let out = run(ca, file, obj, extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &v["status"]["conditions"][0];
    let der = v["status"]["certificateChain"]
        .as_str()
        .map(|pem| {
            let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            p.contents
        })
        .unwrap_or_default();
    (
        c["type"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
        c["message"].as_str().unwrap().into(),
        der,
    )
}

/// (URIs, DNS names) of a leaf.
fn sans(der: &[u8]) -> (Vec<String>, Vec<String>) {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::URI(u) => uris.push(u.to_string()),
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                _ => {}
            }
        }
    }
    (uris, dns)
}

fn lifetime_secs(der: &[u8]) -> i64 {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()
}

fn with_dns(names: &str) -> impl FnOnce(&mut Value) + '_ {
    move |o: &mut Value| {
        o["spec"]["unverifiedUserAnnotations"] = json!({ "podcert.dev/dns-names": names });
    }
}

#[test]
fn per_namespace_identity_uses_only_the_namespace() {
    let ca = ca();
    let f = example("per-namespace.yaml");
    let (t, _, _, der) = decide(&ca, &f, &request("ED25519-pop-v1beta1", &f, |_| {}), &[]);
    assert_eq!(t, "Issued");
    assert_eq!(
        sans(&der),
        (
            vec!["spiffe://prod.example.org/ns/team-1".to_string()],
            vec![]
        )
    );
}

#[test]
fn service_dns_names_are_issued_when_they_match_the_templates() {
    let ca = ca();
    let f = example("service-dns.yaml");
    let req = request(
        "ED25519-pop-v1beta1",
        &f,
        with_dns("sa-1.team-1.svc, sa-1.team-1.svc.cluster.local"),
    );
    let (t, _, _, der) = decide(&ca, &f, &req, &[]);
    assert_eq!(t, "Issued");
    let (uris, dns) = sans(&der);
    assert_eq!(
        uris,
        vec!["spiffe://services.example.org/ns/team-1/sa/sa-1"]
    );
    assert_eq!(
        dns,
        vec![
            "pod-1.team-1.pod.cluster.local",
            "sa-1.team-1.svc",
            "sa-1.team-1.svc.cluster.local"
        ]
    );
    // Not asking still gets the always-added name, and only it.
    let (_, _, _, der) = decide(&ca, &f, &request("ED25519-stub-v1", &f, |_| {}), &[]);
    assert_eq!(sans(&der).1, vec!["pod-1.team-1.pod.cluster.local"]);
}

#[test]
fn annotation_forgeries_are_denied_with_the_reason() {
    let ca = ca();
    let f = example("service-dns.yaml");
    let cases: &[(&str, &str, &str)] = &[
        // Another namespace's Service.
        ("sa-1.team-2.svc", "DnsNameNotAllowed", "matches none"),
        // Another service account's Service in the same namespace.
        ("sa-2.team-1.svc", "DnsNameNotAllowed", "matches none"),
        // The API server's name.
        (
            "kubernetes.default.svc",
            "DnsNameNotAllowed",
            "matches none",
        ),
        // A wildcard.
        ("*.team-1.svc", "DnsNameNotAllowed", "wildcard"),
        // A suffix smuggled after an allowed name.
        (
            "sa-1.team-1.svc.evil.example",
            "DnsNameNotAllowed",
            "matches none",
        ),
        // Case games and malformed names.
        (
            "SA-1.team-1.svc",
            "DnsNameNotAllowed",
            "not a valid DNS name",
        ),
        (
            "sa-1.team-1.svc.",
            "DnsNameNotAllowed",
            "not a valid DNS name",
        ),
        // One good name does not carry a bad one.
        (
            "sa-1.team-1.svc,sa-1.team-2.svc",
            "DnsNameNotAllowed",
            "team-2",
        ),
    ];
    for (names, reason, needle) in cases {
        let req = request("ED25519-pop-v1beta1", &f, with_dns(names));
        let (t, r, m, der) = decide(&ca, &f, &req, &[]);
        assert_eq!(
            (t.as_str(), r.as_str()),
            ("Denied", *reason),
            "{names}: {m}"
        );
        assert!(m.contains(needle), "{names}: {m}");
        assert!(der.is_empty());
    }
    // An annotation key the signer does not know, even next to the right one.
    let req = request("ED25519-pop-v1beta1", &f, |o| {
        o["spec"]["unverifiedUserAnnotations"] = json!({
            "podcert.dev/dns-names": "sa-1.team-1.svc",
            "podcert.dev/extra-sans": "evil.example",
        });
    });
    let (t, r, m, _) = decide(&ca, &f, &req, &[]);
    assert_eq!(
        (t.as_str(), r.as_str()),
        ("Denied", "UnknownUserAnnotation")
    );
    assert!(m.contains("podcert.dev/extra-sans"), "{m}");
    // Without a dnsNames block, the DNS key itself is unknown.
    let plain = example("per-namespace.yaml");
    let req = request("ED25519-pop-v1beta1", &plain, with_dns("sa-1.team-1.svc"));
    let (_, r, _, _) = decide(&ca, &plain, &req, &[]);
    assert_eq!(r, "UnknownUserAnnotation");
}

#[test]
fn a_signer_restricted_to_one_namespace() {
    let ca = ca();
    let f = example("one-namespace.yaml");
    let in_payments = |sa: &'static str| {
        move |o: &mut Value| {
            o["metadata"]["namespace"] = json!("payments");
            o["spec"]["serviceAccountName"] = json!(sa);
        }
    };
    // Another namespace: denied by the selector (the name label is added like the apiserver does).
    let (t, r, m, _) = decide(
        &ca,
        &f,
        &request("ECDSAP256-pop-v1beta1", &f, |_| {}),
        &["--namespace-labels", "env=prod"],
    );
    assert_eq!((t.as_str(), r.as_str()), ("Denied", "NamespaceNotAllowed"));
    assert!(m.contains("team-0"), "{m}");
    // Its own namespace, an allowed account.
    let req = request("ECDSAP256-pop-v1beta1", &f, in_payments("api"));
    let (t, _, _, der) = decide(&ca, &f, &req, &["--namespace-labels", ""]);
    assert_eq!(t, "Issued");
    assert_eq!(
        sans(&der).0,
        vec!["spiffe://payments.example.org/ns/payments/sa/api"]
    );
    // Its own namespace, the denied default account.
    let req = request("ECDSAP256-pop-v1beta1", &f, in_payments("default"));
    let (_, r, m, _) = decide(&ca, &f, &req, &["--namespace-labels", ""]);
    assert_eq!(r, "ServiceAccountNotAllowed");
    assert!(m.contains("payments/default"), "{m}");
    // The selector needs the namespace's labels: refusing to guess is an error, not a decision.
    let req = request("ECDSAP256-pop-v1beta1", &f, in_payments("api"));
    let out = run(&ca, &f, &req, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--namespace-labels"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn rsa_only_and_ed25519_only() {
    let ca = ca();
    let rsa = example("rsa-only.yaml");
    let (t, r, m, _) = decide(
        &ca,
        &rsa,
        &request("ED25519-pop-v1beta1", &rsa, |_| {}),
        &[],
    );
    assert_eq!((t.as_str(), r.as_str()), ("Denied", "UnsupportedKeyType"));
    assert!(m.contains("RSA3072, RSA4096"), "{m}");
    let (t, _, _, der) = decide(
        &ca,
        &rsa,
        &request("RSA3072-pop-v1beta1", &rsa, |_| {}),
        &[],
    );
    assert_eq!(t, "Issued");
    assert!(lifetime_secs(&der) <= 12 * 3600);

    let ed = example("ed25519-only.yaml");
    let (_, r, _, _) = decide(&ca, &ed, &request("ECDSAP256-stub-v1", &ed, |_| {}), &[]);
    assert_eq!(r, "UnsupportedKeyType");
    let (t, _, _, der) = decide(&ca, &ed, &request("ED25519-stub-v1", &ed, |_| {}), &[]);
    assert_eq!(t, "Issued");
    assert_eq!(lifetime_secs(&der), 6 * 3600);
}

#[test]
fn a_template_over_pod_and_node_names() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pods.yaml");
    std::fs::write(
        &f,
        concat!(
            "apiVersion: podcert.dev/v1alpha1\nkind: PodCertificateSigner\nmetadata: {name: pods}\n",
            "spec:\n  signerName: podcert.dev/pods\n  trustDomain: td\n",
            "  spiffeID: \"ns/{namespace}/sa/{serviceAccount}/node/{nodeName}/pod/{podName}\"\n",
            "  ca: {secret: {name: x}}\n",
        ),
    )
    .unwrap();
    let req = request("ED25519-pop-v1beta1", &f, |_| {});
    let node = req["spec"]["nodeName"].as_str().unwrap().to_string();
    let (_, _, _, der) = decide(&ca, &f, &req, &[]);
    assert_eq!(
        sans(&der).0,
        vec![format!(
            "spiffe://td/ns/team-1/sa/sa-1/node/{node}/pod/pod-1"
        )]
    );
}

#[test]
fn bad_signer_files_are_one_clear_error() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let obj = vector("ED25519-pop-v1beta1");
    let cases = [
        ("typo", "spec:\n  signerNam: podcert.dev/x\n", "signerName"),
        (
            "unknown",
            "spec:\n  signerName: podcert.dev/x\n  trustDomain: td\n  ca: {secret: {name: x}}\n  dnsName: {}\n",
            "spec.dnsName",
        ),
        (
            "template",
            "spec:\n  signerName: podcert.dev/x\n  trustDomain: td\n  spiffeID: \"ns/{annotations}\"\n  ca: {secret: {name: x}}\n",
            "spec.spiffeID",
        ),
        (
            "lifetime",
            "spec:\n  signerName: podcert.dev/x\n  trustDomain: td\n  maxLifetime: 30m\n  ca: {secret: {name: x}}\n",
            "spec.maxLifetime",
        ),
        (
            "selector",
            "spec:\n  signerName: podcert.dev/x\n  trustDomain: td\n  namespaceSelector: {matchExpressions: [{key: a, operator: Equals}]}\n  ca: {secret: {name: x}}\n",
            "Equals",
        ),
    ];
    for (name, body, needle) in cases {
        let f = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &f,
            format!("apiVersion: podcert.dev/v1alpha1\nkind: PodCertificateSigner\nmetadata: {{name: x}}\n{body}"),
        )
        .unwrap();
        let out = run(&ca, &f, &obj, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{name}: expected {needle:?} in {err}");
    }
}

/// Writes a signer file with `spiffe_id` and runs `sign --signer` on a good request.
fn sign_with_template(ca: &Ca, dir: &Path, spiffe_id: &str) -> Output {
    let f = dir.join("t.yaml");
    std::fs::write(
        &f,
        format!(
            "apiVersion: podcert.dev/v1alpha1\nkind: PodCertificateSigner\nmetadata: {{name: t}}\n\
             spec:\n  signerName: podcert.dev/t\n  trustDomain: td\n  spiffeID: {spiffe_id:?}\n  ca: {{secret: {{name: x}}}}\n"
        ),
    )
    .unwrap();
    run(ca, &f, &request("ED25519-pop-v1beta1", &f, |_| {}), &[])
}

/// Issue 13, item 6: templates whose IDs collide across namespaces or accounts, or put a pod
/// name where a reader expects the account, are refused before anything is signed.
#[test]
fn templates_that_collide_or_mislead_are_refused() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        // The reviewer's attack: a pod named `admin` running as `web` got .../sa/admin.
        ("ns/{namespace}/sa/{podName}", "{serviceAccount}"),
        ("sa/{serviceAccount}", "{namespace}"),
        ("pod/{podName}", "{namespace}"),
        ("{namespace}-{serviceAccount}", "whole path segment"),
        ("ns/{serviceAccount}/sa/{namespace}", "names {namespace}"),
        (
            "ns/{namespace}/sa/{serviceAccount}/pod/{nodeName}",
            "names {podName}",
        ),
        ("{podName}/ns/{namespace}/sa/{serviceAccount}", "come after"),
    ];
    for (template, needle) in cases {
        let out = sign_with_template(&ca, dir.path(), template);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{template} accepted");
        assert!(out.stdout.is_empty(), "{template}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("spec.spiffeID"), "{template}: {err}");
        assert!(
            err.contains(needle),
            "{template}: expected {needle:?} in {err}"
        );
    }
    // What stays allowed: per account (any literal frame), per namespace, narrowed by pod.
    for (template, want) in [
        ("{namespace}/{serviceAccount}", "spiffe://td/team-1/sa-1"),
        ("ns/{namespace}", "spiffe://td/ns/team-1"),
        (
            "ns/{namespace}/sa/{serviceAccount}/pod/{podName}",
            "spiffe://td/ns/team-1/sa/sa-1/pod/pod-1",
        ),
    ] {
        let out = sign_with_template(&ca, dir.path(), template);
        assert!(
            out.status.success(),
            "{template}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let (_, p) = x509_parser::pem::parse_x509_pem(
            v["status"]["certificateChain"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        assert_eq!(sans(&p.contents).0, vec![want.to_string()], "{template}");
    }
}

/// Issue 13, item 9: a `/` (or anything else the apiserver refuses) in an identity field of
/// an offline request is Denied, never turned into extra SPIFFE ID segments.
#[test]
fn identity_values_the_apiserver_would_refuse_are_denied() {
    let ca = ca();
    let f = example("per-namespace.yaml");
    let plain = example("service-dns.yaml");
    let (f, plain) = (f.as_path(), plain.as_path());
    type Tweak = fn(&mut Value);
    let cases: [(&Path, Tweak, &str); 4] = [
        (
            plain,
            |o| o["spec"]["serviceAccountName"] = json!("a/b"),
            "serviceAccountName",
        ),
        (
            plain,
            |o| o["metadata"]["namespace"] = json!("team-1/sa/admin"),
            "namespace",
        ),
        (
            f,
            |o| o["metadata"]["namespace"] = json!("a/b"),
            "namespace",
        ),
        (
            plain,
            |o| o["spec"]["podName"] = json!("pod-1/x"),
            "podName",
        ),
    ];
    for (file, tweak, field) in cases {
        let req = request("ED25519-pop-v1beta1", file, tweak);
        let (t, r, m, der) = decide(&ca, file, &req, &[]);
        assert_eq!(
            (t.as_str(), r.as_str()),
            ("Denied", "InvalidIdentity"),
            "{m}"
        );
        assert!(
            m.contains(field) && m.contains("not a valid Kubernetes name"),
            "{m}"
        );
        assert!(der.is_empty());
    }
}

/// The cookbook files can be applied together, next to the chart's flag signer
/// (trust domain cluster.local): no two share a trust domain or a CA Secret.
#[test]
fn cookbook_signers_share_no_trust_domain_or_ca() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/signers");
    let mut domains = vec!["cluster.local".to_string()];
    let mut secrets = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let v: Value =
            serde_saphyr::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap();
        let td = v["spec"]["trustDomain"].as_str().unwrap().to_string();
        assert!(!domains.contains(&td), "trust domain {td} used twice");
        domains.push(td);
        let secret = v["spec"]["ca"]["secret"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!secrets.contains(&secret), "CA Secret {secret} used twice");
        secrets.push(secret);
    }
    assert_eq!(domains.len(), 8);
}

fn services_file() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/services/team-1.yaml")
        .to_string_lossy()
        .into_owned()
}

fn with_services_annotation(names: &str) -> impl FnOnce(&mut Value) + '_ {
    move |o: &mut Value| {
        o["spec"]["unverifiedUserAnnotations"] = json!({ "podcert.dev/services": names });
    }
}

/// Issue 18: DNS names from the Services that select the pod, and the forgeries around them.
#[test]
fn from_services_names_come_only_from_services_that_select_the_pod() {
    let ca = ca();
    let f = example("from-services.yaml");
    let svc = services_file();
    let plain = request("ED25519-pop-v1beta1", &f, |_| {});
    let decide_with = |req: &Value, labels: &str| {
        decide(&ca, &f, req, &["--pod-labels", labels, "--services", &svc])
    };
    // Selected by web only: web-canary's selector has a key (track) the pod lacks, and the
    // team-2 Service with the same selector is in another namespace.
    let (t, _, m, der) = decide_with(&plain, "app=web");
    assert_eq!(t, "Issued", "{m}");
    assert_eq!(
        sans(&der).1,
        vec!["web.team-1.svc", "web.team-1.svc.cluster.local"]
    );
    let (_, _, _, der) = decide_with(&plain, "app=web,track=canary");
    assert_eq!(
        sans(&der).1,
        vec![
            "web.team-1.svc",
            "web.team-1.svc.cluster.local",
            "web-canary.team-1.svc",
            "web-canary.team-1.svc.cluster.local"
        ]
    );
    // Narrowed by the pod's annotation.
    let req = request(
        "ED25519-pop-v1beta1",
        &f,
        with_services_annotation("web-canary"),
    );
    let (_, _, _, der) = decide_with(&req, "app=web,track=canary");
    assert_eq!(
        sans(&der).1,
        vec![
            "web-canary.team-1.svc",
            "web-canary.team-1.svc.cluster.local"
        ]
    );
    // Forgeries: a Service selecting other pods, one whose selector the pod matches only in
    // part, one of another namespace.
    for (name, needle) in [
        ("db", "does not select"),
        ("web-canary", "does not select"),
        ("payments", "no Service team-1/payments"),
    ] {
        let req = request("ED25519-pop-v1beta1", &f, with_services_annotation(name));
        let (t, r, m, der) = decide_with(&req, "app=web");
        assert_eq!(
            (t.as_str(), r.as_str()),
            ("Denied", "ServiceDoesNotSelectPod"),
            "{name}: {m}"
        );
        assert!(m.contains(needle), "{name}: {m}");
        assert!(der.is_empty());
    }
    // required: a pod no Service selects is denied once the wait is over...
    let (t, r, _, _) = decide_with(&plain, "app=batch");
    assert_eq!((t.as_str(), r.as_str()), ("Denied", "NoServiceSelectsPod"));
    // ...and a request created just now is left pending (not decided), never denied.
    let now = ::time::OffsetDateTime::now_utc()
        .format(&::time::format_description::well_known::Rfc3339)
        .unwrap();
    let fresh = request("ED25519-pop-v1beta1", &f, |o| {
        o["metadata"]["creationTimestamp"] = json!(now)
    });
    let out = run(
        &ca,
        &f,
        &fresh,
        &["--pod-labels", "app=batch", "--services", &svc],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pending") && err.contains("waiting for a Service"),
        "{err}"
    );
    // The pod's labels and the Services are needed: asked for, never guessed.
    for (args, needle) in [
        (vec!["--services", svc.as_str()], "--pod-labels"),
        (vec!["--pod-labels", "app=web"], "--services"),
    ] {
        let out = run(&ca, &f, &plain, &args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
}

/// Issue 18: pod labels in the SPIFFE ID and DNS names, and the pod selector.
#[test]
fn pod_label_identity_needs_the_label_and_the_selector() {
    let ca = ca();
    let f = example("pod-labels.yaml");
    let req = request("ED25519-pop-v1beta1", &f, |_| {});
    let (t, _, m, der) = decide(
        &ca,
        &f,
        &req,
        &[
            "--pod-labels",
            "podcert.dev/identity=app,app.kubernetes.io/name=checkout",
        ],
    );
    assert_eq!(t, "Issued", "{m}");
    assert_eq!(
        sans(&der),
        (
            vec!["spiffe://apps.example.org/ns/team-1/app/checkout".to_string()],
            vec!["checkout.team-1.svc".to_string()]
        )
    );
    for (labels, reason, needle) in [
        (
            "app.kubernetes.io/name=checkout",
            "PodNotAllowed",
            "podcert.dev/identity=app",
        ),
        (
            "podcert.dev/identity=app",
            "MissingPodLabel",
            "app.kubernetes.io/name",
        ),
        // A valid label value, but no DNS label.
        (
            "podcert.dev/identity=app,app.kubernetes.io/name=Checkout",
            "InvalidPodLabel",
            "Checkout",
        ),
    ] {
        let (t, r, m, der) = decide(&ca, &f, &req, &["--pod-labels", labels]);
        assert_eq!(
            (t.as_str(), r.as_str()),
            ("Denied", reason),
            "{labels}: {m}"
        );
        assert!(m.contains(needle), "{labels}: {m}");
        assert!(der.is_empty());
    }
    // A value Kubernetes would refuse never reaches the policy.
    let out = run(
        &ca,
        &f,
        &req,
        &[
            "--pod-labels",
            "podcert.dev/identity=app,app.kubernetes.io/name=a/b",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a label"));
}
