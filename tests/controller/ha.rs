//! Replicas with Lease-based leader election. Leader mode: only the leader writes, and a
//! killed leader is replaced without losing or double-writing a request. Active-active (the
//! default): every replica decides its own share, a dead replica's share is taken over, and
//! still every request's status is written once.

use std::time::{Duration, Instant};

use crate::fixtures::e2e::*;
use podcert_testkit::apiserver::{ServerConfig, TestServer};
use podcert_testkit::kubelet::KubeletVersion;

const WAIT: Duration = Duration::from_secs(40);

async fn wait_holder(server: &TestServer, not: Option<&str>) -> String {
    let start = Instant::now();
    loop {
        if let Some(h) = lease_holder(server)
            .await
            .filter(|h| !h.is_empty() && Some(h.as_str()) != not)
        {
            return h;
        }
        assert!(start.elapsed() < WAIT, "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The emulator with the chart's RBAC, and a directory with a CA in files.
async fn start() -> (TestServer, tempfile::TempDir) {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    ca_init(&dir.path().join("ca"));
    (server, dir)
}

/// Flags of a replica: the shared CA in files (as a mounted Secret gives every replica) and
/// leader election on, plus `extra`.
fn replica_args(dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--ca-cert".to_string(),
        dir.join("ca/ca.crt").display().to_string(),
        "--ca-key".to_string(),
        dir.join("ca/ca.key").display().to_string(),
        "--leader-election=true".to_string(),
        "--leader-election-namespace".to_string(),
        SIGNER_NS.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_is_written_twice() {
    let (server, dir) = start().await;
    let args = replica_args(dir.path(), &["--ha-mode", "leader"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut replicas = vec![
        spawn_signer(&server, dir.path(), "replica-0", &args),
        spawn_signer(&server, dir.path(), "replica-1", &args),
    ];
    for r in &replicas {
        r.wait_ready(WAIT).await;
    }
    let leader = wait_holder(&server, None).await;
    let fleet = kubelets(&server, KubeletVersion::V1_37, 6, "a", |_| {}).await;
    assert_eq!(fleet.wait_settled(WAIT).await.unwrap().issued, 6);

    // Crash the leader (no lease release): the standby takes over once the lease expires.
    let idx = if leader == "replica-0" { 0 } else { 1 };
    let killed = Instant::now();
    replicas[idx].kill();
    let next = wait_holder(&server, Some(&leader)).await;
    let failover = killed.elapsed();
    eprintln!("failover after SIGKILL: {failover:?} ({leader} -> {next})");
    assert_ne!(next, leader);
    let more = kubelets(&server, KubeletVersion::V1_37, 6, "b", |_| {}).await;
    assert_eq!(more.wait_settled(WAIT).await.unwrap().issued, 6);
    let survivor = &replicas[1 - idx];
    let (_, m) = survivor.get("/metrics").await;
    // Whole lines: the HELP text also starts with "podcert_leader 1".
    assert!(m.lines().any(|l| l == "podcert_leader 1"), "{m}");

    // A graceful stop releases the lease at once: a fresh replica takes over.
    let fresh = spawn_signer(&server, dir.path(), "replica-2", &args);
    fresh.wait_ready(WAIT).await;
    replicas[1 - idx].terminate();
    let third = wait_holder(&server, Some(&next)).await;
    assert_eq!(third, "replica-2");
    assert!(
        replicas[1 - idx].logs().contains("released the lease"),
        "{}",
        replicas[1 - idx].logs()
    );
    let last = kubelets(&server, KubeletVersion::V1_37, 3, "c", |_| {}).await;
    assert_eq!(last.wait_settled(WAIT).await.unwrap().issued, 3);

    // Every request's status was written exactly once, whoever led.
    let mut per_object = std::collections::HashMap::new();
    for w in server.store().writes() {
        if w.resource == "podcertificaterequests" && w.subresource == "status" {
            *per_object
                .entry((w.namespace.clone(), w.name.clone()))
                .or_insert(0) += 1;
        }
    }
    assert_eq!(per_object.len(), 15);
    assert!(per_object.values().all(|n| *n == 1), "{per_object:?}");
    drop(fresh);
    server.shutdown().await;
}

/// The counter's value summed over its series (0 when absent).
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn status_writes(server: &TestServer) -> std::collections::HashMap<(String, String), usize> {
    let mut per_object = std::collections::HashMap::new();
    for w in server.store().writes() {
        if w.resource == "podcertificaterequests" && w.subresource == "status" {
            *per_object
                .entry((w.namespace.clone(), w.name.clone()))
                .or_insert(0) += 1;
        }
    }
    per_object
}

async fn member_leases(server: &TestServer) -> Vec<String> {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: kube::Api<Lease> = kube::Api::namespaced(server.admin_client(), SIGNER_NS);
    let lp = kube::api::ListParams::default().labels("podcert.dev/member-of=podcert-signer");
    let mut holders: Vec<String> = api
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|l| l.spec?.holder_identity)
        .collect();
    holders.sort();
    holders
}

/// Member Lease objects, held or released.
async fn member_lease_objects(server: &TestServer) -> usize {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: kube::Api<Lease> = kube::Api::namespaced(server.admin_client(), SIGNER_NS);
    let lp = kube::api::ListParams::default().labels("podcert.dev/member-of=podcert-signer");
    api.list(&lp).await.unwrap().items.len()
}

/// Active-active: `/readyz` answers 200 only once the replica counts itself a member (its
/// member Lease held and itself among the live members), so a lone replica never reports ready
/// while every request would wait for a hedge, and a rolling update waits for the new member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_active_replica_is_ready_only_as_a_member() {
    let (server, dir) = start().await;
    let args = replica_args(dir.path(), &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let replica = spawn_signer(&server, dir.path(), "replica-0", &args);
    let start = Instant::now();
    loop {
        let (code, body) = replica.get("/readyz").await;
        if code == 200 {
            break;
        }
        assert!(start.elapsed() < WAIT, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(member_leases(&server).await, ["replica-0"]);
    let (_, m) = replica.get("/metrics").await;
    assert!(m.lines().any(|l| l == "podcert_members 1"), "{m}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_replicas_share_the_work_and_take_over_a_dead_ones() {
    let (server, dir) = start().await;
    // Active-active is the default: no --ha-mode.
    let args = replica_args(dir.path(), &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut replicas = vec![
        spawn_signer(&server, dir.path(), "replica-0", &args),
        spawn_signer(&server, dir.path(), "replica-1", &args),
    ];
    for r in &replicas {
        r.wait_ready(WAIT).await;
    }
    // Both announce themselves, and each sees both.
    let start = Instant::now();
    loop {
        let mut all = true;
        for r in &replicas {
            let (_, m) = r.get("/metrics").await;
            all &= m.lines().any(|l| l == "podcert_members 2");
        }
        if all && member_leases(&server).await == ["replica-0", "replica-1"] {
            break;
        }
        assert!(start.elapsed() < WAIT, "the replicas never saw each other");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 24 requests: each replica decides its own share (rendezvous hashing of the UID; the
    // chance that one of them owns none is 2^-23).
    let fleet = kubelets(&server, KubeletVersion::V1_37, 24, "a", |_| {}).await;
    assert_eq!(fleet.wait_settled(WAIT).await.unwrap().issued, 24);
    for r in &replicas {
        let (_, m) = r.get("/metrics").await;
        assert!(
            counter(&m, "podcert_issued_total") >= 1.0,
            "{}: {m}",
            r.log.display()
        );
    }

    // SIGKILL one (its member Lease stays, unrenewed): the survivor decides the dead one's
    // share too — after the hedge delay while the Lease still looks live, at once when it has
    // expired (which of the two depends on timing; `controller::tests` covers the hedge).
    let (_, m) = replicas[1].get("/metrics").await;
    let before = counter(&m, "podcert_issued_total");
    replicas[0].kill();
    let more = kubelets(&server, KubeletVersion::V1_37, 16, "b", |_| {}).await;
    assert_eq!(more.wait_settled(WAIT).await.unwrap().issued, 16);
    let (_, m) = replicas[1].get("/metrics").await;
    assert_eq!(
        counter(&m, "podcert_issued_total") - before,
        16.0,
        "the survivor should have decided all 16: {m}"
    );

    // A graceful stop releases the member Lease at once (no holder: not listed below).
    let fresh = spawn_signer(&server, dir.path(), "replica-2", &args);
    fresh.wait_ready(WAIT).await;
    let has = |leases: &[String], who: &str| leases.iter().any(|l| l == who);
    let start = Instant::now();
    while !has(&member_leases(&server).await, "replica-2") {
        assert!(start.elapsed() < WAIT, "{:?}", member_leases(&server).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(has(&member_leases(&server).await, "replica-1"));
    replicas[1].terminate();
    let start = Instant::now();
    while has(&member_leases(&server).await, "replica-1") {
        assert!(start.elapsed() < WAIT, "{:?}", member_leases(&server).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = kubelets(&server, KubeletVersion::V1_37, 4, "c", |_| {}).await;
    assert_eq!(last.wait_settled(WAIT).await.unwrap().issued, 4);

    // A new replica takes over the released Lease instead of adding one: still three Lease
    // objects (replica-0's, SIGKILLed, is not free before two minutes).
    let objects = member_lease_objects(&server).await;
    assert_eq!(objects, 3, "{:?}", member_leases(&server).await);
    let another = spawn_signer(&server, dir.path(), "replica-3", &args);
    another.wait_ready(WAIT).await;
    let start = Instant::now();
    while !has(&member_leases(&server).await, "replica-3") {
        assert!(start.elapsed() < WAIT, "{:?}", member_leases(&server).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(member_lease_objects(&server).await, 3);
    drop(another);

    // Racing replicas end in one write and a refused one: every status written once.
    let per_object = status_writes(&server);
    assert_eq!(per_object.len(), 44);
    assert!(per_object.values().all(|n| *n == 1), "{per_object:?}");
    drop(fresh);
    server.shutdown().await;
}
