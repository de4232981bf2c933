//! PodCertificateSigner objects end to end: the real `podcert-signer run --crd-signers`, under
//! the chart's CRD-mode RBAC (charts/podcert-signer/rendered/rbac-crd.yaml), with the committed
//! CRD (crds/) installed in the API emulator.

use std::path::Path;
use std::time::Duration;

use crate::fixtures::e2e::*;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use podcert_k8s::crd::PodCertificateSigner;
use podcert_testkit::apiserver::{KubeVersion, ServerConfig, TestServer};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn repo_file(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A 1.37 emulator with the CRD, namespaces team-a (env=prod) and team-b, and the chart's RBAC.
async fn setup() -> TestServer {
    let server = TestServer::start(ServerConfig {
        version: KubeVersion::V1_37,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    server
        .load_yaml(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {env: prod}}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: team-0}\n",
        )
        .unwrap();
    prepare(&server, &[]);
    server
        .load_yaml(&repo_file("crds/podcertificatesigner.yaml"))
        .unwrap();
    server
        .load_yaml(&repo_file("charts/podcert-signer/rendered/rbac-crd.yaml"))
        .unwrap();
    server
}

fn signers(server: &TestServer) -> Api<PodCertificateSigner> {
    Api::all(server.admin_client())
}

async fn apply(server: &TestServer, yaml: &str) {
    let obj: PodCertificateSigner = serde_saphyr::from_str(yaml).unwrap();
    let api = signers(server);
    let name = obj.metadata.name.clone().unwrap();
    match api.get_opt(&name).await.unwrap() {
        None => {
            api.create(&PostParams::default(), &obj).await.unwrap();
        }
        Some(_) => {
            let patch = json!({ "spec": serde_json::to_value(&obj.spec).unwrap() });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    }
}

/// Waits until the object's Ready condition has `status` (and `reason`, if given).
async fn wait_condition(
    server: &TestServer,
    name: &str,
    status: &str,
    reason: Option<&str>,
) -> PodCertificateSigner {
    let api = signers(server);
    eventually(
        WAIT,
        || format!("{name}: no Ready={status} {reason:?}"),
        || async {
            let o = api.get_opt(name).await.unwrap()?;
            let st = o.status.as_ref()?;
            let c = st.conditions.iter().find(|c| c.type_ == "Ready")?;
            (c.status == status
                && reason.is_none_or(|r| c.reason == r)
                && st.observed_generation == o.metadata.generation)
                .then_some(o.clone())
        },
    )
    .await
}

/// Waits for an Event about PodCertificateSigner `name` with `reason` and `type_`.
async fn wait_event(server: &TestServer, name: &str, reason: &str, type_: &str) {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::all(server.admin_client());
    eventually(
        WAIT,
        || format!("no {type_} {reason} event for {name}"),
        || async {
            let events = api.list(&Default::default()).await.unwrap();
            events
                .items
                .iter()
                .any(|e| {
                    e.regarding.as_ref().is_some_and(|r| {
                        r.name.as_deref() == Some(name)
                            && r.kind.as_deref() == Some("PodCertificateSigner")
                    }) && e.reason.as_deref() == Some(reason)
                        && e.type_.as_deref() == Some(type_)
                })
                .then_some(())
        },
    )
    .await
}

/// Creates a Go-built request (vector `vector`) for `signer`, from `ns`/`sa`, with user annotations.
async fn request(
    server: &TestServer,
    vector: &str,
    name: &str,
    signer: &str,
    ns: &str,
    sa: &str,
    annotations: Value,
) -> (String, String) {
    let v = vectors().into_iter().find(|v| v["name"] == vector).unwrap();
    let mut obj = v["object"].clone();
    obj["spec"]["signerName"] = json!(signer);
    obj["spec"]["serviceAccountName"] = json!(sa);
    if !annotations.is_null() {
        obj["spec"]["unverifiedUserAnnotations"] = annotations;
    }
    let version = create_request(server, obj, ns, name).await;
    (version, name.to_string())
}

fn spawn(server: &TestServer, dir: &Path, name: &str, extra: &[&str]) -> Signer {
    let mut args = vec![
        "--crd-signers",
        "--signer-domain",
        "podcert.dev",
        "--namespace",
        SIGNER_NS,
        "--leader-election=false",
        "--ca-reload-interval",
        "1s",
    ];
    args.extend_from_slice(extra);
    spawn_run(server, dir, name, &args)
}

const WEB: &str = r#"
apiVersion: podcert.dev/v1alpha1
kind: PodCertificateSigner
metadata: {name: web}
spec:
  signerName: podcert.dev/web
  trustDomain: example.org
  dnsNames:
    allowed: ["{serviceAccount}.{namespace}.svc"]
    always: ["{podName}.{namespace}.pod"]
  ca: {secret: {name: web-ca, bootstrap: true}}
  trustBundle: {labels: {team: web}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_object_issues_with_its_policy_and_follows_edits_and_deletion() {
    let server = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn(&server, dir.path(), "signer-0", &[]);
    signer.wait_ready(WAIT).await;
    apply(&server, WEB).await;
    let obj = wait_condition(&server, "web", "True", Some("Ready")).await;
    let st = obj.status.unwrap();
    assert_eq!(
        st.trust_bundle_name.as_deref(),
        Some("podcert.dev:web:live")
    );
    let fingerprint = st.ca_fingerprint.clone().unwrap();
    assert!(st.ca_not_after.is_some());

    // The bundle is published with the object's labels, from the bootstrapped Secret's CA.
    let ctb: Api<DynamicObject> = Api::all_with(server.admin_client(), &ctb_resource("v1beta1"));
    let bundle = eventually(
        WAIT,
        || "no bundle".into(),
        || async { ctb.get_opt("podcert.dev:web:live").await.unwrap() },
    )
    .await;
    assert_eq!(
        bundle
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("team")
            .map(String::as_str),
        Some("web")
    );
    wait_event(&server, "web", "Ready", "Normal").await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(server.admin_client(), SIGNER_NS);
    assert!(secrets.get_opt("web-ca").await.unwrap().is_some());

    // Issued with the object's identity and DNS rules.
    let dns = json!({"podcert.dev/dns-names": "api.team-a.svc"});
    let (v, n) = request(
        &server,
        "ED25519-pop-v1beta1",
        "r1",
        "podcert.dev/web",
        "team-a",
        "api",
        dns,
    )
    .await;
    let r1 = wait_terminal(&server, &v, "team-a", &n, WAIT).await;
    assert_eq!(condition(&r1), ("Issued".into(), "Issued".into()));
    assert_eq!(
        sans(&r1),
        (
            vec!["spiffe://example.org/ns/team-a/sa/api".to_string()],
            vec!["pod-1.team-a.pod".to_string(), "api.team-a.svc".to_string()]
        )
    );

    // Forgeries against the emulator too: another namespace's Service, a wildcard, a stray key.
    for (i, ann, reason) in [
        (
            2,
            json!({"podcert.dev/dns-names": "api.team-b.svc"}),
            "DnsNameNotAllowed",
        ),
        (
            3,
            json!({"podcert.dev/dns-names": "*.team-a.svc"}),
            "DnsNameNotAllowed",
        ),
        (
            4,
            json!({"example.com/sans": "api.team-a.svc"}),
            "UnknownUserAnnotation",
        ),
    ] {
        let (v, n) = request(
            &server,
            "ED25519-pop-v1beta1",
            &format!("r{i}"),
            "podcert.dev/web",
            "team-a",
            "api",
            ann,
        )
        .await;
        let o = wait_terminal(&server, &v, "team-a", &n, WAIT).await;
        assert_eq!(condition(&o), ("Denied".into(), reason.into()), "r{i}");
    }

    // An edit changes the next issuance, without a restart and without a new CA.
    apply(
        &server,
        &WEB.replace(
            "trustDomain: example.org",
            "trustDomain: example.org\n  spiffeID: \"workload/{namespace}/{serviceAccount}/{podName}\"\n  namespaceSelector: {matchLabels: {env: prod}}\n  serviceAccounts: {deny: [\"team-a/default\"]}",
        ),
    )
    .await;
    let obj = wait_condition(&server, "web", "True", Some("Ready")).await;
    assert_eq!(obj.status.unwrap().ca_fingerprint.unwrap(), fingerprint);
    let (v, n) = request(
        &server,
        "ED25519-pop-v1beta1",
        "r5",
        "podcert.dev/web",
        "team-a",
        "api",
        Value::Null,
    )
    .await;
    let r5 = wait_terminal(&server, &v, "team-a", &n, WAIT).await;
    assert_eq!(
        sans(&r5).0,
        vec!["spiffe://example.org/workload/team-a/api/pod-1"]
    );
    let (v, n) = request(
        &server,
        "ED25519-pop-v1beta1",
        "r6",
        "podcert.dev/web",
        "team-b",
        "api",
        Value::Null,
    )
    .await;
    let r6 = wait_terminal(&server, &v, "team-b", &n, WAIT).await;
    assert_eq!(
        condition(&r6),
        ("Denied".into(), "NamespaceNotAllowed".into())
    );
    let (v, n) = request(
        &server,
        "ED25519-pop-v1beta1",
        "r7",
        "podcert.dev/web",
        "team-a",
        "default",
        Value::Null,
    )
    .await;
    let r7 = wait_terminal(&server, &v, "team-a", &n, WAIT).await;
    assert_eq!(
        condition(&r7),
        ("Denied".into(), "ServiceAccountNotAllowed".into())
    );

    // Key types, lifetime cap and an allow list, edited in.
    apply(
        &server,
        &WEB.replace(
            "trustDomain: example.org",
            "trustDomain: example.org\n  keyTypes: [ECDSAP256]\n  maxLifetime: 2h\n  serviceAccounts: {allow: [\"team-a/api\"]}",
        ),
    )
    .await;
    wait_condition(&server, "web", "True", Some("Ready")).await;
    let (v, n) = request(
        &server,
        "ED25519-pop-v1beta1",
        "r9",
        "podcert.dev/web",
        "team-a",
        "api",
        Value::Null,
    )
    .await;
    let r9 = wait_terminal(&server, &v, "team-a", &n, WAIT).await;
    assert_eq!(
        condition(&r9),
        ("Denied".into(), "UnsupportedKeyType".into())
    );
    let (v, n) = request(
        &server,
        "ECDSAP256-pop-v1beta1",
        "r10",
        "podcert.dev/web",
        "team-a",
        "api",
        Value::Null,
    )
    .await;
    let r10 = wait_terminal(&server, &v, "team-a", &n, WAIT).await;
    assert_eq!(condition(&r10).0, "Issued");
    let lifetime =
        podcert_core::request::wire::parse_time(r10["status"]["notAfter"].as_str().unwrap())
            .unwrap()
            - podcert_core::request::wire::parse_time(r10["status"]["notBefore"].as_str().unwrap())
                .unwrap();
    assert_eq!(lifetime, ::time::Duration::hours(2));
    let (v, n) = request(
        &server,
        "ECDSAP256-pop-v1beta1",
        "r11",
        "podcert.dev/web",
        "team-a",
        "web",
        Value::Null,
    )
    .await;
    let r11 = wait_terminal(&server, &v, "team-a", &n, WAIT).await;
    assert_eq!(
        condition(&r11),
        ("Denied".into(), "ServiceAccountNotAllowed".into())
    );

    // Deleting the object stops issuance: a new request stays pending, never Failed...
    signers(&server)
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        WAIT,
        || signer.logs(),
        || async {
            signer
                .logs()
                .contains("stopped serving its signer name")
                .then_some(())
        },
    )
    .await;
    let (v, n) = request(
        &server,
        "ED25519-pop-v1beta1",
        "r8",
        "podcert.dev/web",
        "team-a",
        "api",
        Value::Null,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(server.admin_client(), "team-a", &pcr_resource(&v));
    let pending = serde_json::to_value(api.get(&n).await.unwrap()).unwrap();
    assert!(pending["status"]["conditions"].is_null(), "{pending}");
    // ...and it is decided once the signer is declared again (same Secret, same CA).
    apply(&server, WEB).await;
    let r8 = wait_terminal(&server, &v, "team-a", &n, WAIT).await;
    assert_eq!(condition(&r8).0, "Issued");
    let obj = wait_condition(&server, "web", "True", Some("Ready")).await;
    assert_eq!(obj.status.unwrap().ca_fingerprint.unwrap(), fingerprint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signers_that_cannot_be_served_say_why() {
    let server = setup().await;
    let dir = tempfile::tempdir().unwrap();
    // The flag signer runs too; the deployment is configured for a domain RBAC does not cover.
    let signer = spawn(
        &server,
        dir.path(),
        "signer-0",
        &[
            "--signer-domain",
            "unpermitted.example",
            "--signer-name",
            SIGNER,
            "--trust-domain",
            "cluster.local",
            "--ca-memory",
        ],
    );
    signer.wait_ready(WAIT).await;
    // Each with its own trust domain and CA Secret (the chart lets objects read team-ca, web-ca
    // and other-ca): sharing them is a conflict of its own, tested below.
    let obj = |name: &str, signer: &str, extra: &str| {
        let secret = match name {
            "first" | "second" => "other-ca".to_string(),
            "invalid" => "web-ca".to_string(),
            _ => format!("{name}-ca"),
        };
        format!(
            "apiVersion: podcert.dev/v1alpha1\nkind: PodCertificateSigner\nmetadata: {{name: {name}}}\n\
             spec:\n  signerName: {signer}\n  trustDomain: {name}.td\n  ca: {{secret: {{name: {secret}, bootstrap: true}}}}\n{extra}"
        )
    };
    apply(&server, &obj("outside", "other.example/x", "")).await;
    apply(&server, &obj("unpermitted", "unpermitted.example/x", "")).await;
    apply(&server, &obj("flags", SIGNER, "")).await;
    apply(&server, &obj("first", "podcert.dev/dup", "")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creationTimestamp has 1 s resolution
    apply(&server, &obj("second", "podcert.dev/dup", "")).await;
    apply(
        &server,
        &obj("invalid", "podcert.dev/invalid", "  spiffeID: fixed/path\n"),
    )
    .await;
    apply(
        &server,
        &obj("nosecret", "podcert.dev/nosecret", "")
            .replace("{name: nosecret-ca, bootstrap: true}", "{name: team-ca}"),
    )
    .await;

    let message =
        |o: &PodCertificateSigner| o.status.as_ref().unwrap().conditions[0].message.clone();
    let o = wait_condition(&server, "outside", "False", Some("SignerNameNotAllowed")).await;
    assert!(
        message(&o).contains("podcert.dev, unpermitted.example"),
        "{}",
        message(&o)
    );
    let o = wait_condition(&server, "unpermitted", "False", Some("NotPermitted")).await;
    assert!(message(&o).contains("sign"), "{}", message(&o));
    let o = wait_condition(&server, "flags", "False", Some("Conflict")).await;
    assert!(message(&o).contains("--signer-name"), "{}", message(&o));
    let o = wait_condition(&server, "second", "False", Some("Conflict")).await;
    wait_event(&server, "second", "Conflict", "Warning").await;
    assert!(
        message(&o).contains("PodCertificateSigner first"),
        "{}",
        message(&o)
    );
    wait_condition(&server, "first", "True", Some("Ready")).await;
    let o = wait_condition(&server, "invalid", "False", Some("InvalidSpec")).await;
    assert!(message(&o).contains("spec.spiffeID"), "{}", message(&o));
    let o = wait_condition(&server, "nosecret", "False", Some("CANotLoaded")).await;
    assert!(message(&o).contains("CA"), "{}", message(&o));

    // The flag signer still serves its own name.
    let v = vectors()
        .into_iter()
        .find(|v| v["name"] == "ECDSAP256-pop-v1beta1")
        .unwrap();
    let (ns, n) = create_vector(&server, &v, "flag-1").await;
    let o = wait_terminal(&server, "v1beta1", &ns, &n, WAIT).await;
    assert_eq!(condition(&o).0, "Issued");

    // Fixing the spec makes it Ready; deleting the winner hands the name to the other object.
    apply(
        &server,
        &obj(
            "invalid",
            "podcert.dev/invalid",
            "  spiffeID: \"x/{namespace}\"\n",
        ),
    )
    .await;
    wait_condition(&server, "invalid", "True", Some("Ready")).await;
    signers(&server)
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    wait_condition(&server, "second", "True", Some("Ready")).await;
}

/// The request stays undecided for a while (nothing serves its signer).
async fn stays_pending(server: &TestServer, version: &str, ns: &str, name: &str) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(server.admin_client(), ns, &pcr_resource(version));
    let o = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
    assert!(
        o["status"]["conditions"].is_null(),
        "{name} was decided: {o}"
    );
}

/// Issue 13, item 6: a signer object may not share the flag signer's (or an older object's)
/// trust domain or CA, by Secret name or by CA certificate; the reviewer's attack (the flag
/// signer's CA Secret with `ns/{namespace}/sa/{podName}`) is refused outright.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signers_share_no_trust_domain_and_no_ca() {
    let server = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let ca_secret = format!("{SIGNER_NS}/team-ca");
    let signer = spawn(
        &server,
        dir.path(),
        "signer-0",
        &[
            "--signer-name",
            SIGNER,
            "--trust-domain",
            "cluster.local",
            "--ca-secret",
            &ca_secret,
            "--ca-bootstrap",
        ],
    );
    signer.wait_ready(WAIT).await;
    // A copy of the flag signer's CA under another Secret name.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(server.admin_client(), SIGNER_NS);
    let mut copy = secrets.get("team-ca").await.unwrap();
    copy.metadata = kube::api::ObjectMeta {
        name: Some("other-ca".into()),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &copy).await.unwrap();

    let obj = |name: &str, td: &str, ca: &str, extra: &str| {
        format!(
            "apiVersion: podcert.dev/v1alpha1\nkind: PodCertificateSigner\nmetadata: {{name: {name}}}\n\
             spec:\n  signerName: podcert.dev/{name}\n  trustDomain: {td}\n  ca: {{secret: {ca}}}\n{extra}"
        )
    };
    apply(
        &server,
        &obj(
            "attack",
            "cluster.local",
            "{name: team-ca}",
            "  spiffeID: \"ns/{namespace}/sa/{podName}\"\n",
        ),
    )
    .await;
    apply(
        &server,
        &obj(
            "same-td",
            "cluster.local",
            "{name: web-ca, bootstrap: true}",
            "",
        ),
    )
    .await;
    apply(
        &server,
        &obj("same-secret", "other.org", "{name: team-ca}", ""),
    )
    .await;
    apply(&server, &obj("copy", "copy.org", "{name: other-ca}", "")).await;

    let message =
        |o: &PodCertificateSigner| o.status.as_ref().unwrap().conditions[0].message.clone();
    let o = wait_condition(&server, "attack", "False", Some("InvalidSpec")).await;
    assert!(message(&o).contains("spec.spiffeID"), "{}", message(&o));
    for (name, shared) in [
        ("same-td", "trust domain cluster.local"),
        ("same-secret", "CA Secret podcert-system/team-ca"),
        ("copy", "the same CA certificate"),
    ] {
        let o = wait_condition(&server, name, "False", Some("Conflict")).await;
        let m = message(&o);
        assert!(
            m.contains("command-line signer") && m.contains(shared),
            "{name}: {m}"
        );
        assert!(o.status.unwrap().ca_fingerprint.is_none());
    }
    wait_event(&server, "copy", "Conflict", "Warning").await;

    // None of them issues, and the copy publishes no bundle; the flag signer still issues.
    let mut pending = Vec::new();
    for name in ["attack", "same-td", "same-secret", "copy"] {
        let signer = format!("podcert.dev/{name}");
        pending.push(
            request(
                &server,
                "ED25519-pop-v1beta1",
                &format!("r-{name}"),
                &signer,
                "team-a",
                "api",
                Value::Null,
            )
            .await,
        );
    }
    let (ns, n) = create_vector(
        &server,
        &vectors()
            .into_iter()
            .find(|v| v["name"] == "ECDSAP256-pop-v1beta1")
            .unwrap(),
        "flag-1",
    )
    .await;
    let o = wait_terminal(&server, "v1beta1", &ns, &n, WAIT).await;
    assert_eq!(condition(&o).0, "Issued");
    for (v, n) in &pending {
        stays_pending(&server, v, "team-a", n).await;
    }
    let ctb: Api<DynamicObject> = Api::all_with(server.admin_client(), &ctb_resource("v1beta1"));
    assert!(ctb
        .get_opt("podcert.dev:copy:live")
        .await
        .unwrap()
        .is_none());

    // A CA of its own (the copy deleted, bootstrapped anew) clears the conflict.
    secrets
        .delete("other-ca", &DeleteParams::default())
        .await
        .unwrap();
    apply(
        &server,
        &obj("copy", "copy.org", "{name: other-ca, bootstrap: true}", ""),
    )
    .await;
    wait_condition(&server, "copy", "True", Some("Ready")).await;
    let (v, n) = &pending[3];
    let o = wait_terminal(&server, v, "team-a", n, WAIT).await;
    assert_eq!(
        sans(&o).0,
        vec!["spiffe://copy.org/ns/team-a/sa/api".to_string()]
    );
}

#[test]
fn the_committed_crds_match_the_code() {
    let generated = podcert_k8s::crd::crd_yaml().unwrap();
    for path in [
        "crds/podcertificatesigner.yaml",
        "charts/podcert-signer/crds/podcertificatesigner.yaml",
    ] {
        assert_eq!(
            repo_file(path),
            generated,
            "{path} drifted from the code: run `cargo run -- crd > crds/podcertificatesigner.yaml` and `scripts/check-chart.sh --update`"
        );
    }
}

/// Rotation of an object's bootstrapped CA, requested by an annotation on the object: the next
/// root is published at once, signing switches after the propagation delay, the old root stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_requested_on_the_object_rotates_its_ca() {
    let server = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn(&server, dir.path(), "signer-0", &[]);
    signer.wait_ready(WAIT).await;
    apply(
        &server,
        "apiVersion: podcert.dev/v1alpha1\nkind: PodCertificateSigner\nmetadata: {name: rot}\n\
         spec:\n  signerName: podcert.dev/rot\n  trustDomain: td\n  maxLifetime: 2h\n\
         \x20 ca: {secret: {name: team-ca, bootstrap: true, validity: 30d, propagationDelay: 3s}}\n",
    )
    .await;
    let first = wait_condition(&server, "rot", "True", Some("Ready"))
        .await
        .status
        .unwrap()
        .ca_fingerprint
        .unwrap();
    let ctb: Api<DynamicObject> = Api::all_with(server.admin_client(), &ctb_resource("v1beta1"));
    let roots = |b: &DynamicObject| {
        b.data["spec"]["trustBundle"]
            .as_str()
            .unwrap_or("")
            .matches("BEGIN CERTIFICATE")
            .count()
    };
    signers(&server)
        .patch(
            "rot",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"podcert.dev/rotate": "2026-11-26T00:00:00Z"}}})),
        )
        .await
        .unwrap();
    // The next root is published before it signs...
    eventually(
        WAIT,
        || format!("next root never published; logs:\n{}", signer.logs()),
        || async {
            let b = ctb.get_opt("podcert.dev:rot:live").await.unwrap()?;
            (roots(&b) == 2).then_some(())
        },
    )
    .await;
    // ...then it signs (the status reports the new CA) and the old root stays published.
    let api = signers(&server);
    let second = eventually(
        WAIT,
        || format!("never switched; logs:\n{}", signer.logs()),
        || async {
            let o = api.get("rot").await.unwrap();
            let fp = o.status.and_then(|s| s.ca_fingerprint).unwrap_or_default();
            (fp != first).then_some(fp)
        },
    )
    .await;
    assert!(!second.is_empty());
    let b = ctb.get("podcert.dev:rot:live").await.unwrap();
    assert_eq!(
        roots(&b),
        2,
        "the old root must stay until its leaves expire"
    );
    let (v, n) = request(
        &server,
        "ED25519-pop-v1beta1",
        "rot-1",
        "podcert.dev/rot",
        "team-a",
        "api",
        Value::Null,
    )
    .await;
    let issued = wait_terminal(&server, &v, "team-a", &n, WAIT).await;
    assert_eq!(condition(&issued).0, "Issued");
    // The request was acted on once: the annotation is still there, nothing rotates again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let o = signers(&server).get("rot").await.unwrap();
    assert_eq!(o.status.unwrap().ca_fingerprint.unwrap(), second);
}
