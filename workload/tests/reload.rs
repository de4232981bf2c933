//! Rotations as the kubelet performs them: new connections use the new key, chain and trust
//! bundle without a restart; invalid new contents are refused and the old material kept.

mod common;

use common::*;
use podcert_core::ca::CaKeyType;
use podcert_workload::reload::{LoadError, PollOutcome};
use podcert_workload::ServerEvent;
use std::time::Duration;

const SERVER_ID: &str = "spiffe://example.org/ns/team-a/sa/server";
const CLIENT_ID: &str = "spiffe://example.org/ns/team-b/sa/client";

#[tokio::test]
async fn rotated_server_bundle_is_presented_on_new_connections_without_restart() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let first = ca.issue(SERVER_ID, SubjectKind::EcdsaP256);
    let server_files = Files::new(&first.bundle_pem, &ca.root_pem);
    let client_files = Files::new(
        &ca.issue(CLIENT_ID, SubjectKind::Ed25519).bundle_pem,
        &ca.root_pem,
    );
    let material = server_files.material();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The real background poller, fast so the test is quick.
    material.spawn_reloader(Duration::from_millis(20), async {
        let _ = stopped.await;
    });
    let server = TestServer::start(material, allow(&[CLIENT_ID])).await;
    let client = client(client_files.material(), allow(&[SERVER_ID]));
    assert_eq!(
        client.call_once(server.addr).await.unwrap().peer_serial,
        first.serial_hex
    );

    // New key and new leaf, published by rename.
    let second = ca.issue(SERVER_ID, SubjectKind::Ed25519);
    write_by_rename(&server_files.credential, second.bundle_pem.as_bytes());

    // Wait (bounded) for the poller; every connection meanwhile must still succeed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let exchange = client.call_once(server.addr).await.unwrap();
        if exchange.peer_serial == second.serial_hex {
            break;
        }
        assert_eq!(exchange.peer_serial, first.serial_hex);
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation never picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rotated_client_bundle_is_presented_to_the_server() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let server_files = Files::new(
        &ca.issue(SERVER_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    // The client moves from an allowed ID to a disallowed one: the server must see the change.
    let client_files = Files::new(
        &ca.issue(CLIENT_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    let mut server = TestServer::start(server_files.material(), allow(&[CLIENT_ID])).await;
    let client_material = client_files.material();
    let client = client(client_material.clone(), allow(&[SERVER_ID]));
    client.call_once(server.addr).await.unwrap();
    assert!(matches!(
        server.next_event().await,
        ServerEvent::Exchanged { .. }
    ));

    let moved = "spiffe://example.org/ns/team-c/sa/client";
    write_by_rename(
        &client_files.credential,
        ca.issue(moved, SubjectKind::EcdsaP256)
            .bundle_pem
            .as_bytes(),
    );
    assert!(matches!(client_material.poll().0, PollOutcome::Reloaded));
    client.call_once(server.addr).await.unwrap_err();
    match server.next_event().await {
        ServerEvent::Refused { reason, .. } => assert!(reason.contains(moved), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn trust_bundle_update_lets_a_peer_from_the_new_ca_in() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let new_ca = TestCa::new(CaKeyType::Ed25519);
    let server_files = Files::new(
        &ca.issue(SERVER_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    let both = format!("{}{}", ca.root_pem, new_ca.root_pem);
    let client_files = Files::new(
        &new_ca.issue(CLIENT_ID, SubjectKind::EcdsaP256).bundle_pem,
        &both,
    );
    let server_material = server_files.material();
    let mut server = TestServer::start(server_material.clone(), allow(&[CLIENT_ID])).await;
    let client = client(client_files.material(), allow(&[SERVER_ID]));

    client.call_once(server.addr).await.unwrap_err();
    assert!(matches!(
        server.next_event().await,
        ServerEvent::Refused { .. }
    ));

    write_by_rename(&server_files.trust, both.as_bytes());
    let (cred, trust) = server_material.poll();
    assert!(matches!(cred, PollOutcome::Unchanged));
    assert!(matches!(trust, PollOutcome::Reloaded));
    let exchange = client.call_once(server.addr).await.unwrap();
    assert_eq!(exchange.peer_id, id(SERVER_ID));
    assert!(matches!(
        server.next_event().await,
        ServerEvent::Exchanged { .. }
    ));
}

#[tokio::test]
async fn corrupt_or_mismatched_new_bundles_are_refused_and_the_old_one_keeps_working() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let first = ca.issue(SERVER_ID, SubjectKind::EcdsaP256);
    let server_files = Files::new(&first.bundle_pem, &ca.root_pem);
    let client_files = Files::new(
        &ca.issue(CLIENT_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    let material = server_files.material();
    let server = TestServer::start(material.clone(), allow(&[CLIENT_ID])).await;
    let client = client(client_files.material(), allow(&[SERVER_ID]));

    let next = ca.issue(SERVER_ID, SubjectKind::EcdsaP256);
    let half = &next.bundle_pem[..next.bundle_pem.len() / 2];
    let other_key = ca.issue(SERVER_ID, SubjectKind::EcdsaP256).key_pem;
    let cases: [(&str, String, &str); 4] = [
        ("half-written", half.to_string(), "not valid PEM"),
        ("key only", next.key_pem.clone(), "holds no certificate"),
        (
            "key of another certificate",
            format!("{other_key}{}", next.chain_pem),
            "does not match the leaf",
        ),
        (
            "chain before key",
            format!("{}{}", next.chain_pem, next.key_pem),
            "must start with a PRIVATE KEY block",
        ),
    ];
    for (what, contents, expected) in cases {
        write_by_rename(&server_files.credential, contents.as_bytes());
        match material.poll().0 {
            PollOutcome::Refused(LoadError::Invalid { source, .. }) => {
                assert!(source.to_string().contains(expected), "{what}: {source}")
            }
            other => panic!("{what}: {other:?}"),
        }
        // Polling the same bad bytes again is quiet and changes nothing.
        assert!(
            matches!(material.poll().0, PollOutcome::Unchanged),
            "{what}"
        );
        let exchange = client.call_once(server.addr).await.unwrap();
        assert_eq!(exchange.peer_serial, first.serial_hex, "{what}");
    }

    // A broken trust bundle is refused too; the old one still verifies the client.
    write_by_rename(
        &server_files.trust,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    assert!(matches!(material.poll().1, PollOutcome::Refused(_)));
    client.call_once(server.addr).await.unwrap();

    // And once a good bundle is written, it is taken.
    write_by_rename(&server_files.credential, next.bundle_pem.as_bytes());
    assert!(matches!(material.poll().0, PollOutcome::Reloaded));
    assert_eq!(
        client.call_once(server.addr).await.unwrap().peer_serial,
        next.serial_hex
    );
}

#[tokio::test]
async fn follows_a_kubelet_style_data_symlink_swap() {
    use std::os::unix::fs::symlink;
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let first = ca.issue(SERVER_ID, SubjectKind::EcdsaP256);
    let second = ca.issue(SERVER_ID, SubjectKind::EcdsaP256);
    // The kubelet's atomic writer: ts dirs, a `..data` symlink to the current one, and
    // user-visible names that are symlinks through `..data`.
    let dir = tempfile::tempdir().unwrap();
    let publish = |ts: &str, bundle: &str| {
        let ts_dir = dir.path().join(ts);
        std::fs::create_dir(&ts_dir).unwrap();
        std::fs::write(ts_dir.join("credentialbundle.pem"), bundle).unwrap();
        std::fs::write(ts_dir.join("trust.pem"), &ca.root_pem).unwrap();
        let tmp = dir.path().join("..data_tmp");
        symlink(ts, &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join("..data")).unwrap();
    };
    publish("..2026_01_01_00_00_00.1", &first.bundle_pem);
    for name in ["credentialbundle.pem", "trust.pem"] {
        symlink(format!("..data/{name}"), dir.path().join(name)).unwrap();
    }
    let material = podcert_workload::Material::load(
        &dir.path().join("credentialbundle.pem"),
        &dir.path().join("trust.pem"),
        podcert_workload::tls::provider(),
    )
    .unwrap();
    assert_eq!(material.credential.get().serial_hex, first.serial_hex);

    publish("..2026_01_01_00_30_00.2", &second.bundle_pem);
    assert!(matches!(material.poll().0, PollOutcome::Reloaded));
    assert_eq!(material.credential.get().serial_hex, second.serial_hex);
}

#[tokio::test]
async fn a_vanished_file_keeps_the_previous_material() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let first = ca.issue(SERVER_ID, SubjectKind::EcdsaP256);
    let files = Files::new(&first.bundle_pem, &ca.root_pem);
    let material = files.material();

    std::fs::remove_file(&files.credential).unwrap();
    std::fs::remove_file(&files.trust).unwrap();
    let (cred, trust) = material.poll();
    assert!(
        matches!(cred, PollOutcome::Refused(LoadError::Read { .. })),
        "{cred:?}"
    );
    assert!(
        matches!(trust, PollOutcome::Refused(LoadError::Read { .. })),
        "{trust:?}"
    );
    assert_eq!(material.credential.get().serial_hex, first.serial_hex);
    assert_eq!(material.trust.get().anchors.len(), 1);

    // The same contents coming back is not a change.
    write_by_rename(&files.credential, first.bundle_pem.as_bytes());
    assert!(matches!(material.poll().0, PollOutcome::Unchanged));
}
