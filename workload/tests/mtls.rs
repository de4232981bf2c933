//! Mutual TLS between two workloads on loopback, with certificates from the signing core:
//! who gets in, who is refused, and why.

mod common;

use common::*;
use podcert_core::ca::CaKeyType;
use podcert_workload::ServerEvent;

const SERVER_ID: &str = "spiffe://example.org/ns/team-a/sa/server";
const CLIENT_ID: &str = "spiffe://example.org/ns/team-b/sa/client";

async fn mutual_exchange(ca_type: CaKeyType, server_key: SubjectKind, client_key: SubjectKind) {
    let ca = TestCa::new(ca_type);
    let server_files = Files::new(&ca.issue(SERVER_ID, server_key).bundle_pem, &ca.root_pem);
    let client_files = Files::new(&ca.issue(CLIENT_ID, client_key).bundle_pem, &ca.root_pem);
    let mut server = TestServer::start(
        server_files.material(),
        allow(&["spiffe://example.org/ns/team-b/*"]),
    )
    .await;
    let client = client(client_files.material(), allow(&[SERVER_ID]));

    let exchange = client.call_once(server.addr).await.unwrap();
    assert_eq!(exchange.peer_id, id(SERVER_ID));
    assert_eq!(
        exchange.reply,
        format!("hello {CLIENT_ID}, I am {SERVER_ID}")
    );
    match server.next_event().await {
        ServerEvent::Exchanged {
            peer_id, greeting, ..
        } => {
            assert_eq!(peer_id, id(CLIENT_ID));
            assert_eq!(greeting, format!("hello from {CLIENT_ID}"));
        }
        other => panic!("server refused a good client: {other:?}"),
    }
}

#[tokio::test]
async fn mutual_exchange_with_p256_keys_under_a_p256_ca() {
    mutual_exchange(
        CaKeyType::EcdsaP256,
        SubjectKind::EcdsaP256,
        SubjectKind::EcdsaP256,
    )
    .await;
}

#[tokio::test]
async fn mutual_exchange_with_ed25519_keys_under_an_ed25519_ca() {
    mutual_exchange(
        CaKeyType::Ed25519,
        SubjectKind::Ed25519,
        SubjectKind::Ed25519,
    )
    .await;
}

#[tokio::test]
async fn mutual_exchange_with_rsa_and_p256_keys_under_a_p384_ca() {
    mutual_exchange(
        CaKeyType::EcdsaP384,
        SubjectKind::Rsa3072,
        SubjectKind::EcdsaP256,
    )
    .await;
}

#[tokio::test]
async fn server_refuses_a_client_whose_id_is_not_allowed() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let server_files = Files::new(
        &ca.issue(SERVER_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    let client_files = Files::new(
        &ca.issue(CLIENT_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    // team-b is not allowed; a string prefix of the client's namespace must not match either.
    let mut server = TestServer::start(
        server_files.material(),
        allow(&[
            "spiffe://example.org/ns/team-a/*",
            "spiffe://example.org/ns/team-/*",
        ]),
    )
    .await;
    let client = client(client_files.material(), allow(&[SERVER_ID]));

    let err = client.call_once(server.addr).await.unwrap_err();
    // The client learns only that the server ended the connection (a TLS alert).
    assert!(err.to_string().contains(&server.addr.to_string()), "{err}");
    match server.next_event().await {
        ServerEvent::Refused { reason, .. } => {
            assert!(
                reason.contains(&format!("peer {CLIENT_ID} is not in the allow-list")),
                "{reason}"
            );
        }
        other => panic!("server let a disallowed client in: {other:?}"),
    }
}

#[tokio::test]
async fn client_refuses_a_server_whose_id_is_not_allowed() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let server_files = Files::new(
        &ca.issue(SERVER_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    let client_files = Files::new(
        &ca.issue(CLIENT_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    let mut server = TestServer::start(server_files.material(), allow(&[CLIENT_ID])).await;
    let client = client(
        client_files.material(),
        allow(&["spiffe://example.org/ns/team-a/sa/other"]),
    );

    let err = client.call_once(server.addr).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("peer {SERVER_ID} is not in the allow-list")),
        "{err}"
    );
    // The server never got a greeting.
    assert!(matches!(
        server.next_event().await,
        ServerEvent::Refused { .. }
    ));
}

#[tokio::test]
async fn peers_from_another_ca_are_refused_both_ways() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let other = TestCa::new(CaKeyType::EcdsaP256);
    let server_files = Files::new(
        &ca.issue(SERVER_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    // Same SPIFFE ID, wrong issuer: the ID alone must not get it in.
    let stranger_files = Files::new(
        &other.issue(CLIENT_ID, SubjectKind::EcdsaP256).bundle_pem,
        &other.root_pem,
    );
    let mut server = TestServer::start(server_files.material(), allow(&[CLIENT_ID])).await;

    let stranger = client(stranger_files.material(), allow(&[SERVER_ID]));
    let err = stranger.call_once(server.addr).await.unwrap_err();
    // The stranger trusts only its own CA, so it refuses the server first...
    assert!(
        err.to_string()
            .contains("peer certificate is not valid for serverAuth under the trust bundle: its issuer is not in the trust bundle"),
        "{err}"
    );
    let _ = server.next_event().await;

    // ...and a stranger that trusts both CAs is refused by the server.
    let both = format!("{}{}", other.root_pem, ca.root_pem);
    let trusting_files = Files::new(
        &other.issue(CLIENT_ID, SubjectKind::EcdsaP256).bundle_pem,
        &both,
    );
    let stranger = client(trusting_files.material(), allow(&[SERVER_ID]));
    stranger.call_once(server.addr).await.unwrap_err();
    match server.next_event().await {
        ServerEvent::Refused { reason, .. } => assert!(
            reason.contains("peer certificate is not valid for clientAuth under the trust bundle: its issuer is not in the trust bundle"),
            "{reason}"
        ),
        other => panic!("server let a client from another CA in: {other:?}"),
    }

    // A CA with another name is simply unknown.
    let unknown = TestCa::for_trust_domain(CaKeyType::EcdsaP256, "elsewhere.org");
    let both = format!("{}{}", unknown.root_pem, ca.root_pem);
    let unknown_files = Files::new(
        &unknown.issue(CLIENT_ID, SubjectKind::EcdsaP256).bundle_pem,
        &both,
    );
    let stranger = client(unknown_files.material(), allow(&[SERVER_ID]));
    stranger.call_once(server.addr).await.unwrap_err();
    match server.next_event().await {
        ServerEvent::Refused { reason, .. } => assert!(
            reason.contains("not valid for clientAuth under the trust bundle: its issuer is not in the trust bundle"),
            "{reason}"
        ),
        other => panic!("server let a client from an unknown CA in: {other:?}"),
    }
}

#[tokio::test]
async fn server_refuses_a_client_certificate_without_client_auth_eku() {
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
    // An rcgen CA (the signing core always sets both EKUs) issuing a serverAuth-only leaf.
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf_params = CertificateParams::default();
    leaf_params.subject_alt_names = vec![SanType::URI(CLIENT_ID.try_into().unwrap())];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let trust = format!("{}{}", ca.root_pem, ca_cert.pem());
    let server_files = Files::new(
        &ca.issue(SERVER_ID, SubjectKind::EcdsaP256).bundle_pem,
        &trust,
    );
    let client_files = Files::new(
        &format!("{}{}", leaf_key.serialize_pem(), leaf.pem()),
        &ca.root_pem,
    );
    let mut server = TestServer::start(server_files.material(), allow(&[CLIENT_ID])).await;
    let client = client(client_files.material(), allow(&[SERVER_ID]));

    client.call_once(server.addr).await.unwrap_err();
    match server.next_event().await {
        ServerEvent::Refused { reason, .. } => assert!(
            reason.contains("it lacks the clientAuth extended key usage"),
            "{reason}"
        ),
        other => panic!("server accepted a serverAuth-only client: {other:?}"),
    }
}
