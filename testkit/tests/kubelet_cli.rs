//! `podcert-testkit kubelet` (the `run` entry point) against the emulator through a kubeconfig,
//! with node identities by impersonation.

mod kubelet_support;

use clap::Parser;
use podcert_testkit::apiserver::{ServerConfig, TestServer};
use podcert_testkit::kubelet::cli::{run, KubeletArgs};
use podcert_testkit::kubelet::NODE_RBAC;
use podcert_testkit::kubelet::{Clock, PcrVersion};
use podcert_testkit::rules::UserInfo;

use kubelet_support::signer::{self, Controls};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: KubeletArgs,
}

fn args(kubeconfig: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> KubeletArgs {
    let mut argv = vec![
        "podcert-testkit-kubelet".to_string(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--once".into(),
        "--report-seconds".into(),
        "1".into(),
        "--timeout-seconds".into(),
        "30".into(),
        "--rsa-pool".into(),
        "2".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    Cli::try_parse_from(argv).unwrap().args
}

#[tokio::test]
async fn run_issues_every_pod_through_a_kubeconfig() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    server.load_yaml(NODE_RBAC).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server
        .write_kubeconfig(&kubeconfig, &UserInfo::admin())
        .unwrap();
    let _signer = signer::spawn(
        server.admin_client(),
        PcrVersion::V1beta1,
        Clock::system(),
        Controls::default(),
    );

    let out = dir.path().join("out");
    let a = args(
        &kubeconfig,
        &out,
        &[
            "--pods",
            "4",
            "--nodes",
            "2",
            "--key-types",
            "ED25519,RSA3072",
            "--kube-version",
            "1.36",
        ],
    );
    run(a).await.unwrap();
    for i in 0..4 {
        assert!(
            out.join(format!("podcert-ns-0/pod-{i}/credentialbundle.pem"))
                .is_file(),
            "pod-{i}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn run_fails_when_a_pod_is_denied() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    server.load_yaml(NODE_RBAC).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server
        .write_kubeconfig(&kubeconfig, &UserInfo::admin())
        .unwrap();
    let controls = Controls::default();
    controls.deny.lock().unwrap().insert("pod-0".into());
    let _signer = signer::spawn(
        server.admin_client(),
        PcrVersion::V1beta1,
        Clock::system(),
        controls,
    );

    let err = run(args(&kubeconfig, &dir.path().join("out"), &["--pods", "1"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused a certificate"), "{err}");
    server.shutdown().await;
}
