//! CAs whose keys the signer generates in the token (a bootstrapped, rotated CA): each key
//! is labelled `<object>-<fingerprint>` (the URI's object, then the SHA-256 of its CA
//! certificate), so a retired CA's key can be found, and deleted, from its fingerprint alone
//! once the rotation state no longer names it.

use std::sync::Arc;

use podcert_core::ca::{self_signed_for_key, CaKeyType, GeneratedCa, RemoteKey};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::error::Pkcs11Error;
use crate::key::{generate, Pin, Pkcs11Key};
use crate::uri::Pkcs11Uri;

/// The label of the key of the CA with this fingerprint.
pub fn label_for(base: &Pkcs11Uri, fingerprint_sha256: &str) -> String {
    format!(
        "{}-{fingerprint_sha256}",
        base.object.as_deref().unwrap_or("podcert-ca")
    )
}

/// Generates a key in the token and a self-signed CA certificate for it (the profile of
/// [`podcert_core::ca::generate_self_signed`]); the key is then labelled with the CA's
/// fingerprint. The returned `key_pem` is the key's URI, not a key.
pub fn generate_ca(
    base: &Pkcs11Uri,
    pin: Option<Pin>,
    key_type: CaKeyType,
    trust_domain: Option<&str>,
    validity: Duration,
    now: OffsetDateTime,
) -> Result<GeneratedCa, Pkcs11Error> {
    let mut tmp = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut tmp);
    let pending: String = tmp.iter().map(|b| format!("{b:02x}")).collect();
    let pending = base.with_object(&format!("{}-pending-{pending}", label_for(base, "")));
    let key = generate(&pending, pin, key_type, 1)?;
    let remote: RemoteKey = Arc::new(key.clone());
    let signed = self_signed_for_key(&remote, trust_domain, validity, now);
    let cert_pem = match signed {
        Ok(c) => c,
        Err(e) => {
            let _ = key.destroy();
            return Err(Pkcs11Error::Key(format!("signing the CA certificate: {e}")));
        }
    };
    let der = pem::parse(&cert_pem)
        .map_err(|e| Pkcs11Error::Key(format!("the CA certificate is not PEM ({e})")))?
        .into_contents();
    let fingerprint: String = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let uri = key.relabel(&label_for(base, &fingerprint))?;
    Ok(GeneratedCa {
        cert_pem,
        key_pem: uri.to_string(),
    })
}

/// Deletes the key of the CA with this fingerprint, if the token has one. Returns whether it
/// did.
pub fn destroy_ca_key(
    base: &Pkcs11Uri,
    pin: Option<Pin>,
    fingerprint_sha256: &str,
) -> Result<bool, Pkcs11Error> {
    let uri = base.with_object(&label_for(base, fingerprint_sha256));
    match Pkcs11Key::open(&uri, pin, 1) {
        Ok(k) => k.destroy().map(|()| true),
        Err(Pkcs11Error::Key(m)) if m.contains("no private key") => Ok(false),
        Err(e) => Err(e),
    }
}
