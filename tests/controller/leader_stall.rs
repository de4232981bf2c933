//! A leader whose Lease requests stall (held open, never answered) while its other requests
//! still go through must step down on its own timer, before another replica can take the
//! Lease, and write nothing from then on; the other replica takes over and issues.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fixtures::e2e::*;
use podcert_testkit::apiserver::{ServerConfig, TestServer};
use podcert_testkit::kubelet::KubeletVersion;
use podcert_testkit::rules::UserInfo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(40);
/// The stalled replica's own service account, so the emulator's write log tells the
/// replicas apart.
const STALLED_SA: &str = "podcert-signer-stalled";

/// A TCP proxy in front of the emulator (plain HTTP/1.1). Once `stall` is set, a connection
/// that carries a request to a Lease path is held: that request and everything after it on
/// the connection is never forwarded, and nothing is answered or closed by the proxy.
struct Proxy {
    addr: SocketAddr,
    stall: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stall = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let (s, h) = (stall.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(client, server, s.clone(), h.clone()));
            }
        });
        Proxy { addr, stall, held }
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    stall: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    // The end of the previous read, so a path split across two reads is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match cr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut window = std::mem::take(&mut tail);
        window.extend_from_slice(&buf[..n]);
        if stall.load(Ordering::SeqCst) && window.windows(7).any(|w| w == b"/leases") {
            held.fetch_add(1, Ordering::SeqCst);
            // Hold: swallow whatever the client sends until it gives up and closes.
            while let Ok(n) = cr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            break;
        }
        tail = window[window.len().saturating_sub(16)..].to_vec();
        if sw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    down.abort();
}

async fn leader_metric(s: &Signer) -> Option<bool> {
    let (code, m) = s.get("/metrics").await;
    if code != 200 {
        return None;
    }
    // Whole lines: the HELP text also starts with "podcert_leader 1".
    m.lines().find_map(|l| match l.trim() {
        "podcert_leader 1" => Some(true),
        "podcert_leader 0" => Some(false),
        _ => None,
    })
}

/// The chart's roles, bound to a second service account.
fn second_account_rbac() -> String {
    format!(
        "---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {STALLED_SA}
  namespace: {SIGNER_NS}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {STALLED_SA}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: podcert-signer
subjects:
  - kind: ServiceAccount
    name: {STALLED_SA}
    namespace: {SIGNER_NS}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {STALLED_SA}
  namespace: {SIGNER_NS}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: podcert-signer
subjects:
  - kind: ServiceAccount
    name: {STALLED_SA}
    namespace: {SIGNER_NS}
"
    )
}

/// A kubeconfig for plain HTTP through `proxy` (the emulator serves HTTP and HTTPS on one
/// port), authenticating with `token`.
fn proxied_kubeconfig(path: &std::path::Path, proxy: SocketAddr, token: &str) {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "proxied", "cluster": {"server": format!("http://{proxy}")}}],
        "users": [{"name": STALLED_SA, "user": {"token": token}}],
        "contexts": [{"name": "proxied", "context": {"cluster": "proxied", "user": STALLED_SA, "namespace": "default"}}],
        "current-context": "proxied",
    });
    std::fs::write(path, serde_json::to_string(&doc).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_requests_stall_steps_down_before_another_can_lead() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    server.load_yaml(&second_account_rbac()).unwrap();
    let stalled_user = UserInfo::service_account(SIGNER_NS, STALLED_SA);
    let other_user = signer_identity();
    let dir = tempfile::tempdir().unwrap();
    ca_init(&dir.path().join("ca"));
    let cert = dir.path().join("ca/ca.crt").display().to_string();
    let key = dir.path().join("ca/ca.key").display().to_string();
    let args = [
        "--signer-name",
        SIGNER,
        "--trust-domain",
        "cluster.local",
        "--ca-cert",
        &cert,
        "--ca-key",
        &key,
        "--leader-election=true",
        "--leader-election-namespace",
        SIGNER_NS,
        // What is tested is the leader's own step-down: only the leader decides.
        "--ha-mode",
        "leader",
    ];

    // Replica A goes through the proxy and leads first; replica B talks to the emulator directly.
    let upstream: SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();
    let proxy = Proxy::start(upstream).await;
    let kc = dir.path().join("replica-a.kubeconfig");
    proxied_kubeconfig(&kc, proxy.addr, &server.token_for(&stalled_user));
    let a = spawn_with_kubeconfig(&kc, dir.path(), "replica-a", &args);
    a.wait_ready(WAIT).await;
    eventually(
        WAIT,
        || format!("replica-a never led:\n{}", a.logs()),
        || async { (lease_holder(&server).await.as_deref() == Some("replica-a")).then_some(()) },
    )
    .await;
    let b = spawn_run(&server, dir.path(), "replica-b", &args);
    b.wait_ready(WAIT).await;
    let first = kubelets(&server, KubeletVersion::V1_37, 4, "a", |_| {}).await;
    assert_eq!(first.wait_settled(WAIT).await.unwrap().issued, 4);
    assert_eq!(leader_metric(&a).await, Some(true));
    assert_eq!(leader_metric(&b).await, Some(false));

    // A's Lease requests now hang; everything else it sends still goes through.
    proxy.stall.store(true, Ordering::SeqCst);
    let stalled_at = Instant::now();

    // A gives up leading on its own timer, while the Lease still names it (B cannot take it
    // before the lease duration has passed without a renewal).
    eventually(
        WAIT,
        || format!("replica-a kept leading:\n{}", a.logs()),
        || async { (leader_metric(&a).await == Some(false)).then_some(()) },
    )
    .await;
    let stepped_down = stalled_at.elapsed();
    let a_down_log = server.store().writes().len();
    assert_ne!(
        lease_holder(&server).await.as_deref(),
        Some("replica-b"),
        "replica-b took the lease before replica-a stepped down"
    );
    assert!(
        proxy.held.load(Ordering::SeqCst) > 0,
        "no Lease request was held"
    );

    // B takes over.
    eventually(
        WAIT,
        || format!("replica-b never led:\n{}", b.logs()),
        || async { (lease_holder(&server).await.as_deref() == Some("replica-b")).then_some(()) },
    )
    .await;
    let took_over = stalled_at.elapsed();
    eprintln!("replica-a stepped down {stepped_down:?} after the stall, replica-b led after {took_over:?}");
    assert!(stepped_down < took_over);
    eventually(
        WAIT,
        || "replica-b's podcert_leader never became 1".into(),
        || async { (leader_metric(&b).await == Some(true)).then_some(()) },
    )
    .await;

    // Requests made now are issued by B alone.
    let second = kubelets(&server, KubeletVersion::V1_37, 6, "b", |_| {}).await;
    assert_eq!(second.wait_settled(WAIT).await.unwrap().issued, 6);
    assert_eq!(leader_metric(&a).await, Some(false));

    let writes = server.store().writes();
    // Where B first wrote the Lease: its acquisition (as a standby it only read it).
    let acquired = writes
        .iter()
        .position(|w| w.resource == "leases" && w.username == other_user.username)
        .expect("replica-b's Lease write");
    assert!(acquired >= a_down_log);
    // Nothing from A once it stepped down (Events excluded: best-effort notes about decisions
    // already written, never state).
    let late: Vec<_> = writes[a_down_log..]
        .iter()
        .filter(|w| w.username == stalled_user.username && w.resource != "events")
        .map(|w| {
            format!(
                "{} {}/{} {}/{}",
                w.verb, w.resource, w.subresource, w.namespace, w.name
            )
        })
        .collect();
    assert!(
        late.is_empty(),
        "replica-a wrote after stepping down: {late:?}"
    );
    let by_b = writes[acquired..]
        .iter()
        .filter(|w| {
            w.resource == "podcertificaterequests"
                && w.subresource == "status"
                && w.username == other_user.username
        })
        .count();
    assert_eq!(by_b, 6, "replica-b should have decided the 6 new requests");
    drop((a, b));
    server.shutdown().await;
}
