//! The real kubectl against the emulator (through the https kubeconfig it writes).

mod common;

use podcert_testkit::apiserver::TestServer;
use podcert_testkit::rules::UserInfo;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct Kubectl {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

fn kubectl_available() -> bool {
    std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Kubectl {
    fn new(srv: &TestServer) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        srv.write_kubeconfig(&kubeconfig, &UserInfo::admin())
            .unwrap();
        Kubectl { dir, kubeconfig }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let o = tokio::time::timeout(Duration::from_secs(60), self.cmd(args).output())
            .await
            .unwrap()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into(),
            String::from_utf8_lossy(&o.stderr).into(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed: {err}\n{out}");
        out
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into()
    }
}

macro_rules! require_kubectl {
    () => {
        if !kubectl_available() {
            eprintln!("kubectl is not installed: skipping");
            return;
        }
    };
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\n  labels: {app: demo}\ndata:\n  a: \"1\"\n";

#[tokio::test]
async fn api_resources_lists_served_resources() {
    require_kubectl!();
    let srv = common::server().await;
    let k = Kubectl::new(&srv);
    let out = k.ok(&["api-resources"]).await;
    for want in [
        "podcertificaterequests",
        "clustertrustbundles",
        "customresourcedefinitions",
        "leases",
        "pods",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    let pcr = out
        .lines()
        .find(|l| l.starts_with("podcertificaterequests"))
        .unwrap();
    assert!(
        pcr.contains("certificates.k8s.io/v1")
            && pcr.contains("true")
            && pcr.contains("PodCertificateRequest"),
        "{pcr}"
    );
    let version = k.ok(&["version", "-o", "json"]).await;
    assert!(version.contains("\"gitVersion\": \"v1.37.0\""), "{version}");
}

#[tokio::test]
async fn get_prints_tables_json_and_yaml() {
    require_kubectl!();
    let srv = common::server().await;
    let k = Kubectl::new(&srv);
    srv.load_yaml(CM).unwrap();
    let table = k.ok(&["get", "configmaps"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "DATA", "AGE"]);
    assert!(lines.next().unwrap().starts_with("one "), "{table}");
    let ns = k.ok(&["get", "namespaces"]).await;
    assert!(
        ns.starts_with("NAME") && ns.contains("kube-system") && ns.contains("Active"),
        "{ns}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "configmap", "one", "-o", "json"]).await).unwrap();
    assert_eq!(json["data"]["a"], "1");
    assert_eq!(json["kind"], "ConfigMap");
    let yaml = k.ok(&["get", "configmap", "one", "-o", "yaml"]).await;
    assert!(
        yaml.contains("name: one") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
}

#[tokio::test]
async fn create_apply_and_delete_from_files() {
    require_kubectl!();
    let srv = common::server().await;
    let k = Kubectl::new(&srv);
    let f = k.file("cm.yaml", CM);
    assert!(k
        .ok(&["create", "-f", &f])
        .await
        .contains("configmap/one created"));
    let f2 = k.file("cm2.yaml", &CM.replace("\"1\"", "\"2\""));
    assert!(k
        .ok(&["apply", "-f", &f2])
        .await
        .contains("configmap/one configured"));
    assert_eq!(
        srv.store()
            .get("", "configmaps", Some("default"), "one")
            .unwrap()["data"]["a"],
        "2"
    );
    let pod = k.file(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n  - name: d\n    image: busybox\n",
    );
    k.ok(&["apply", "-f", &pod]).await;
    // A strategic merge patch by container name changes one container and keeps the other.
    let pod2 = k.file(
        "pod2.yaml",
        &std::fs::read_to_string(&pod)
            .unwrap()
            .replacen("busybox", "alpine", 1),
    );
    k.ok(&["apply", "-f", &pod2]).await;
    let stored = srv.store().get("", "pods", Some("default"), "p").unwrap();
    assert_eq!(stored["spec"]["containers"][0]["image"], "alpine");
    assert_eq!(stored["spec"]["containers"][1]["image"], "busybox");
    assert!(k
        .ok(&["apply", "--server-side", "-f", &f])
        .await
        .contains("serverside-applied"));
    assert_eq!(
        srv.store()
            .get("", "configmaps", Some("default"), "one")
            .unwrap()["data"]["a"],
        "1"
    );
    assert!(k.ok(&["delete", "-f", &f]).await.contains("deleted"));
    assert!(srv
        .store()
        .get("", "configmaps", Some("default"), "one")
        .is_none());
    let (ok, _, err) = k.run(&["delete", "configmap", "one"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
}

#[tokio::test]
async fn replace_status_subresource_changes_only_status() {
    require_kubectl!();
    let srv = common::server().await;
    let k = Kubectl::new(&srv);
    srv.load_yaml("apiVersion: v1\nkind: Pod\nmetadata:\n  name: s\nspec:\n  containers:\n  - name: c\n    image: i\n").unwrap();
    let mut pod: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "pod", "s", "-o", "json"]).await).unwrap();
    pod["status"]["phase"] = "Running".into();
    pod["spec"]["nodeName"] = "sneaky".into();
    let f = k.file("s.json", &pod.to_string());
    k.ok(&["replace", "--subresource=status", "-f", &f]).await;
    let stored = srv.store().get("", "pods", Some("default"), "s").unwrap();
    assert_eq!(stored["status"]["phase"], "Running");
    assert!(stored["spec"].get("nodeName").is_none());
    assert_eq!(
        srv.store()
            .count_writes("", "pods", Some("status"), "default", "s"),
        1
    );
}

#[tokio::test]
async fn get_watch_streams_changes() {
    require_kubectl!();
    let srv = common::server().await;
    let k = Kubectl::new(&srv);
    srv.load_yaml(CM).unwrap();
    let mut child = k
        .cmd(&["get", "configmaps", "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("NAME"), "{first}");
    let row = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(row.starts_with("one "), "{row}");
    srv.load_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n")
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next.starts_with("two "), "{next}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn kubeconfig_is_private_and_uses_tls() {
    let srv = common::server().await;
    let dir = tempfile::tempdir().unwrap();
    let p: &Path = &dir.path().join("kc");
    srv.write_kubeconfig(p, &UserInfo::admin()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(p).unwrap();
    assert!(
        text.contains("server: https://127.0.0.1:") && text.contains("certificate-authority-data:"),
        "{text}"
    );
    // kube::Client accepts it too.
    let kc = kube::config::Kubeconfig::read_from(p).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.git_version, "v1.37.0");
}

/// kubectl's typed commands send protobuf bodies (client-go falls back to JSON on a 415 only
/// for CBOR), so these failed with 415 before the emulator decoded protobuf for their kinds.
#[tokio::test]
async fn typed_create_commands_send_protobuf_and_work() {
    require_kubectl!();
    let srv = common::server().await;
    let k = Kubectl::new(&srv);
    let out = k.ok(&["create", "namespace", "typed"]).await;
    assert!(out.contains("namespace/typed created"), "{out}");
    let ns = k
        .ok(&[
            "get",
            "namespace",
            "typed",
            "-o",
            "jsonpath={.metadata.labels}",
        ])
        .await;
    assert!(
        ns.contains("\"kubernetes.io/metadata.name\":\"typed\""),
        "{ns}"
    );
    k.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "typed",
        "--from-literal=a=1",
    ])
    .await;
    let data = k
        .ok(&[
            "get",
            "configmap",
            "cfg",
            "-n",
            "typed",
            "-o",
            "jsonpath={.data.a}",
        ])
        .await;
    assert_eq!(data, "1");
    k.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "-n",
        "typed",
        "--from-literal=k=v",
    ])
    .await;
    let data = k
        .ok(&[
            "get",
            "secret",
            "sec",
            "-n",
            "typed",
            "-o",
            "jsonpath={.data.k}",
        ])
        .await;
    assert_eq!(data, "dg==", "base64 of \"v\"");
    k.ok(&["create", "serviceaccount", "sa", "-n", "typed"])
        .await;
    let can = k
        .ok(&["auth", "can-i", "create", "configmaps", "-n", "typed"])
        .await;
    assert_eq!(can.trim(), "yes");
    let (ok, _, err) = k.run(&["create", "namespace", "typed"]).await;
    assert!(!ok && err.contains("AlreadyExists"), "{err}");
}
