//! Scale check (ignored by default): many pods in one process against the in-process server.
//! `KUBELET_SCALE_PODS=10000 cargo test -p podcert-testkit --test kubelet_scale -- --ignored --nocapture`

mod kubelet_support;

use std::time::{Duration, Instant};

use podcert_testkit::apiserver::{ServerConfig, TestServer};
use podcert_testkit::kubelet::{KeyType, Kubelet, KubeletConfig, PcrVersion};
use podcert_testkit::rules::UserInfo;

use kubelet_support::signer::{self, Controls};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "scale run: minutes, not seconds"]
async fn many_pods_settle() {
    let pods: usize = std::env::var("KUBELET_SCALE_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    server
        .load_yaml(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: nodes-pcr }
rules:
- { apiGroups: ["certificates.k8s.io"], resources: ["podcertificaterequests"], verbs: ["create", "get", "list", "watch"] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: nodes-pcr }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: nodes-pcr }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes" }]
"#,
        )
        .unwrap();
    let cfg = KubeletConfig {
        pods,
        nodes: 20,
        namespaces: 10,
        key_types: vec![KeyType::EcdsaP256, KeyType::Ed25519],
        tick: Duration::from_millis(500),
        recreate_after: Duration::from_secs(600),
        ..KubeletConfig::for_tests()
    };
    let _signer = signer::spawn(
        server.admin_client(),
        PcrVersion::V1beta1,
        cfg.clock.clone(),
        Controls::default(),
    );
    let clients: std::collections::HashMap<String, kube::Client> = (0..cfg.nodes)
        .map(|j| cfg.node_name(j))
        .map(|n| (n.clone(), server.client_for(&UserInfo::node(&n))))
        .collect();
    let started = Instant::now();
    let handle = Kubelet::new(cfg, server.admin_client(), move |n| clients[n].clone())
        .start()
        .await
        .unwrap();
    eprintln!("fleet of {pods} pods created in {:?}", started.elapsed());
    let summary = handle
        .wait_settled(Duration::from_secs(1800))
        .await
        .unwrap();
    eprintln!("settled in {:?}: {summary}", started.elapsed());
    assert_eq!(summary.issued, pods);
    assert_eq!(summary.requests_created, pods as u64);
    handle.shutdown().await;
    server.shutdown().await;
}
