//! `podcert-signer run` end to end: the real binary, under the chart's RBAC, against the API
//! emulator over HTTPS, through the real kube client.

use std::time::Duration;

use crate::fixtures::e2e::*;
use crate::fixtures::metrics as prom;
use kube::api::{Api, DynamicObject, ListParams};
use podcert_testkit::apiserver::{KubeVersion, ServerConfig, TestServer};

const WAIT: Duration = Duration::from_secs(30);

async fn server(version: KubeVersion) -> TestServer {
    TestServer::start(ServerConfig {
        version,
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_every_key_type_and_both_carriers_and_publishes_the_bundle() {
    // 1.38: as 1.37 for the classical key types, and it knows ML-DSA ones (stub CSR only).
    let server = server(KubeVersion::V1_38).await;
    prepare(&server, &["team-0", "team-1"]);
    let dir = tempfile::tempdir().unwrap();
    // ConfigMap publication needs the Role the chart renders when it is enabled for a namespace.
    server
        .load_yaml(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{ name: trust-bundle, namespace: team-0 }}\nrules:\n- {{ apiGroups: [\"\"], resources: [configmaps], verbs: [get, create, update] }}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{ name: trust-bundle, namespace: team-0 }}\nroleRef: {{ apiGroup: rbac.authorization.k8s.io, kind: Role, name: trust-bundle }}\nsubjects:\n- {{ kind: ServiceAccount, name: {SIGNER_SA}, namespace: {SIGNER_NS} }}\n"
        ))
        .unwrap();
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &[
            "--ca-memory",
            "--leader-election=false",
            "--trust-bundle-configmap-namespace",
            "team-0",
        ],
    );
    signer.wait_ready(WAIT).await;

    // A 1.37/1.38 server serves v1beta1 (pkix + proof from 1.35 kubelets, stub from 1.36) and v1.
    let mut created = Vec::new();
    for v in vectors() {
        let n = v["name"].as_str().unwrap();
        let version = v["object"]["apiVersion"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        if version == "v1alpha1"
            || !matches!(
                v["expect"].as_str(),
                Some("Issued" | "Denied" | "NoForgedNames")
            )
        {
            continue;
        }
        let (ns, name) = create_vector(&server, &v, &n.to_lowercase()).await;
        created.push((version, ns, name, v["expect"].as_str().unwrap().to_string()));
    }
    assert_eq!(
        created.len(),
        29,
        "6 key types x 3 carriers/versions, 2 PSS salt-32, forged names, annotation, 1 h, \
         3 ML-DSA types x 2 versions"
    );
    for (version, ns, name, expect) in &created {
        let obj = wait_terminal(&server, version, ns, name, WAIT).await;
        let (cond, reason) = condition(&obj);
        match expect.as_str() {
            "Denied" => assert_eq!(
                (cond.as_str(), reason.as_str()),
                ("Denied", "UnknownUserAnnotation")
            ),
            _ => assert_eq!(cond, "Issued", "{name}: {obj}"),
        }
    }

    // The trust bundle is published under the name the apiserver requires, in v1.
    let ctbs: Api<DynamicObject> = Api::all_with(server.admin_client(), &ctb_resource("v1"));
    let ctb = ctbs.get("podcert.dev:spiffe:live").await.unwrap();
    assert_eq!(ctb.data["spec"]["signerName"], SIGNER);
    assert!(ctb.data["spec"]["trustBundle"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert_eq!(
        ctb.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("podcert.dev/trust-bundle")
            .map(String::as_str),
        Some("live")
    );

    // The same bundle in the ConfigMap, for clusters without ClusterTrustBundle projection.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(server.admin_client(), "team-0");
    let cm = cms
        .get("podcert-trust-bundle")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", signer.logs()));
    assert_eq!(
        cm.data.unwrap()["ca.crt"],
        ctb.data["spec"]["trustBundle"].as_str().unwrap()
    );

    // Deleted, it comes back.
    ctbs.delete("podcert.dev:spiffe:live", &Default::default())
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while ctbs
        .get_opt("podcert.dev:spiffe:live")
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            start.elapsed() < WAIT,
            "the deleted trust bundle was not re-created"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // One status write per request, and Events recorded for the decisions.
    let writes = server.store().writes();
    for (_, ns, name, _) in &created {
        let n = writes
            .iter()
            .filter(|w| {
                w.resource == "podcertificaterequests"
                    && w.subresource == "status"
                    && &w.namespace == ns
                    && &w.name == name
            })
            .count();
        assert_eq!(n, 1, "{ns}/{name} had {n} status writes");
    }
    let events: Api<DynamicObject> = Api::all_with(
        server.admin_client(),
        &kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "events.k8s.io",
            "v1",
            "Event",
        )),
    );
    let evs = events.list(&ListParams::default()).await.unwrap();
    assert!(
        evs.items.iter().any(|e| e.data["reason"] == "Issued"),
        "no Issued event"
    );
    assert!(
        evs.items
            .iter()
            .any(|e| e.data["reason"] == "UnknownUserAnnotation"),
        "no Denied event"
    );

    let (code, metrics) = signer.get("/metrics").await;
    assert_eq!(code, 200);
    let issued = prom::sum(
        &metrics,
        "podcert_issued_total",
        &[&prom::signer_label(SIGNER)],
    );
    assert!(issued >= 1.0, "{metrics}");
    let denied = prom::sum(
        &metrics,
        "podcert_denied_total",
        &["reason=\"UnknownUserAnnotation\""],
    );
    assert!(denied >= 1.0, "{metrics}");
    assert!(signer
        .logs()
        .contains("PodCertificateRequest version chosen by discovery"));
    assert!(
        signer.logs().contains("v1beta1"),
        "a 1.37 server with beta on is watched in v1beta1"
    );
    server.shutdown().await;
}

use podcert_testkit::apiserver::Faults;
use podcert_testkit::kubelet::{KubeletVersion, Phase};

/// The signer against a server of `server_version`, with kubelets of `kubelet_version`.
async fn version_scenario(server_version: KubeVersion, kubelet_version: KubeletVersion) {
    let server = server(server_version).await;
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &["--ca-memory", "--leader-election=false"],
    );
    signer.wait_ready(WAIT).await;
    let fleet = kubelets(&server, kubelet_version, 6, "e2e", |_| {}).await;
    let summary = fleet
        .wait_settled(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; logs:\n{}", signer.logs()));
    assert_eq!(summary.issued, 6, "{summary:?}\n{:?}", fleet.states());
    assert_eq!(summary.invalid + summary.denied + summary.failed, 0);
    fleet.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_1_34_v1alpha1() {
    version_scenario(KubeVersion::V1_34, KubeletVersion::V1_34).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_1_35_v1beta1_pkix() {
    version_scenario(KubeVersion::V1_35, KubeletVersion::V1_35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_1_36_v1beta1_stub_csr() {
    version_scenario(KubeVersion::V1_36, KubeletVersion::V1_36).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_1_37_v1() {
    version_scenario(KubeVersion::V1_37, KubeletVersion::V1_37).await;
}

/// Kubernetes 1.38 with `PodCertificateMLDSA` on: 1.38 kubelets ask for MLDSA44/65/87 keys
/// (stub CSRs signed with ML-DSA) and the signer, with an ML-DSA-65 CA, issues them (its default
/// key types are every type the API has) and publishes the ML-DSA root; a signer whose
/// --key-types leave ML-DSA out denies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_1_38_ml_dsa_keys() {
    use podcert_testkit::kubelet::KeyType as K;
    let server = TestServer::start(ServerConfig {
        version: KubeVersion::V1_38,
        pod_certificate_mldsa: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &[
            "--ca-memory",
            "--ca-key-type",
            "mldsa65",
            "--leader-election=false",
        ],
    );
    signer.wait_ready(WAIT).await;
    let ml_dsa = |c: &mut podcert_testkit::kubelet::KubeletConfig| {
        c.key_types = vec![K::MlDsa44, K::MlDsa65, K::MlDsa87];
    };
    let fleet = kubelets(&server, KubeletVersion::V1_38, 6, "mldsa", ml_dsa).await;
    let summary = fleet
        .wait_settled(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; logs:\n{}", signer.logs()));
    // Issued, and the kubelet emulator's checks of the status (leaf key = request key) held.
    assert_eq!(summary.issued, 6, "{summary:?}\n{:?}", fleet.states());
    assert_eq!(summary.invalid + summary.denied + summary.failed, 0);
    let bundle = eventually(WAIT, || signer.logs(), || published_bundle(&server)).await;
    let root = pem::parse(&bundle).unwrap().into_contents();
    let (_, root) = x509_parser::parse_x509_certificate(&root).unwrap();
    assert_eq!(
        root.public_key().algorithm.algorithm.to_id_string(),
        "2.16.840.1.101.3.4.3.18",
        "the published root is the ML-DSA-65 CA"
    );
    fleet.shutdown().await;
    signer.terminate();

    let dir = tempfile::tempdir().unwrap();
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-1",
        &[
            "--ca-memory",
            "--leader-election=false",
            "--key-types",
            "ED25519,ECDSAP256",
        ],
    );
    signer.wait_ready(WAIT).await;
    let fleet = kubelets(&server, KubeletVersion::V1_38, 3, "classical-only", ml_dsa).await;
    let summary = fleet.wait_settled(WAIT).await.unwrap();
    assert_eq!(
        (summary.issued, summary.denied),
        (0, 3),
        "{:?}",
        fleet.states()
    );
    for st in fleet.states() {
        let Phase::Denied { reason, message } = &st.phase else {
            panic!("{st:?}")
        };
        assert_eq!(reason, "UnsupportedKeyType");
        assert!(message.contains("ED25519, ECDSAP256"), "{message}");
    }
    fleet.shutdown().await;
    server.shutdown().await;
}

/// Version skew: a 1.35 kubelet (pkix + proof, written in v1beta1) against a 1.37 server.
/// The signer must watch v1beta1: the v1 view drops the pkix fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_1_37_server_with_a_1_35_kubelet() {
    version_scenario(KubeVersion::V1_37, KubeletVersion::V1_35).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_reach_the_kubelet_with_their_reason() {
    let server = server(KubeVersion::V1_37).await;
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &[
            "--ca-memory",
            "--leader-election=false",
            "--key-types",
            "ED25519,ECDSAP256",
        ],
    );
    signer.wait_ready(WAIT).await;
    let fleet = kubelets(&server, KubeletVersion::V1_37, 6, "e2e", |_| {}).await;
    let summary = fleet.wait_settled(WAIT).await.unwrap();
    assert_eq!(
        (summary.issued, summary.denied, summary.failed),
        (2, 4, 0),
        "{:?}",
        fleet.states()
    );
    for st in fleet.states() {
        if let Phase::Denied { reason, message } = &st.phase {
            assert_eq!(reason, "UnsupportedKeyType");
            assert!(message.contains("ED25519, ECDSAP256"), "{message}");
        }
    }
    fleet.shutdown().await;

    let annotated = kubelets(&server, KubeletVersion::V1_37, 2, "more", |c| {
        c.user_annotations = vec![[(
            "evil.example.com/dns".to_string(),
            "kubernetes.default.svc".to_string(),
        )]
        .into()];
        c.key_types = vec![podcert_testkit::kubelet::KeyType::Ed25519];
    })
    .await;
    annotated.wait_settled(WAIT).await.unwrap();
    for st in annotated.states() {
        assert!(
            matches!(&st.phase, Phase::Denied { reason, .. } if reason == "UnknownUserAnnotation"),
            "{st:?}"
        );
    }
    annotated.shutdown().await;
    server.shutdown().await;
}

/// Injected API faults (watch drops, 5xx, 409s, latency): every request ends decided, none
/// Failed, each status written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_api_faults() {
    let server = server(KubeVersion::V1_37).await;
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &["--ca-memory", "--leader-election=false"],
    );
    signer.wait_ready(WAIT).await;
    // Faults start once the fleet's pods exist (the emulated kubelet's setup is not the
    // subject here); its requests and the signer's watch and writes all run under them.
    let fleet = kubelets(&server, KubeletVersion::V1_37, 24, "e2e", |_| {}).await;
    server.set_faults(Faults {
        seed: 7,
        drop_watch_every: Some(Duration::from_millis(700)),
        delay: Duration::from_millis(5),
        delay_jitter: Duration::from_millis(20),
        // 500s (kube's client retries 503/429 by itself) and many 409s, so the signer's own
        // retry paths are exercised in every run.
        error_rate: 0.10,
        error_code: 500,
        conflict_rate: 0.25,
        ..Faults::default()
    });
    let summary = fleet
        .wait_settled(Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", fleet.summary()));
    server.set_faults(Faults::default());
    assert_eq!(
        (summary.issued, summary.failed, summary.invalid),
        (24, 0, 0),
        "{summary:?}"
    );
    let (_, metrics) = signer.get("/metrics").await;
    // The faults reached the signer's writes: some were retried (5xx) or re-checked (409).
    // (Every counter is exported from the start at 0: a series' presence proves nothing.)
    let retried = prom::sum(&metrics, "podcert_errors_total", &[]) > 0.0
        || prom::sum(&metrics, "podcert_status_conflicts_total", &[]) > 0.0;
    assert!(
        retried,
        "faults should have hit some status writes:\n{metrics}"
    );
    let failed = format!("podcert_failed_total{{{}}} 0", prom::signer_label(SIGNER));
    assert!(
        metrics.lines().any(|l| l == failed),
        "nothing may be Failed (and the counter is exported at 0):\n{metrics}"
    );
    fleet.shutdown().await;
    server.shutdown().await;
}
