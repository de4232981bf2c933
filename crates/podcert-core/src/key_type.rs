//! The subject key types the PodCertificateRequest API allows, named as the kubelet names them.

use std::fmt;
use std::str::FromStr;

/// A key type the API admits (`RSA3072`, `RSA4096`, `ECDSAP256`, `ECDSAP384`, `ECDSAP521`,
/// `ED25519`, and from Kubernetes 1.38 `MLDSA44`, `MLDSA65`, `MLDSA87`: FIPS 204 ML-DSA).
/// RSA-2048, P-224 and anything else never become a `KeyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Rsa3072,
    Rsa4096,
    MlDsa44,
    MlDsa65,
    MlDsa87,
}

impl KeyType {
    pub const ALL: [KeyType; 9] = [
        KeyType::Ed25519,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::EcdsaP521,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
        KeyType::MlDsa44,
        KeyType::MlDsa65,
        KeyType::MlDsa87,
    ];

    /// The kubelet's name for this key type.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ED25519",
            KeyType::EcdsaP256 => "ECDSAP256",
            KeyType::EcdsaP384 => "ECDSAP384",
            KeyType::EcdsaP521 => "ECDSAP521",
            KeyType::Rsa3072 => "RSA3072",
            KeyType::Rsa4096 => "RSA4096",
            KeyType::MlDsa44 => "MLDSA44",
            KeyType::MlDsa65 => "MLDSA65",
            KeyType::MlDsa87 => "MLDSA87",
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa3072 | KeyType::Rsa4096)
    }

    pub fn is_ml_dsa(self) -> bool {
        matches!(self, KeyType::MlDsa44 | KeyType::MlDsa65 | KeyType::MlDsa87)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown key type {0:?}; expected one of ED25519, ECDSAP256, ECDSAP384, ECDSAP521, RSA3072, RSA4096, MLDSA44, MLDSA65, MLDSA87")]
pub struct UnknownKeyType(pub String);

impl FromStr for KeyType {
    type Err = UnknownKeyType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownKeyType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for k in KeyType::ALL {
            assert_eq!(k.as_str().parse::<KeyType>().unwrap(), k);
        }
        assert!("RSA2048".parse::<KeyType>().is_err());
        assert!("ecdsap256".parse::<KeyType>().is_ok());
        assert_eq!("mldsa65".parse::<KeyType>().unwrap(), KeyType::MlDsa65);
        assert!("MLDSA128".parse::<KeyType>().is_err());
    }
}
