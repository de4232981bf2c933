//! `podcert-testkit apiserver`: serves until SIGTERM, having written a kubeconfig.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use std::time::Duration;

#[tokio::test]
async fn serves_with_a_kubeconfig_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_podcert-testkit"))
        .args([
            "apiserver",
            "--listen",
            "127.0.0.1:0",
            "--kube-version",
            "1.35",
            "--pcr-versions",
            "v1beta1,v1",
            "--kubeconfig",
        ])
        .arg(&kc)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !kc.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the kubeconfig was written");
    let cfg = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kc).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    assert_eq!(
        client.apiserver_version().await.unwrap().git_version,
        "v1.35.0"
    );
    let ns: Api<Namespace> = Api::all(client.clone());
    assert!(ns.list(&ListParams::default()).await.unwrap().items.len() >= 4);
    // --pcr-versions adds v1 to what 1.35 serves.
    let groups = client
        .list_api_group_resources("certificates.k8s.io/v1")
        .await
        .unwrap();
    assert!(groups
        .resources
        .iter()
        .any(|r| r.name == "podcertificaterequests"));

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
