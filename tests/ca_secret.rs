//! The CA Secret format (rotation state next to the kubernetes.io/tls keys) and its
//! resourceVersion-guarded write, against the API emulator.

mod rotation_common;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use podcert_signer::ca_secret::{self, SecretCa, WriteOutcome};
use podcert_signer::rotation::{begin_manual, published_bundle_pem, RotationState, STATE_KEY};
use podcert_testkit::apiserver::{ServerConfig, TestServer};
use rotation_common::*;

fn bootstrapped() -> RotationState {
    RotationState::bootstrap(&generated(at(0), policy().ca_validity), at(0)).unwrap()
}

fn text(s: &Secret, key: &str) -> String {
    String::from_utf8(s.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[test]
fn a_state_round_trips_through_a_tls_secret() {
    let (state, _) = begin_manual(&bootstrapped(), &policy(), at(10), &mut generator()).unwrap();
    let secret = ca_secret::new_secret("ca", &state).unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(text(&secret, "tls.crt"), state.active.cert_pem);
    assert_eq!(
        text(&secret, "tls.key"),
        state.active.key_pem.as_ref().unwrap().expose()
    );
    // ca.crt: every published root (active and prepared), for consumers of the Secret.
    assert_eq!(text(&secret, "ca.crt"), published_bundle_pem(&state));
    assert_eq!(pem::parse_many(text(&secret, "ca.crt")).unwrap().len(), 2);
    match ca_secret::read(&secret, "test").unwrap() {
        SecretCa::State(s) => assert_eq!(*s, state),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_secret_without_state_is_material_and_a_bad_state_is_refused() {
    let mut secret = ca_secret::new_secret("ca", &bootstrapped()).unwrap();
    let data = secret.data.as_mut().unwrap();
    let state_json = data.remove(STATE_KEY).unwrap();
    match ca_secret::read(&secret, "test").unwrap() {
        SecretCa::Material(m) => {
            assert_eq!(m.cert, text(&secret, "tls.crt"));
            assert!(m.anchors.is_some());
        }
        other => panic!("{other:?}"),
    }
    let mut broken = state_json.0.clone();
    broken.truncate(broken.len() / 2);
    secret
        .data
        .as_mut()
        .unwrap()
        .insert(STATE_KEY.into(), k8s_openapi::ByteString(broken));
    let err = ca_secret::read(&secret, "Secret ns/ca")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Secret ns/ca") && err.contains(STATE_KEY),
        "{err}"
    );
}

#[tokio::test]
async fn a_write_never_clobbers_a_newer_secret() {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    server
        .load_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns\n")
        .unwrap();
    let api: Api<Secret> = Api::namespaced(server.admin_client(), "ns");
    let first = bootstrapped();
    let mut created = ca_secret::new_secret("ca", &first).unwrap();
    created
        .data
        .as_mut()
        .unwrap()
        .insert("extra".into(), k8s_openapi::ByteString(b"kept".to_vec()));
    api.create(&PostParams::default(), &created).await.unwrap();
    let read_a = api.get("ca").await.unwrap();
    let read_b = api.get("ca").await.unwrap();

    // Replica A writes a rotation; replica B, holding the older read, is refused.
    let (rotated, _) = begin_manual(&first, &policy(), at(10), &mut generator()).unwrap();
    let WriteOutcome::Written(after) = ca_secret::write_state(&api, &read_a, &rotated)
        .await
        .unwrap()
    else {
        panic!("the first write conflicted");
    };
    assert_eq!(text(&after, "extra"), "kept");
    let stale = ca_secret::write_state(&api, &read_b, &first).await.unwrap();
    assert!(matches!(stale, WriteOutcome::Conflict));
    let now = api.get("ca").await.unwrap();
    match ca_secret::read(&now, "test").unwrap() {
        SecretCa::State(s) => assert_eq!(*s, rotated),
        other => panic!("{other:?}"),
    }
    // A Secret without a resourceVersion is never written blindly.
    let mut unguarded = now.clone();
    unguarded.metadata.resource_version = None;
    assert!(ca_secret::write_state(&api, &unguarded, &rotated)
        .await
        .is_err());
    server.shutdown().await;
}
