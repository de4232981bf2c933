//! Against SoftHSM2: keys generated inside the token, non-extractable, signing CA certificates
//! that verify. Skips (saying so) without libsofthsm2.so unless PODCERT_REQUIRE_SOFTHSM=1.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use podcert_core::ca::{self_signed_for_key, Ca, CaKeyType, RemoteKey};
use podcert_pkcs11::{generate, softhsm, Pkcs11Error, Pkcs11Key, Pkcs11Uri};
use time::OffsetDateTime;

const TOKENS: [&str; 5] = ["gen", "types", "errors", "pin", "pool"];

/// One SoftHSM2 configuration for this test process: the module reads SOFTHSM2_CONF once, at
/// C_Initialize, so every test shares it (each with its own token).
fn fixture() -> Option<&'static (PathBuf, PathBuf)> {
    static F: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    F.get_or_init(|| {
        let module = softhsm::module()?;
        let dir = tempfile::tempdir().unwrap().keep();
        let conf = softhsm::init_tokens(&dir, &TOKENS).expect("initialising SoftHSM2 tokens");
        std::env::set_var("SOFTHSM2_CONF", conf);
        Some((module, dir))
    })
    .as_ref()
}

fn uri(token: &str, object: &str) -> Option<Pkcs11Uri> {
    let (module, dir) = fixture()?;
    Some(Pkcs11Uri::parse(&softhsm::uri(module, dir, token, object)).unwrap())
}

/// Verifies a certificate's signature with its own public key (self-signed).
fn verify_self_signed(cert_pem: &str, key_type: CaKeyType) {
    use aws_lc_rs::signature;
    use x509_parser::prelude::*;
    let der = ::pem::parse(cert_pem).unwrap().into_contents();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let alg: &dyn signature::VerificationAlgorithm = match key_type {
        CaKeyType::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
        CaKeyType::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1,
        CaKeyType::Ed25519 => &signature::ED25519,
        CaKeyType::Rsa3072 => &signature::RSA_PKCS1_2048_8192_SHA256,
        CaKeyType::MlDsa44 => &signature::ML_DSA_44,
        CaKeyType::MlDsa65 => &signature::ML_DSA_65,
        CaKeyType::MlDsa87 => &signature::ML_DSA_87,
    };
    let spki = cert.public_key().subject_public_key.data.as_ref();
    signature::UnparsedPublicKey::new(alg, spki)
        .verify(
            cert.tbs_certificate.as_ref(),
            cert.signature_value.data.as_ref(),
        )
        .expect("the token's signature verifies with the certificate's key");
}

#[test]
fn generated_key_is_sensitive_not_extractable_and_its_value_unreadable() {
    let Some(u) = uri("gen", "ca-2026") else {
        return;
    };
    let key = generate(&u, None, CaKeyType::EcdsaP256, 2).unwrap();
    assert_eq!(key.sensitive_and_extractable().unwrap(), (true, false));
    assert!(
        !key.value_is_readable().unwrap(),
        "CKA_VALUE of the CA key must not be readable"
    );
    // A second generation under the same label is refused, not a second key.
    let again = generate(&u, None, CaKeyType::EcdsaP256, 2).unwrap_err();
    assert!(again.to_string().contains("exists already"), "{again}");
    // Reopening finds the same key (by label) and its public key.
    let reopened = Pkcs11Key::open(&u, None, 1).unwrap();
    use rcgen::PublicKeyData;
    assert_eq!(reopened.der_bytes(), key.der_bytes());
}

#[test]
fn every_key_type_signs_a_ca_certificate_that_verifies() {
    let now = OffsetDateTime::now_utc();
    for t in CaKeyType::ALL {
        let Some(u) = uri("types", t.name()) else {
            return;
        };
        if t.is_ml_dsa() {
            // No token here offers CKM_ML_DSA: refused before the token is asked.
            let err = generate(&u, None, t, 2).unwrap_err().to_string();
            assert!(err.contains("cannot be made in a PKCS#11 token"), "{err}");
            continue;
        }
        let key: RemoteKey = Arc::new(generate(&u, None, t, 2).unwrap());
        let cert =
            self_signed_for_key(&key, Some("example.org"), time::Duration::days(30), now).unwrap();
        verify_self_signed(&cert, t);
        let ca = Ca::with_remote_key(&cert, key, None, now).unwrap();
        assert_eq!(ca.key_type(), t);
    }
}

#[test]
fn a_key_not_matching_the_certificate_is_refused() {
    let now = OffsetDateTime::now_utc();
    let Some(a) = uri("errors", "a") else { return };
    let b = uri("errors", "b").unwrap();
    let ka: RemoteKey = Arc::new(generate(&a, None, CaKeyType::EcdsaP256, 1).unwrap());
    let kb: RemoteKey = Arc::new(generate(&b, None, CaKeyType::EcdsaP256, 1).unwrap());
    let cert = self_signed_for_key(&ka, None, time::Duration::days(1), now).unwrap();
    let e = Ca::with_remote_key(&cert, kb, None, now).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
}

#[test]
fn missing_keys_tokens_and_wrong_pins_say_what_is_wrong() {
    let Some(u) = uri("errors", "nothing-here") else {
        return;
    };
    let e = Pkcs11Key::open(&u, None, 1).unwrap_err();
    assert!(
        e.to_string().contains("no private key with this label"),
        "{e}"
    );

    let (module, dir) = fixture().unwrap();
    let other = Pkcs11Uri::parse(&softhsm::uri(module, dir, "no-such-token", "x")).unwrap();
    let e = Pkcs11Key::open(&other, None, 1).unwrap_err();
    assert!(e.to_string().contains("no token matches"), "{e}");

    let wrong = dir.join("wrong-pin");
    std::fs::write(&wrong, "0000\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A token of its own: once any session of this process is logged in to a token, C_Login
    // there answers "already logged in" without checking the PIN.
    let text = softhsm::uri(module, dir, "pin", "x").replace(
        &dir.join("pin").display().to_string(),
        &wrong.display().to_string(),
    );
    let e = Pkcs11Key::open(&Pkcs11Uri::parse(&text).unwrap(), None, 1).unwrap_err();
    assert!(e.to_string().contains("others may read it"), "{e}");
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = Pkcs11Key::open(&Pkcs11Uri::parse(&text).unwrap(), None, 1).unwrap_err();
    assert!(matches!(e, Pkcs11Error::Call { op: "C_Login", .. }), "{e}");
}

#[test]
fn the_pool_serves_more_signers_than_sessions() {
    use rcgen::SigningKey;
    let Some(u) = uri("pool", "ca") else { return };
    let key = generate(&u, None, CaKeyType::EcdsaP256, 2).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            let key = key.clone();
            s.spawn(move || {
                for _ in 0..20 {
                    key.sign(b"tbs").unwrap();
                }
            });
        }
    });
    assert_eq!(key.unavailable(), None);
    // Never more sessions than the pool's size, however many signers; how many of the two
    // were needed depends on how the threads were scheduled (1 when they never overlapped, as
    // on a loaded machine), so that is not asserted.
    let high = key.sessions_high_water();
    assert!(
        (1..=2).contains(&high),
        "8 signers share at most the 2 sessions: {high}"
    );
}
