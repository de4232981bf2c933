//! A TLS 1.3 handshake with mutual authentication between two issued leaves, each side
//! verifying the other against the CA (rustls + aws-lc-rs, in memory).

use crate::fixtures::ca::*;
use podcert_core::ca::CaKeyType;
use podcert_core::issue::issue_leaf;
use podcert_core::key_type::KeyType;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};
use rustls::{ServerConfig, ServerConnection, SignatureScheme};
use std::io::{Read, Write};
use std::sync::Arc;

/// Checks the server's chain against the CA with webpki, for server auth, but not a DNS
/// name: SVIDs carry a SPIFFE URI instead.
#[derive(Debug)]
struct SpiffeServerVerifier {
    anchors: Vec<Vec<u8>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.to_vec()];
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        let at = time::OffsetDateTime::from_unix_timestamp(now.as_secs() as i64).unwrap();
        webpki_verify_with(
            self.provider.signature_verification_algorithms.all,
            &chain,
            &self.anchors,
            webpki::KeyUsage::server_auth(),
            at,
        )
        .map_err(|e| rustls::Error::General(format!("{e:?}")))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn identity(
    ca: &podcert_core::ca::Ca,
    kt: KeyType,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let issued = issue_leaf(ca, &subject_key(kt), &profile(), now()).unwrap();
    let chain = pem_certs(&issued.chain_pem)
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(private_key_der(kt)));
    (chain, key)
}

/// Shuttles TLS records between the two ends until neither has anything to send.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection) {
    for _ in 0..20 {
        let mut progressed = false;
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            progressed = true;
            // read_tls takes at most one buffer's worth per call: ML-DSA flights are larger.
            let mut rd = buf.as_slice();
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                server.process_new_packets().unwrap();
            }
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            progressed = true;
            let mut rd = buf.as_slice();
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        if !progressed {
            return;
        }
    }
}

fn handshake(ca_type: CaKeyType, server_kt: KeyType, client_kt: KeyType) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let g = generated(ca_type);
    let ca = load(g);
    let ca_der = pem_certs(&g.cert_pem).remove(0);
    let (server_chain, server_key) = identity(&ca, server_kt);
    let (client_chain, client_key) = identity(&ca, client_kt);

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.clone())).unwrap();
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
    let server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(server_chain.clone(), server_key)
        .unwrap();
    let client_config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
            anchors: vec![ca_der],
            provider,
        }))
        .with_client_auth_cert(client_chain.clone(), client_key)
        .unwrap();

    let mut client = ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("web.team-a.svc").unwrap(),
    )
    .unwrap();
    let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
    pump(&mut client, &mut server);
    let ctx = format!("CA {ca_type:?}, server {server_kt}, client {client_kt}");
    assert!(
        !client.is_handshaking() && !server.is_handshaking(),
        "{ctx}"
    );
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3),
        "{ctx}"
    );
    assert_eq!(
        server.peer_certificates().unwrap()[0],
        client_chain[0],
        "{ctx}"
    );
    assert_eq!(
        client.peer_certificates().unwrap()[0],
        server_chain[0],
        "{ctx}"
    );

    client.writer().write_all(b"ping").unwrap();
    pump(&mut client, &mut server);
    let mut got = [0u8; 4];
    server.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping", "{ctx}");
}

/// Each CA type; every subject key type appears once as server and once as client (ML-DSA
/// leaves sign the handshake with ML-DSA: rustls's aws-lc-rs provider has the TLS 1.3 schemes).
fn handshakes_for(ca_type: CaKeyType) {
    let all = KeyType::ALL;
    for (i, &server_kt) in all.iter().enumerate() {
        handshake(ca_type, server_kt, all[(i + 1) % all.len()]);
    }
}

#[test]
fn mutual_tls13_between_two_leaves_of_a_p256_ca() {
    handshakes_for(CaKeyType::EcdsaP256);
}

#[test]
fn mutual_tls13_between_two_leaves_of_a_p384_ca() {
    handshakes_for(CaKeyType::EcdsaP384);
}

#[test]
fn mutual_tls13_between_two_leaves_of_an_ed25519_ca() {
    handshakes_for(CaKeyType::Ed25519);
}

#[test]
fn mutual_tls13_between_two_leaves_of_an_rsa_ca() {
    handshakes_for(CaKeyType::Rsa3072);
}

#[test]
fn mutual_tls13_between_two_leaves_of_an_ml_dsa_65_ca() {
    handshakes_for(CaKeyType::MlDsa65);
}
