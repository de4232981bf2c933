//! CA rotation of a bootstrapped CA, end to end against the emulator with the real binary: a
//! manual rotation while the kubelet emulator keeps refreshing and two mTLS workloads keep
//! talking (zero failed exchanges), a leader killed in the middle of a rotation, and an
//! emergency drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fixtures::ca::pem_blocks;
use crate::fixtures::e2e::*;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DynamicObject};
use podcert_core::rotation::{RotationState, STATE_KEY};
use podcert_testkit::apiserver::{ServerConfig, TestServer};
use podcert_testkit::kubelet::{
    bundle::bundle_path, Clock, KeyType, KubeletHandle, KubeletVersion, Phase,
};
use podcert_workload::{AllowList, Client, Material, ServeConfig};
use std::collections::BTreeMap;
use x509_parser::prelude::{FromDer, X509Certificate};

const WAIT: Duration = Duration::from_secs(40);
const SECRET: &str = "podcert-signer-ca";

async fn published_roots(server: &TestServer) -> Vec<Vec<u8>> {
    pem_blocks(&published_bundle(server).await.unwrap_or_default())
}

async fn state(server: &TestServer) -> Option<RotationState> {
    let api: Api<Secret> = Api::namespaced(server.admin_client(), SIGNER_NS);
    let s = api.get_opt(SECRET).await.ok().flatten()?;
    let json = s.data?.get(STATE_KEY)?.0.clone();
    RotationState::from_json(&String::from_utf8(json).ok()?).ok()
}

/// A CA made by `ca init`, stored as the CA Secret the way an operator would have before
/// rotation existed (tls.crt and tls.key, no state); returns its certificate PEM.
fn existing_ca_secret(server: &TestServer, dir: &Path) -> String {
    let cert = ca_init(&dir.join("ca"));
    let key = std::fs::read_to_string(dir.join("ca/ca.key")).unwrap();
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    server
        .load_yaml(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {SECRET}\n  namespace: {SIGNER_NS}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
            b64(&cert),
            b64(&key)
        ))
        .unwrap();
    cert
}

fn root_der(cert_pem: &str) -> Vec<u8> {
    pem_blocks(cert_pem).remove(0)
}

async fn event_reasons(server: &TestServer) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(server.admin_client(), SIGNER_NS);
    api.list(&Default::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(SECRET))
                .map(|e| (e.reason.unwrap_or_default(), e.type_.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// The issuer (raw subject DER) of the leaf in a pod's credential bundle.
fn leaf_issuer(bundle: &Path) -> Option<Vec<u8>> {
    let text = std::fs::read_to_string(bundle).ok()?;
    let blocks = pem::parse_many(text).ok()?;
    let leaf = blocks.iter().find(|b| b.tag() == "CERTIFICATE")?;
    let (_, c) = X509Certificate::from_der(leaf.contents()).ok()?;
    Some(c.issuer().as_raw().to_vec())
}

fn subject_of(cert_pem: &str) -> Vec<u8> {
    let der = root_der(cert_pem);
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    c.subject().as_raw().to_vec()
}

fn bootstrap_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec![
        "--ca-secret",
        "podcert-system/podcert-signer-ca",
        "--ca-bootstrap",
        "--ca-reload-interval",
        "200ms",
    ];
    v.extend_from_slice(extra);
    v
}

/// How long the emulated kubelet takes to project a changed ClusterTrustBundle into the pods
/// (the real one re-projects on its pod sync, within about a minute). Shorter than the
/// propagation delay the tests configure: with none, the rotation would break connections.
const PROJECTION_LAG: Duration = Duration::from_millis(1500);

/// Copies the published bundle into a file [`PROJECTION_LAG`] after each change, as the
/// kubelet projects a ClusterTrustBundle into a pod volume.
fn project_bundle(server: &TestServer, path: PathBuf, stop: Arc<AtomicBool>) {
    let client = server.admin_client();
    tokio::spawn(async move {
        let api: Api<DynamicObject> = Api::all_with(client, &ctb_resource("v1"));
        let mut seen = String::new();
        let mut queue: std::collections::VecDeque<(Instant, String)> = Default::default();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(Some(o)) = api.get_opt(BUNDLE).await {
                if let Some(text) = o.data["spec"]["trustBundle"].as_str() {
                    if text != seen {
                        let due = if seen.is_empty() {
                            Instant::now()
                        } else {
                            Instant::now() + PROJECTION_LAG
                        };
                        queue.push_back((due, text.to_string()));
                        seen = text.to_string();
                    }
                }
            }
            while queue.front().is_some_and(|(due, _)| *due <= Instant::now()) {
                let (_, text) = queue.pop_front().unwrap();
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

fn issued_counts(fleet: &KubeletHandle) -> Vec<u32> {
    fleet
        .states()
        .iter()
        .map(|s| match s.phase {
            Phase::Issued { issued_count, .. } => issued_count,
            _ => 0,
        })
        .collect()
}

/// Makes every pod refresh its certificate again and again: moves the kubelets' clock past
/// beginRefreshAt until each pod got a new certificate, then back, and repeats.
fn keep_refreshing(fleet: Arc<KubeletHandle>, clock: Clock, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let before = issued_counts(&fleet);
            clock.set_offset(time::Duration::hours(25));
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10)
                && !issued_counts(&fleet)
                    .iter()
                    .zip(&before)
                    .all(|(now, then)| now > then)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            clock.set_offset(time::Duration::ZERO);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

#[derive(Default)]
struct Tally {
    ok: usize,
    failed: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_rotation_breaks_no_connection_and_keeps_the_old_root() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        // The preview time is short here so that the live bundle (which the workloads mount)
        // has most of the 3 s to reach them: the default, half the delay, is for real delays.
        &bootstrap_args(&[
            "--ca-propagation-delay",
            "3s",
            "--trust-bundle-preview-duration",
            "500ms",
            "--leader-election=false",
        ]),
    );
    signer.wait_ready(WAIT).await;
    let pods = dir.path().join("pods");
    let pods_dir = pods.clone();
    let clock = Clock::system();
    let kubelet_clock = clock.clone();
    let fleet = Arc::new(
        kubelets(&server, KubeletVersion::V1_37, 2, "rot", |c| {
            c.key_types = vec![KeyType::EcdsaP256];
            c.out_dir = Some(pods_dir);
            c.clock = kubelet_clock;
        })
        .await,
    );
    assert_eq!(fleet.wait_settled(WAIT).await.unwrap().issued, 2);
    let before = eventually(
        WAIT,
        || "timed out waiting for the bootstrapped state".into(),
        || state(&server),
    )
    .await;
    let old = before.active.clone();

    // The workloads: pod 0 serves, pod 1 calls, both reload their projected files.
    let stop = Arc::new(AtomicBool::new(false));
    let trust = dir.path().join("trust-bundle.pem");
    eventually(
        WAIT,
        || "timed out waiting for the published bundle".into(),
        || published_bundle(&server),
    )
    .await;
    project_bundle(&server, trust.clone(), stop.clone());
    eventually(
        WAIT,
        || "timed out waiting for the projected bundle".into(),
        || async { trust.exists().then_some(()) },
    )
    .await;
    let states = fleet.states();
    let files: Vec<PathBuf> = states
        .iter()
        .map(|s| bundle_path(&pods, &s.namespace, &s.pod))
        .collect();
    let provider = podcert_workload::tls::provider();
    let s_material = Material::load(&files[0], &trust, provider.clone()).unwrap();
    let c_material = Material::load(&files[1], &trust, provider).unwrap();
    let reload_stop = |s: Arc<AtomicBool>| async move {
        while !s.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    s_material.spawn_reloader(Duration::from_millis(50), reload_stop(stop.clone()));
    c_material.spawn_reloader(Duration::from_millis(50), reload_stop(stop.clone()));
    let allow = AllowList::parse(&["spiffe://cluster.local/*"]).unwrap();
    let addr = podcert_workload::serve(
        ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            material: s_material,
            allow: allow.clone(),
            events: None,
        },
        reload_stop(stop.clone()),
    )
    .await
    .unwrap();
    let client = Client::new(c_material, allow).unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    {
        let (tally, stop) = (tally.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client.call_once(addr).await;
                {
                    let mut t = tally.lock().unwrap();
                    match r {
                        Ok(_) => t.ok += 1,
                        Err(e) => t.failed.push(e.to_string()),
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    keep_refreshing(fleet.clone(), clock, stop.clone());
    eventually(
        WAIT,
        || "timed out waiting for first exchanges".into(),
        || async { (tally.lock().unwrap().ok >= 5).then_some(()) },
    )
    .await;

    // The operator asks for a rotation.
    let out = ca_rotate(&server, dir.path(), &[]);
    assert!(out.contains("No connection breaks"), "{out}");
    assert!(out.contains(&old.fingerprint_sha256), "{out}");
    let next = eventually(
        WAIT,
        || "timed out waiting for a prepared CA".into(),
        || async { state(&server).await.and_then(|s| s.next) },
    )
    .await;
    // Its root is published at once, next to the active one.
    eventually(
        WAIT,
        || "timed out waiting for both roots published".into(),
        || async {
            let roots = published_roots(&server).await;
            (roots.contains(&root_der(&old.cert_pem)) && roots.contains(&root_der(&next.cert_pem)))
                .then_some(())
        },
    )
    .await;
    // After the propagation delay the new CA signs; the old one is retired, not dropped.
    let after = eventually(
        WAIT,
        || "timed out waiting for the prepared CA signing".into(),
        || async {
            state(&server)
                .await
                .filter(|s| s.active.fingerprint_sha256 == next.fingerprint_sha256)
        },
    )
    .await;
    assert_eq!(after.retired.len(), 1);
    assert_eq!(after.retired[0].fingerprint_sha256, old.fingerprint_sha256);
    assert!(
        after.retired[0].key_pem.is_none(),
        "a retired CA's key is not kept"
    );
    let new_subject = subject_of(&next.cert_pem);
    assert_ne!(
        new_subject,
        subject_of(&old.cert_pem),
        "two CAs are told apart by name"
    );
    eventually(
        WAIT,
        || {
            format!(
                "timed out waiting for {}",
                "both pods holding leaves of the new CA"
            )
        },
        || async {
            files
                .iter()
                .all(|f| leaf_issuer(f).as_ref() == Some(&new_subject))
                .then_some(())
        },
    )
    .await;
    let ok_then = tally.lock().unwrap().ok;
    eventually(
        WAIT,
        || "timed out waiting for exchanges with the new leaves".into(),
        || async { (tally.lock().unwrap().ok >= ok_then + 5).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let refreshes = issued_counts(&fleet);
    assert!(
        refreshes.iter().all(|n| *n >= 3),
        "pods kept refreshing: {refreshes:?}"
    );
    let (ok, failed) = {
        let t = tally.lock().unwrap();
        (t.ok, t.failed.clone())
    };
    assert!(failed.is_empty(), "failed exchanges: {failed:?}");
    eprintln!(
        "{ok} mTLS exchanges across the rotation, none failed; certificates issued per pod: {refreshes:?}"
    );

    // The old root stays published (its leaves may live up to the maximum lifetime).
    let roots = published_roots(&server).await;
    assert!(roots.contains(&root_der(&old.cert_pem)));
    assert!(roots.contains(&root_der(&next.cert_pem)));
    // The Secret stays a valid TLS Secret of the active CA.
    let secret: Secret = Api::namespaced(server.admin_client(), SIGNER_NS)
        .get(SECRET)
        .await
        .unwrap();
    let data = secret.data.unwrap();
    assert_eq!(data["tls.crt"].0, next.cert_pem.as_bytes());
    assert_eq!(
        pem_blocks(&String::from_utf8(data["ca.crt"].0.clone()).unwrap()),
        roots
    );
    // Metrics and Events.
    let (_, m) = signer.get("/metrics").await;
    assert!(
        m.contains(
            r#"podcert_ca_rotation_phase{signer_name="podcert.dev/spiffe",phase="Draining"} 1"#
        ),
        "{m}"
    );
    let old_label = format!(
        r#"podcert_ca_certificate_not_after_timestamp_seconds{{signer_name="podcert.dev/spiffe",role="retired",fingerprint="{}"}} {}"#,
        &old.fingerprint_sha256[..16],
        old.not_after.unix_timestamp()
    );
    assert!(m.contains(&old_label), "{old_label}\n{m}");
    let reasons = eventually(
        WAIT,
        || "timed out waiting for rotation events".into(),
        || async {
            let r = event_reasons(&server).await;
            (r.iter().any(|(x, _)| x == "CAPrepared") && r.iter().any(|(x, _)| x == "CAActivated"))
                .then_some(r)
        },
    )
    .await;
    assert!(reasons.iter().all(|(_, t)| t == "Normal"), "{reasons:?}");
    if let Ok(f) = Arc::try_unwrap(fleet) {
        f.shutdown().await;
    }
    server.shutdown().await;
}

/// A ClusterTrustBundle's roots (DER) and labels, if it exists.
async fn bundle(
    server: &TestServer,
    name: &str,
) -> Option<(Vec<Vec<u8>>, BTreeMap<String, String>)> {
    let api: Api<DynamicObject> = Api::all_with(server.admin_client(), &ctb_resource("v1"));
    let o = api.get_opt(name).await.ok().flatten()?;
    Some((
        pem_blocks(o.data["spec"]["trustBundle"].as_str().unwrap_or_default()),
        o.metadata.labels.unwrap_or_default(),
    ))
}

/// SPIFFE Filesystem Delivery canarying: the next CA's root is in the preview bundle first,
/// in the live one after the preview time, and live before the CA signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_root_is_previewed_before_it_goes_live() {
    const PREVIEW: &str = "podcert.dev:spiffe:preview";
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let _signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &bootstrap_args(&[
            "--ca-propagation-delay",
            "8s",
            "--trust-bundle-preview-duration",
            "4s",
            "--leader-election=false",
        ]),
    );
    let before = eventually(WAIT, || "no bootstrapped state".into(), || state(&server)).await;
    let old = root_der(&before.active.cert_pem);
    // Both bundles, labelled for Filesystem Delivery; a fresh install is live at once.
    let (live, live_labels) =
        eventually(WAIT, || "no live bundle".into(), || bundle(&server, BUNDLE)).await;
    let (preview, preview_labels) = eventually(
        WAIT,
        || "no preview bundle".into(),
        || bundle(&server, PREVIEW),
    )
    .await;
    assert_eq!((live, preview), (vec![old.clone()], vec![old.clone()]));
    for (labels, canary) in [(&live_labels, "live"), (&preview_labels, "preview")] {
        assert_eq!(labels["k8s.spiffe.io/canarying"], canary, "{labels:?}");
        assert_eq!(
            labels["k8s.spiffe.io/workload-trust-domain"],
            "cluster.local"
        );
        assert_eq!(labels["k8s.spiffe.io/peer-trust-domain"], "cluster.local");
    }

    ca_rotate(&server, dir.path(), &[]);
    let next = eventually(
        WAIT,
        || "no prepared CA".into(),
        || async { state(&server).await.and_then(|s| s.next) },
    )
    .await;
    let next_root = root_der(&next.cert_pem);
    // In preview while live still has only the active root.
    eventually(
        WAIT,
        || "the next root never previewed alone".into(),
        || async {
            let (p, _) = bundle(&server, PREVIEW).await?;
            let (l, _) = bundle(&server, BUNDLE).await?;
            (p.contains(&next_root) && !l.contains(&next_root)).then_some(())
        },
    )
    .await;
    // Then live; and it was live before the next CA signed (checked at the moment the state
    // shows it active: the publisher writes live before the step that activates it).
    let start = Instant::now();
    let mut live_before_active = None;
    loop {
        let live = bundle(&server, BUNDLE)
            .await
            .map(|(l, _)| l)
            .unwrap_or_default();
        let active = state(&server).await.map(|s| s.active.fingerprint_sha256);
        let signing = active.as_deref() == Some(next.fingerprint_sha256.as_str());
        if live.contains(&next_root) && live_before_active.is_none() {
            live_before_active = Some(!signing);
        }
        if signing {
            break;
        }
        assert!(start.elapsed() < WAIT, "the next CA never signed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        live_before_active,
        Some(true),
        "the live bundle got the next root only after its CA signed"
    );
    // Both bundles end with the same roots (written one after the other: wait for the second).
    let l = eventually(
        WAIT,
        || "the bundles never converged".into(),
        || async {
            let (mut l, _) = bundle(&server, BUNDLE).await?;
            let (mut p, _) = bundle(&server, PREVIEW).await?;
            l.sort();
            p.sort();
            (l == p).then_some(l)
        },
    )
    .await;
    assert!(l.contains(&old) && l.contains(&next_root));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_finishes_the_rotation_it_did_not_start() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let args = bootstrap_args(&[
        "--ca-propagation-delay",
        "5s",
        "--leader-election=true",
        "--leader-election-namespace",
        "podcert-system",
    ]);
    let mut replicas = vec![
        spawn_signer(&server, dir.path(), "replica-0", &args),
        spawn_signer(&server, dir.path(), "replica-1", &args),
    ];
    for r in &replicas {
        r.wait_ready(WAIT).await;
    }
    let leader = eventually(
        WAIT,
        || "timed out waiting for a leader".into(),
        || lease_holder(&server),
    )
    .await;
    let old = eventually(
        WAIT,
        || "timed out waiting for the bootstrapped state".into(),
        || state(&server),
    )
    .await
    .active;

    ca_rotate(&server, dir.path(), &[]);
    let next = eventually(
        WAIT,
        || "timed out waiting for a prepared CA".into(),
        || async { state(&server).await.and_then(|s| s.next) },
    )
    .await;
    // Crash the leader while the rotation is Prepared.
    let idx = if leader == "replica-0" { 0 } else { 1 };
    replicas[idx].kill();
    assert!(
        state(&server).await.unwrap().next.is_some(),
        "the killed leader had not activated yet"
    );
    let survivor = &replicas[1 - idx];
    eventually(
        WAIT,
        || "timed out waiting for a new leader".into(),
        || async { lease_holder(&server).await.filter(|h| *h != leader) },
    )
    .await;
    // The survivor activates the very CA the killed leader prepared (not a new one).
    let after = eventually(
        WAIT,
        || "timed out waiting for the prepared CA signing".into(),
        || async {
            state(&server)
                .await
                .filter(|s| s.active.fingerprint_sha256 != old.fingerprint_sha256)
        },
    )
    .await;
    assert_eq!(after.active.fingerprint_sha256, next.fingerprint_sha256);
    assert_eq!(after.retired[0].fingerprint_sha256, old.fingerprint_sha256);
    assert!(after.next.is_none());
    eventually(
        WAIT,
        || {
            format!(
                "timed out waiting for {}",
                "the survivor reporting the activation"
            )
        },
        || async { survivor.logs().contains("now signs").then_some(()) },
    )
    .await;
    let roots = eventually(
        WAIT,
        || {
            format!(
                "timed out waiting for {}",
                "both roots published by the survivor"
            )
        },
        || async {
            let roots = published_roots(&server).await;
            (roots.len() == 2).then_some(roots)
        },
    )
    .await;
    assert!(roots.contains(&root_der(&old.cert_pem)) && roots.contains(&root_der(&next.cert_pem)));
    // And it signs with it.
    let pods = dir.path().join("pods");
    let pods_dir = pods.clone();
    let fleet = kubelets(&server, KubeletVersion::V1_37, 2, "after", |c| {
        c.key_types = vec![KeyType::EcdsaP256];
        c.out_dir = Some(pods_dir);
    })
    .await;
    assert_eq!(fleet.wait_settled(WAIT).await.unwrap().issued, 2);
    for s in fleet.states() {
        assert_eq!(
            leaf_issuer(&bundle_path(&pods, &s.namespace, &s.pod)),
            Some(subject_of(&next.cert_pem))
        );
    }
    fleet.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_drops_the_compromised_root_at_once() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &bootstrap_args(&["--leader-election=false"]),
    );
    signer.wait_ready(WAIT).await;
    let old = eventually(
        WAIT,
        || "timed out waiting for the bootstrapped state".into(),
        || state(&server),
    )
    .await
    .active;
    eventually(
        WAIT,
        || "timed out waiting for the root published".into(),
        || async {
            (published_roots(&server).await == vec![root_der(&old.cert_pem)]).then_some(())
        },
    )
    .await;

    let out = ca_rotate(&server, dir.path(), &["--emergency"]);
    assert!(out.contains("EMERGENCY"), "{out}");
    assert!(out.contains("CONSEQUENCE"), "{out}");
    assert!(out.contains(&old.fingerprint_sha256), "{out}");
    // Gone from the bundle at once (no drain), a fresh CA signs without a propagation delay.
    let after = eventually(
        WAIT,
        || "timed out waiting for a fresh CA".into(),
        || async {
            state(&server)
                .await
                .filter(|s| s.active.fingerprint_sha256 != old.fingerprint_sha256)
        },
    )
    .await;
    assert!(
        after.retired.is_empty() && after.next.is_none(),
        "{after:?}"
    );
    eventually(
        WAIT,
        || "timed out waiting for only the fresh root published".into(),
        || async {
            (published_roots(&server).await == vec![root_der(&after.active.cert_pem)]).then_some(())
        },
    )
    .await;
    let fleet = kubelets(&server, KubeletVersion::V1_37, 1, "em", |c| {
        c.key_types = vec![KeyType::EcdsaP256];
    })
    .await;
    assert_eq!(fleet.wait_settled(WAIT).await.unwrap().issued, 1);
    let reasons = eventually(
        WAIT,
        || "timed out waiting for the emergency event".into(),
        || async {
            let r = event_reasons(&server).await;
            r.iter()
                .any(|(x, _)| x == "CAEmergencyDropped")
                .then_some(r)
        },
    )
    .await;
    assert!(
        reasons
            .iter()
            .any(|(x, t)| x == "CAEmergencyDropped" && t == "Warning"),
        "{reasons:?}"
    );
    // The request is handled once: the signer does not rotate again on the same annotation.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        state(&server).await.unwrap().active.fingerprint_sha256,
        after.active.fingerprint_sha256
    );
    fleet.shutdown().await;
    server.shutdown().await;
}

#[test]
fn a_schedule_that_would_cut_leaves_short_is_refused_at_start() {
    // A 2-day CA rotated at half-life with 24 h leaves: the next CA would sign at 25 h, after
    // the latest safe moment (48 h - 24 h - 5 min).
    let out = std::process::Command::new(BIN)
        .args([
            "run",
            "--signer-name",
            SIGNER,
            "--trust-domain",
            "cluster.local",
        ])
        .args([
            "--ca-secret",
            "ns/ca",
            "--ca-bootstrap",
            "--ca-validity",
            "2d",
        ])
        .args(["--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ca-rotate-at-fraction"), "{err}");
    assert!(err.contains("leaves would be cut short"), "{err}");
    assert!(
        !err.contains("kubeconfig"),
        "refused before connecting: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_from_before_rotation_is_adopted_with_its_ca() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    prepare(&server, &[]);
    let dir = tempfile::tempdir().unwrap();
    let cert = existing_ca_secret(&server, dir.path());
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &bootstrap_args(&["--leader-election=false"]),
    );
    signer.wait_ready(WAIT).await;
    // The leader writes a state whose active CA is the Secret's own, rotated by this signer.
    let adopted = eventually(
        WAIT,
        || "timed out waiting for the adopted state".into(),
        || state(&server),
    )
    .await;
    assert_eq!(adopted.active.cert_pem, cert);
    assert_eq!(
        adopted.active.origin,
        podcert_core::rotation::CaOrigin::Generated
    );
    assert_eq!(published_roots(&server).await, vec![root_der(&cert)]);
    let out = ca_rotate(&server, dir.path(), &[]);
    assert!(out.contains(&adopted.active.fingerprint_sha256), "{out}");
    let next = eventually(
        WAIT,
        || "timed out waiting for a prepared CA".into(),
        || async { state(&server).await.and_then(|s| s.next) },
    )
    .await;
    assert_ne!(next.cert_pem, cert);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_write_the_state_still_signs_with_the_secrets_ca() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    // The chart's RBAC from before rotation: the CA Secret can be read, not updated.
    let old_rbac = shipped_rbac().replace(
        "resourceNames: [\"podcert-signer-ca\"]\n    verbs: [\"get\", \"update\"]",
        "resourceNames: [\"podcert-signer-ca\"]\n    verbs: [\"get\"]",
    );
    assert_ne!(old_rbac, shipped_rbac());
    let mut yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {SIGNER_NS}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {SIGNER_SA}\n  namespace: {SIGNER_NS}\n"
    );
    yaml.push_str(&old_rbac);
    server.load_yaml(&yaml).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = existing_ca_secret(&server, dir.path());
    let signer = spawn_signer(
        &server,
        dir.path(),
        "signer-0",
        &bootstrap_args(&["--leader-election=false"]),
    );
    signer.wait_ready(WAIT).await;
    eventually(
        WAIT,
        || "timed out waiting for the Secret's root published".into(),
        || async { (published_roots(&server).await == vec![root_der(&cert)]).then_some(()) },
    )
    .await;
    eventually(
        WAIT,
        || "timed out waiting for the write failure reported".into(),
        || async {
            signer
                .logs()
                .contains("could not read or update the CA Secret")
                .then_some(())
        },
    )
    .await;
    assert!(state(&server).await.is_none(), "nothing was written");
    let fleet = kubelets(&server, KubeletVersion::V1_37, 1, "ro", |c| {
        c.key_types = vec![KeyType::EcdsaP256];
    })
    .await;
    assert_eq!(fleet.wait_settled(WAIT).await.unwrap().issued, 1);
    fleet.shutdown().await;
    server.shutdown().await;
}
