//! Helpers shared by the ca_* and issue_* integration tests.
#![allow(dead_code)]

use podcert_core::ca::{generate_self_signed, Ca, CaKeyType, GeneratedCa};
use podcert_core::issue::LeafProfile;
use podcert_core::key_type::KeyType;
use podcert_core::proof::SubjectKey;
use std::sync::OnceLock;
use time::{Duration, OffsetDateTime};

pub const CA_TYPES: [CaKeyType; 4] = [
    CaKeyType::EcdsaP256,
    CaKeyType::EcdsaP384,
    CaKeyType::Ed25519,
    CaKeyType::Rsa3072,
];

pub const TRUST_DOMAIN: &str = "example.org";
pub const SPIFFE_ID: &str = "spiffe://example.org/ns/team-a/sa/web";

/// The kubelet-vector key helpers (key files, SPKI derived independently with RustCrypto).
#[path = "../proof_support/mod.rs"]
mod proof_support;

fn key_file(kt: KeyType) -> String {
    format!("keys/{}.key.pem", kt.as_str())
}

/// The requester's PKCS#8 private key (DER) from the repo's kubelet vectors.
pub fn private_key_der(kt: KeyType) -> Vec<u8> {
    proof_support::pkcs8_der(&key_file(kt))
}

/// The SubjectKey for a vector key, its SPKI derived independently with RustCrypto.
pub fn subject_key(kt: KeyType) -> SubjectKey {
    SubjectKey {
        key_type: kt,
        spki_der: proof_support::spki_from_key_file(&key_file(kt), kt),
    }
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// One generated self-signed CA per key type, shared by the tests of one binary.
pub fn generated(ca_type: CaKeyType) -> &'static GeneratedCa {
    static CAS: OnceLock<Vec<(CaKeyType, GeneratedCa)>> = OnceLock::new();
    let cas = CAS.get_or_init(|| {
        CA_TYPES
            .iter()
            .map(|&t| {
                let ca =
                    generate_self_signed(t, Some(TRUST_DOMAIN), Duration::days(30), now()).unwrap();
                (t, ca)
            })
            .collect()
    });
    &cas.iter().find(|(t, _)| *t == ca_type).unwrap().1
}

pub fn load(g: &GeneratedCa) -> Ca {
    Ca::from_pem(&g.cert_pem, &g.key_pem, None, now()).unwrap()
}

pub fn profile() -> LeafProfile {
    LeafProfile {
        spiffe_id: SPIFFE_ID.to_string(),
        dns_names: vec![],
        max_lifetime: Duration::hours(24),
        backdate: Duration::seconds(60),
        refresh_fraction: 0.5,
    }
}

/// DER of every CERTIFICATE block.
pub fn pem_certs(pem_text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text)
        .unwrap()
        .into_iter()
        .map(|p| {
            assert_eq!(p.tag(), "CERTIFICATE");
            p.into_contents()
        })
        .collect()
}

/// Verifies `chain` (leaf first) with rustls-webpki against `anchors`, for `usage`.
pub fn webpki_verify(
    chain: &[Vec<u8>],
    anchors: &[Vec<u8>],
    usage: webpki::KeyUsage,
    at: OffsetDateTime,
) -> Result<(), webpki::Error> {
    use rustls::pki_types::{CertificateDer, UnixTime};
    let anchors: Vec<_> = anchors
        .iter()
        .map(|a| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(a.as_slice()))
                .unwrap()
                .to_owned()
        })
        .collect();
    let leaf = CertificateDer::from(chain[0].as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf)?;
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let time =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.unix_timestamp() as u64));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        time,
        usage,
        None,
        None,
    )
    .map(|_| ())
}
