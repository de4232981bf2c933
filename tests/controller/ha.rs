//! Two replicas with Lease-based leader election: only the leader writes, and a killed leader
//! is replaced without losing or double-writing a request.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_is_written_twice() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    // A shared CA in files, as a mounted Secret would give both replicas.
    ca_init(&dir.path().join("ca"));
    let cert = dir.path().join("ca/ca.crt").display().to_string();
    let key = dir.path().join("ca/ca.key").display().to_string();
    let args = [
        "--ca-cert",
        &cert,
        "--ca-key",
        &key,
        "--leader-election=true",
        "--leader-election-namespace",
        SIGNER_NS,
    ];
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
