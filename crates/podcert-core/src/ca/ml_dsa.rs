//! An ML-DSA CA key (FIPS 204) held in memory. rcgen signs with ML-DSA (its `PKCS_ML_DSA_*`
//! algorithms) but can only generate such keys, not load them from PKCS#8, so a loaded key is
//! aws-lc-rs's own key pair behind rcgen's [`SigningKey`] trait. Signatures are pure ML-DSA
//! with the empty context, as RFC 9881 specifies for certificates.

use aws_lc_rs::signature::{self as sig, KeyPair as _, PqdsaKeyPair, PqdsaSigningAlgorithm};
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};

use super::{CaError, CaKeyType};

/// An ML-DSA private key and the rcgen algorithm it signs certificates with.
pub(crate) struct MlDsaKey {
    key_pair: PqdsaKeyPair,
    alg: &'static SignatureAlgorithm,
}

impl MlDsaKey {
    /// Parses PKCS#8 (the seed form Go and aws-lc-rs write, or the expanded form).
    pub(crate) fn from_pkcs8(der: &[u8], key_type: CaKeyType) -> Result<Self, CaError> {
        let signing = signing_algorithm(key_type).ok_or_else(|| {
            CaError::UnsupportedKey(format!("{} is not an ML-DSA key type", key_type.name()))
        })?;
        let key_pair = PqdsaKeyPair::from_pkcs8(signing, der).map_err(|e| {
            CaError::BadKey(format!(
                "the {} private key was rejected ({e})",
                key_type.name()
            ))
        })?;
        Ok(MlDsaKey {
            key_pair,
            alg: key_type.signature_algorithm(),
        })
    }
}

fn signing_algorithm(key_type: CaKeyType) -> Option<&'static PqdsaSigningAlgorithm> {
    match key_type {
        CaKeyType::MlDsa44 => Some(&sig::ML_DSA_44_SIGNING),
        CaKeyType::MlDsa65 => Some(&sig::ML_DSA_65_SIGNING),
        CaKeyType::MlDsa87 => Some(&sig::ML_DSA_87_SIGNING),
        _ => None,
    }
}

impl PublicKeyData for MlDsaKey {
    fn der_bytes(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

impl SigningKey for MlDsaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut signature = vec![0; self.key_pair.algorithm().signature_len()];
        let len = self
            .key_pair
            .sign(msg, &mut signature)
            .map_err(|_| rcgen::Error::RingUnspecified)?;
        signature.truncate(len);
        Ok(signature)
    }
}
