//! The kubelet emulator end to end against the in-process API server emulator, with a small
//! signer written here: issuance for every key type and both key carriers, the credential
//! bundle on disk, refresh with a new key, recreation of a deleted request, denial.

mod kubelet_support;

use podcert_testkit::kubelet::NODE_RBAC;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams};
use kube::core::DynamicObject;
use podcert_testkit::apiserver::{ServerConfig, TestServer};
use podcert_testkit::kubelet::bundle::bundle_path;
use podcert_testkit::kubelet::objects::pcr_resource;
use podcert_testkit::kubelet::{
    Clock, KeyType, Kubelet, KubeletConfig, KubeletHandle, KubeletVersion, PcrVersion, Phase,
};
use podcert_testkit::rules::UserInfo;

use kubelet_support::signer::{self, Controls, FakeSigner};

const WAIT: Duration = Duration::from_secs(20);

struct Setup {
    server: TestServer,
    handle: KubeletHandle,
    _signer: FakeSigner,
    controls: Controls,
    clock: Clock,
}

async fn start(mut cfg: KubeletConfig, controls: Controls) -> Setup {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    server.load_yaml(NODE_RBAC).unwrap();
    let clock = cfg.clock.clone();
    let signer = signer::spawn(
        server.admin_client(),
        PcrVersion::V1beta1,
        clock.clone(),
        controls.clone(),
    );
    let nodes: HashMap<String, kube::Client> = (0..cfg.nodes)
        .map(|j| {
            let n = cfg.node_name(j);
            let c = server.client_for(&UserInfo::node(&n));
            (n, c)
        })
        .collect();
    cfg.signer_name = "example.com/spiffe".into();
    let kubelet = Kubelet::new(cfg, server.admin_client(), move |n| nodes[n].clone());
    let handle = kubelet.start().await.unwrap();
    Setup {
        server,
        handle,
        _signer: signer,
        controls,
        clock,
    }
}

fn pem_blocks(path: &std::path::Path) -> Vec<pem::Pem> {
    pem::parse_many(std::fs::read(path).unwrap()).unwrap()
}

/// Checks one credential bundle: 0600, a PKCS#8 key then certificates, the leaf for that key.
fn check_bundle(path: &std::path::Path) -> Vec<u8> {
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let blocks = pem_blocks(path);
    assert_eq!(blocks[0].tag(), "PRIVATE KEY");
    assert!(blocks.len() >= 2 && blocks[1..].iter().all(|b| b.tag() == "CERTIFICATE"));
    // The kubelet writes Go's pem.EncodeToMemory output: LF only, and nothing but the
    // header-less blocks themselves (cleanCertificateChain drops text and headers).
    let bytes = std::fs::read(path).unwrap();
    assert!(!bytes.contains(&b'\r'), "CR in {}", path.display());
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let bare: String = blocks
        .iter()
        .map(|b| pem::encode_config(&pem::Pem::new(b.tag(), b.contents().to_vec()), lf))
        .collect();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        bare,
        "{}",
        path.display()
    );
    let key = rcgen::KeyPair::try_from(blocks[0].contents()).unwrap();
    let (_, leaf) = <x509_parser::certificate::X509Certificate as x509_parser::prelude::FromDer<
        _,
    >>::from_der(blocks[1].contents())
    .unwrap();
    assert_eq!(
        leaf.tbs_certificate.subject_pki.raw,
        rcgen::PublicKeyData::subject_public_key_info(&key).as_slice(),
        "leaf is not for the bundle's key"
    );
    blocks[0].contents().to_vec()
}

async fn every_key_type_issued(
    kube_version: KubeletVersion,
    expect_version: PcrVersion,
    stub: bool,
) {
    let out = tempfile::tempdir().unwrap();
    let cfg = KubeletConfig {
        nodes: 2,
        pods: 6,
        namespaces: 2,
        key_types: KeyType::ALL.to_vec(),
        kube_version,
        out_dir: Some(out.path().to_path_buf()),
        user_annotations: vec![[("example.com/tier".to_string(), "web".to_string())].into()],
        ..KubeletConfig::for_tests()
    };
    let s = start(cfg, Controls::default()).await;
    assert_eq!(s.handle.pcr_version(), expect_version);
    let summary = s.handle.wait_settled(WAIT).await.unwrap();
    assert_eq!(summary.issued, 6, "{:?}", s.handle.states());
    assert_eq!(summary.latency.count, 6);
    let mut types: Vec<KeyType> = s.handle.states().iter().map(|p| p.key_type).collect();
    types.sort();
    assert_eq!(types, KeyType::ALL.to_vec());
    for p in s.handle.states() {
        check_bundle(&bundle_path(out.path(), &p.namespace, &p.pod));
    }
    // The stored requests carry the carrier of the emulated version.
    let api: Api<DynamicObject> =
        Api::all_with(s.server.admin_client(), &pcr_resource(PcrVersion::V1beta1));
    let reqs = api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(reqs.len(), 6);
    for r in reqs {
        assert!(r.metadata.name.as_deref().unwrap().starts_with("req-"));
        assert_eq!(r.metadata.owner_references.as_ref().unwrap()[0].kind, "Pod");
        let spec = &r.data["spec"];
        assert_eq!(spec.get("stubPKCS10Request").is_some(), stub);
        assert_eq!(spec.get("proofOfPossession").is_some(), !stub);
        assert!(spec["nodeName"]
            .as_str()
            .unwrap()
            .starts_with("podcert-node-"));
    }
    s.handle.shutdown().await;
    s.server.shutdown().await;
}

#[tokio::test]
async fn kubelet_1_35_sends_pkix_and_proof_on_v1beta1() {
    every_key_type_issued(KubeletVersion::V1_35, PcrVersion::V1beta1, false).await;
}

#[tokio::test]
async fn kubelet_1_37_sends_stub_csr_on_v1() {
    every_key_type_issued(KubeletVersion::V1_37, PcrVersion::V1, true).await;
}

#[tokio::test]
async fn refresh_after_begin_refresh_at_uses_a_new_key() {
    let out = tempfile::tempdir().unwrap();
    let cfg = KubeletConfig {
        key_types: vec![KeyType::EcdsaP256],
        out_dir: Some(out.path().to_path_buf()),
        ..KubeletConfig::for_tests()
    };
    let s = start(cfg, Controls::default()).await;
    s.handle.wait_settled(WAIT).await.unwrap();
    let p = &s.handle.states()[0];
    let path = bundle_path(out.path(), &p.namespace, &p.pod);
    let first_key = check_bundle(&path);
    // Before beginRefreshAt nothing is re-requested (several ticks pass here).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.handle.states()[0].requests_created, 1);

    // beginRefreshAt is notBefore + 1 h: move everyone's clock past it.
    let offset = time::Duration::minutes(70);
    s.server.set_clock_offset(offset);
    s.clock.set_offset(offset);
    let states = s
        .handle
        .wait_for(
            WAIT,
            |st| matches!(st[0].phase, Phase::Issued { issued_count, .. } if issued_count >= 2),
        )
        .await
        .unwrap();
    assert!(states[0].requests_created >= 2);
    let second_key = check_bundle(&path);
    assert_ne!(first_key, second_key, "refresh must use a new key");
    s.handle.shutdown().await;
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_deleted_request_is_recreated() {
    let controls = Controls::default();
    controls.hold.lock().unwrap().insert("pod-0".into());
    let s = start(KubeletConfig::for_tests(), controls).await;
    let states = s
        .handle
        .wait_for(WAIT, |st| st[0].current_request.is_some())
        .await
        .unwrap();
    let first = states[0].current_request.clone().unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(
        s.server.admin_client(),
        &states[0].namespace,
        &pcr_resource(PcrVersion::V1beta1),
    );
    api.delete(&first, &DeleteParams::default()).await.unwrap();

    let states = s
        .handle
        .wait_for(WAIT, |st| st[0].requests_created >= 2)
        .await
        .unwrap();
    assert_ne!(states[0].current_request.as_deref(), Some(first.as_str()));
    s.controls.hold.lock().unwrap().clear();
    let summary = s.handle.wait_settled(WAIT).await.unwrap();
    assert_eq!(summary.issued, 1);
    s.handle.shutdown().await;
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_denied_request_is_reported_and_not_retried() {
    let controls = Controls::default();
    controls.deny.lock().unwrap().insert("pod-1".into());
    let cfg = KubeletConfig {
        pods: 2,
        ..KubeletConfig::for_tests()
    };
    let s = start(cfg, controls).await;
    let summary = s
        .handle
        .wait_settled(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}: {:#?}", s.handle.states()));
    assert_eq!((summary.issued, summary.denied), (1, 1));
    let denied = s
        .handle
        .state(&s.handle.states()[1].namespace, "pod-1")
        .unwrap();
    assert_eq!(
        denied.phase,
        Phase::Denied {
            reason: "PolicyDenied".into(),
            message: "this pod may not have a certificate".into()
        }
    );
    // Permanent: a few ticks later still one request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.handle
            .state(&denied.namespace, "pod-1")
            .unwrap()
            .requests_created,
        1
    );
    s.handle.shutdown().await;
    s.server.shutdown().await;
}

#[tokio::test]
async fn polls_when_the_node_may_not_watch() {
    // A node allowed to create and list, but not watch: the kubelet falls back to polling.
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    server
        .load_yaml(&NODE_RBAC.replace(r#""list", "watch""#, r#""list""#))
        .unwrap();
    let controls = Controls::default();
    let cfg = KubeletConfig {
        pods: 2,
        ..KubeletConfig::for_tests()
    };
    let _signer = signer::spawn(
        server.admin_client(),
        PcrVersion::V1beta1,
        cfg.clock.clone(),
        controls,
    );
    let node = server.client_for(&UserInfo::node(&cfg.node_name(0)));
    let handle = Kubelet::new(cfg, server.admin_client(), move |_| node.clone())
        .start()
        .await
        .unwrap();
    let summary = handle
        .wait_settled(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}: {:#?}", handle.states()));
    assert_eq!(summary.issued, 2);
    handle.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn discovery_picks_the_version_the_kubelet_knows() {
    use podcert_testkit::apiserver::KubeVersion;
    use podcert_testkit::kubelet::KubeletError;
    let cases = [
        (
            KubeVersion::V1_34,
            KubeletVersion::V1_34,
            Some(PcrVersion::V1alpha1),
        ),
        (
            KubeVersion::V1_36,
            KubeletVersion::V1_36,
            Some(PcrVersion::V1beta1),
        ),
        (
            KubeVersion::V1_37,
            KubeletVersion::V1_35,
            Some(PcrVersion::V1beta1),
        ),
        (
            KubeVersion::V1_37,
            KubeletVersion::V1_37,
            Some(PcrVersion::V1),
        ),
        // A 1.34 kubelet only knows v1alpha1, which a 1.37 server no longer serves.
        (KubeVersion::V1_37, KubeletVersion::V1_34, None),
    ];
    for (server_version, kube_version, want) in cases {
        let server = TestServer::start(ServerConfig {
            version: server_version,
            ..Default::default()
        })
        .await
        .unwrap();
        let cfg = KubeletConfig {
            kube_version,
            ..KubeletConfig::for_tests()
        };
        let admin = server.admin_client();
        let kubelet = Kubelet::new(cfg, admin.clone(), move |_| admin.clone());
        match (kubelet.pcr_version().await, want) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "{kube_version} kubelet"),
            (Err(KubeletError::NoPcrVersion { .. }), None) => {}
            (other, _) => panic!("{kube_version} kubelet: unexpected {other:?}"),
        }
        server.shutdown().await;
    }
}

#[tokio::test]
async fn kubelet_1_34_talks_v1alpha1_to_a_1_34_server() {
    use podcert_testkit::apiserver::KubeVersion;
    let server = TestServer::start(ServerConfig {
        version: KubeVersion::V1_34,
        ..Default::default()
    })
    .await
    .unwrap();
    server.load_yaml(NODE_RBAC).unwrap();
    let cfg = KubeletConfig {
        kube_version: KubeletVersion::V1_34,
        key_types: vec![KeyType::Rsa3072, KeyType::EcdsaP521],
        pods: 2,
        ..KubeletConfig::for_tests()
    };
    let _signer = signer::spawn(
        server.admin_client(),
        PcrVersion::V1alpha1,
        cfg.clock.clone(),
        Controls::default(),
    );
    let node = server.client_for(&UserInfo::node(&cfg.node_name(0)));
    let handle = Kubelet::new(cfg, server.admin_client(), move |_| node.clone())
        .start()
        .await
        .unwrap();
    assert_eq!(handle.pcr_version(), PcrVersion::V1alpha1);
    let summary = handle
        .wait_settled(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}: {:#?}", handle.states()));
    assert_eq!(summary.issued, 2);
    handle.shutdown().await;
    server.shutdown().await;
}
