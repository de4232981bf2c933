//! The CA Secret format (rotation state next to the kubernetes.io/tls keys) and its
//! resourceVersion-guarded write, against the API emulator.

use crate::fixtures::ca::body_lines;
use crate::fixtures::rotation::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use podcert_core::rotation::{begin_manual, published_bundle_pem, RotationState, STATE_KEY};
use podcert_k8s::ca_secret::{self, SecretCa};
use podcert_runtime::ca_backend::secret_write::{write_state, WriteOutcome};
use podcert_testkit::apiserver::{ServerConfig, TestServer};

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
    let WriteOutcome::Written(after) = write_state(&api, &read_a, &rotated).await.unwrap() else {
        panic!("the first write conflicted");
    };
    assert_eq!(text(&after, "extra"), "kept");
    let stale = write_state(&api, &read_b, &first).await.unwrap();
    assert!(matches!(stale, WriteOutcome::Conflict));
    let now = api.get("ca").await.unwrap();
    match ca_secret::read(&now, "test").unwrap() {
        SecretCa::State(s) => assert_eq!(*s, rotated),
        other => panic!("{other:?}"),
    }
    // A Secret without a resourceVersion is never written blindly.
    let mut unguarded = now.clone();
    unguarded.metadata.resource_version = None;
    assert!(write_state(&api, &unguarded, &rotated).await.is_err());
    server.shutdown().await;
}

#[test]
fn a_malformed_state_holding_the_key_never_quotes_it() {
    let state = bootstrapped();
    let key = state.active.key_pem.as_ref().unwrap().expose().to_string();
    let body = body_lines(&key);
    assert!(!body.is_empty());
    let v: serde_json::Value = serde_json::from_str(&state.to_json().unwrap()).unwrap();
    let with = |path: &[&str], value: serde_json::Value| {
        let mut x = v.clone();
        let mut at = &mut x;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = value;
        x.to_string()
    };
    let key_json = serde_json::Value::String(key.clone());
    let shapes = [
        // Wrong types and values holding the key.
        ("active", with(&["active"], key_json.clone())),
        ("version", with(&["version"], key_json.clone())),
        ("origin", with(&["active", "origin"], key_json.clone())),
        (
            "notBefore",
            with(&["active", "notBefore"], key_json.clone()),
        ),
        ("anchors", with(&["active", "anchorsPem"], key_json.clone())),
        ("retired", with(&["retired"], key_json.clone())),
        (
            "key in a list",
            with(&["active", "keyPem"], serde_json::json!([key])),
        ),
        // The key as the recorded fingerprint of a record that is then inconsistent.
        (
            "fingerprint",
            with(&["active", "fingerprintSha256"], key_json.clone()),
        ),
        // Broken JSON right after the key.
        (
            "syntax",
            format!("{{\"version\": 1, \"active\": {key_json} !!"),
        ),
        ("eof", format!("{{\"version\": 1, \"active\": {key_json}")),
        ("whole", key.clone()),
    ];
    let mut secret = ca_secret::new_secret("ca", &state).unwrap();
    for (what, json) in shapes {
        secret
            .data
            .as_mut()
            .unwrap()
            .insert(STATE_KEY.into(), k8s_openapi::ByteString(json.into_bytes()));
        let err = ca_secret::read(&secret, "Secret ns/ca")
            .unwrap_err()
            .to_string();
        for line in &body {
            assert!(
                !err.contains(line.as_str()),
                "{what}: the key leaked: {err}"
            );
        }
        assert!(!err.contains("PRIVATE KEY"), "{what}: {err}");
        // Still a useful sentence: where, what, and (for JSON errors) the position.
        assert!(
            err.contains("Secret ns/ca") && err.contains(STATE_KEY),
            "{what}: {err}"
        );
        if what != "fingerprint" {
            assert!(err.contains("line 1, column"), "{what}: {err}");
        } else {
            assert!(err.contains("malformed fingerprint"), "{what}: {err}");
        }
    }
    // A missing field is named (the name is the signer's own, never the Secret's content).
    let mut missing = v.clone();
    missing["active"].as_object_mut().unwrap().remove("certPem");
    let err = RotationState::from_json(&missing.to_string())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"certPem\" is missing"), "{err}");
}

#[test]
fn key_material_in_the_wrong_place_is_refused_without_quoting_it() {
    let state = bootstrapped();
    let key = state.active.key_pem.as_ref().unwrap().expose().to_string();
    let body = body_lines(&key);
    let now = at(1);
    // A key with one corrupted base64 character, the key as the certificate, the key as the
    // trust anchors, and a key with a blank line (its first body line is then read as a PEM
    // header, which the pem crate's error quotes).
    let mut corrupted = key.clone();
    let pos = corrupted.find('\n').unwrap() + 5;
    corrupted.replace_range(pos..pos + 1, "!");
    let mut lines: Vec<&str> = key.lines().collect();
    lines.insert(2, "");
    let headered = lines.join("\n") + "\n";
    let cert = state.active.cert_pem.clone();
    let cases = [
        (cert.clone(), corrupted, None),
        (key.clone(), key.clone(), None),
        (cert.clone(), key.clone(), Some(key.clone())),
        (cert.clone(), headered, None),
        (format!("{cert}{key}"), key.clone(), None),
    ];
    for (c, k, a) in cases {
        let err = podcert_core::ca::Ca::from_pem(&c, &k, a.as_deref(), now)
            .unwrap_err()
            .to_string();
        for line in &body {
            assert!(!err.contains(line.as_str()), "the key leaked: {err}");
        }
    }
}
