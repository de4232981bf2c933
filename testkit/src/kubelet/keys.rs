//! Keys of the kubelet key types, with the two key carriers exactly as the kubelet (Go's
//! crypto) produces them: `pkixPublicKey` + `proofOfPossession`, and the stub PKCS#10 request.
//! ML-DSA keys (Kubernetes 1.38, `crypto/mldsa`) travel only in the stub request, signed with
//! pure ML-DSA and the empty context as Go 1.27's `x509.CreateCertificateRequest` does.
//!
//! Signing is done by aws-lc-rs (C, fast RSA key generation), except the ECDSA P-384 proof: Go
//! signs SHA-256(uid) with P-384, a pairing aws-lc-rs does not offer, so RustCrypto does it.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, PqdsaKeyPair,
    PqdsaSigningAlgorithm, RsaKeyPair, RsaPssSaltLength, RsaSignatureEncoding,
};
use sha2::{Digest, Sha256};

use super::der;

/// Go's `rsa.SignPSS` with `PSSSaltLengthAuto` (the default the kubelet uses) signs with the
/// maximum salt length: emLen - hLen - 2.
static RSA_PSS_SHA256_MAX_SALT: RsaSignatureEncoding =
    signature::RSA_PSS_SHA256.with_pss_salt_length(RsaPssSaltLength::Max);

/// The kubelet's `keyType` values for a podCertificate projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Rsa3072,
    Rsa4096,
    /// Kubernetes 1.38+ (gate `PodCertificateMLDSA`).
    MlDsa44,
    MlDsa65,
    MlDsa87,
}

impl KeyType {
    /// The types every kubelet version makes (`--key-types all`); the ML-DSA ones, 1.38 and
    /// later only, are [`KeyType::ML_DSA`].
    pub const ALL: [KeyType; 6] = [
        KeyType::Ed25519,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::EcdsaP521,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];
    pub const ML_DSA: [KeyType; 3] = [KeyType::MlDsa44, KeyType::MlDsa65, KeyType::MlDsa87];

    /// The name used in `spec.volumes[].projected.sources[].podCertificate.keyType`.
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

impl FromStr for KeyType {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .chain(KeyType::ML_DSA)
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| KeyError::UnknownType(s.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("unknown key type {0:?}; expected one of ED25519, ECDSAP256, ECDSAP384, ECDSAP521, RSA3072, RSA4096, MLDSA44, MLDSA65, MLDSA87")]
    UnknownType(String),
    #[error("generating a {0} key failed")]
    Generate(KeyType),
    #[error("signing with the {0} key failed")]
    Sign(KeyType),
    /// 1.38's kubelet sends ML-DSA keys only in the stub PKCS#10 request.
    #[error(
        "a {0} key has no proof of possession over the pod UID (only the stub PKCS#10 request)"
    )]
    NoProof(KeyType),
}

/// The signing halves of one key.
enum Signer {
    Ed25519(Ed25519KeyPair),
    /// `csr` signs with the curve's own hash (the CSR); `proof` signs SHA-256(uid).
    Ecdsa {
        csr: EcdsaKeyPair,
        proof: EcProof,
    },
    Rsa(RsaKeyPair),
    MlDsa(PqdsaKeyPair),
}

enum EcProof {
    /// aws-lc-rs has the SHA-256 pairing for this curve (P-256 and P-521).
    AwsLc(EcdsaKeyPair),
    P384(p384::ecdsa::SigningKey),
}

struct KeyInner {
    key_type: KeyType,
    pkcs8_der: Vec<u8>,
    spki_der: Vec<u8>,
    signer: Signer,
}

/// One private key of a kubelet key type. Cheap to clone (shared).
#[derive(Clone)]
pub struct KubeletKey(Arc<KeyInner>);

impl fmt::Debug for KubeletKey {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeletKey")
            .field("key_type", &self.0.key_type)
            .finish_non_exhaustive()
    }
}

impl KubeletKey {
    /// A fresh key of `key_type`.
    pub fn generate(key_type: KeyType) -> Result<Self, KeyError> {
        let gen_err = |_| KeyError::Generate(key_type);
        let inner = match key_type {
            KeyType::Ed25519 => {
                let kp = Ed25519KeyPair::generate().map_err(gen_err)?;
                let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&kp)
                    .map_err(gen_err)?
                    .as_ref()
                    .to_vec();
                let spki = AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
                    .map_err(gen_err)?
                    .as_ref()
                    .to_vec();
                KeyInner {
                    key_type,
                    pkcs8_der: pkcs8,
                    spki_der: spki,
                    signer: Signer::Ed25519(kp),
                }
            }
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521 => {
                let csr_alg = ecdsa_csr_algorithm(key_type);
                let csr = EcdsaKeyPair::generate(csr_alg).map_err(gen_err)?;
                let pkcs8 = csr.to_pkcs8v1().map_err(gen_err)?.as_ref().to_vec();
                let spki = AsDer::<PublicKeyX509Der>::as_der(csr.public_key())
                    .map_err(gen_err)?
                    .as_ref()
                    .to_vec();
                let proof = match key_type {
                    KeyType::EcdsaP256 => EcProof::AwsLc(
                        EcdsaKeyPair::from_pkcs8(
                            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                            &pkcs8,
                        )
                        .map_err(|_| KeyError::Generate(key_type))?,
                    ),
                    KeyType::EcdsaP521 => EcProof::AwsLc(
                        EcdsaKeyPair::from_pkcs8(
                            &signature::ECDSA_P521_SHA256_ASN1_SIGNING,
                            &pkcs8,
                        )
                        .map_err(|_| KeyError::Generate(key_type))?,
                    ),
                    _ => {
                        use pkcs8::DecodePrivateKey;
                        EcProof::P384(
                            p384::ecdsa::SigningKey::from_pkcs8_der(&pkcs8)
                                .map_err(|_| KeyError::Generate(key_type))?,
                        )
                    }
                };
                KeyInner {
                    key_type,
                    pkcs8_der: pkcs8,
                    spki_der: spki,
                    signer: Signer::Ecdsa { csr, proof },
                }
            }
            KeyType::Rsa3072 | KeyType::Rsa4096 => {
                let size = if key_type == KeyType::Rsa3072 {
                    KeySize::Rsa3072
                } else {
                    KeySize::Rsa4096
                };
                let kp = RsaKeyPair::generate(size).map_err(gen_err)?;
                let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&kp)
                    .map_err(gen_err)?
                    .as_ref()
                    .to_vec();
                let spki = AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
                    .map_err(gen_err)?
                    .as_ref()
                    .to_vec();
                KeyInner {
                    key_type,
                    pkcs8_der: pkcs8,
                    spki_der: spki,
                    signer: Signer::Rsa(kp),
                }
            }
            KeyType::MlDsa44 | KeyType::MlDsa65 | KeyType::MlDsa87 => {
                let kp = PqdsaKeyPair::generate(ml_dsa_algorithm(key_type)).map_err(gen_err)?;
                // The seed form, as Go's x509.MarshalPKCS8PrivateKey writes an mldsa key.
                let pkcs8 = kp.to_pkcs8v1().map_err(gen_err)?.as_ref().to_vec();
                let spki = AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
                    .map_err(gen_err)?
                    .as_ref()
                    .to_vec();
                KeyInner {
                    key_type,
                    pkcs8_der: pkcs8,
                    spki_der: spki,
                    signer: Signer::MlDsa(kp),
                }
            }
        };
        Ok(KubeletKey(Arc::new(inner)))
    }

    pub fn key_type(&self) -> KeyType {
        self.0.key_type
    }

    /// DER SubjectPublicKeyInfo, as Go's `x509.MarshalPKIXPublicKey`.
    pub fn spki_der(&self) -> &[u8] {
        &self.0.spki_der
    }

    /// DER PKCS#8 (v1) private key, as Go's `x509.MarshalPKCS8PrivateKey`.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.0.pkcs8_der
    }

    /// The `PRIVATE KEY` PEM block the kubelet puts first in a credential bundle.
    pub fn private_key_pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new("PRIVATE KEY", self.0.pkcs8_der.clone()),
            // Go's pem.EncodeToMemory ends lines with LF; the pem crate defaults to CRLF.
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    /// The proof of possession over the pod UID, exactly as the kubelet makes it: pure Ed25519;
    /// ASN.1 ECDSA over SHA-256(uid) on every curve; RSA-PSS SHA-256 with the maximum salt.
    pub fn proof_of_possession(&self, pod_uid: &str) -> Result<Vec<u8>, KeyError> {
        let kt = self.0.key_type;
        let rng = SystemRandom::new();
        let msg = pod_uid.as_bytes();
        match &self.0.signer {
            Signer::Ed25519(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
            Signer::Ecdsa {
                proof: EcProof::AwsLc(kp),
                ..
            } => Ok(kp
                .sign(&rng, msg)
                .map_err(|_| KeyError::Sign(kt))?
                .as_ref()
                .to_vec()),
            Signer::Ecdsa {
                proof: EcProof::P384(sk),
                ..
            } => {
                use p384::ecdsa::signature::hazmat::PrehashSigner;
                let digest = Sha256::digest(msg);
                let sig: p384::ecdsa::Signature =
                    sk.sign_prehash(&digest).map_err(|_| KeyError::Sign(kt))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Signer::Rsa(kp) => rsa_sign(kp, &RSA_PSS_SHA256_MAX_SALT, msg, kt),
            Signer::MlDsa(_) => Err(KeyError::NoProof(kt)),
        }
    }

    /// The stub request of Go's `x509.CreateCertificateRequest(rand, &x509.CertificateRequest{},
    /// key)`: version 0, empty subject, the SPKI, an empty attribute set; signed with RSA
    /// PKCS#1 v1.5 SHA-256, ECDSA with SHA-256/384/512 by curve, pure Ed25519, or pure
    /// ML-DSA with the empty context.
    pub fn stub_pkcs10_request(&self) -> Result<Vec<u8>, KeyError> {
        let kt = self.0.key_type;
        let version = [0x02, 0x01, 0x00];
        let empty_name = der::seq(&[]);
        // [0] IMPLICIT SET OF Attribute, present and empty (as Go writes it).
        let empty_attributes = [0xa0, 0x00];
        let info = der::seq(&[&version, &empty_name, &self.0.spki_der, &empty_attributes]);
        let rng = SystemRandom::new();
        let signature = match &self.0.signer {
            Signer::Ed25519(kp) => kp.sign(&info).as_ref().to_vec(),
            Signer::Ecdsa { csr, .. } => csr
                .sign(&rng, &info)
                .map_err(|_| KeyError::Sign(kt))?
                .as_ref()
                .to_vec(),
            Signer::Rsa(kp) => rsa_sign(kp, &signature::RSA_PKCS1_SHA256, &info, kt)?,
            Signer::MlDsa(kp) => {
                let mut sig = vec![0u8; kp.algorithm().signature_len()];
                let len = kp.sign(&info, &mut sig).map_err(|_| KeyError::Sign(kt))?;
                sig.truncate(len);
                sig
            }
        };
        let algorithm = der::seq(&[signature_algorithm_oid(kt), signature_algorithm_params(kt)]);
        Ok(der::seq(&[&info, &algorithm, &der::bit_string(&signature)]))
    }
}

fn rsa_sign(
    kp: &RsaKeyPair,
    encoding: &'static RsaSignatureEncoding,
    msg: &[u8],
    kt: KeyType,
) -> Result<Vec<u8>, KeyError> {
    let mut sig = vec![0u8; kp.public_modulus_len()];
    kp.sign(encoding, &SystemRandom::new(), msg, &mut sig)
        .map_err(|_| KeyError::Sign(kt))?;
    Ok(sig)
}

fn ecdsa_csr_algorithm(kt: KeyType) -> &'static EcdsaSigningAlgorithm {
    match kt {
        KeyType::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        KeyType::EcdsaP521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        _ => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
    }
}

/// The DER OBJECT IDENTIFIER of the CSR's signature algorithm.
fn signature_algorithm_oid(kt: KeyType) -> &'static [u8] {
    match kt {
        // sha256WithRSAEncryption 1.2.840.113549.1.1.11
        KeyType::Rsa3072 | KeyType::Rsa4096 => &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b,
        ],
        // ecdsa-with-SHA256/384/512 1.2.840.10045.4.3.{2,3,4}
        KeyType::EcdsaP256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        KeyType::EcdsaP384 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        KeyType::EcdsaP521 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
        // id-Ed25519 1.3.101.112
        KeyType::Ed25519 => &[0x06, 0x03, 0x2b, 0x65, 0x70],
        // id-ml-dsa-44/65/87 2.16.840.1.101.3.4.3.{17,18,19} (RFC 9881)
        KeyType::MlDsa44 => &[
            0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x11,
        ],
        KeyType::MlDsa65 => &[
            0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12,
        ],
        KeyType::MlDsa87 => &[
            0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x13,
        ],
    }
}

fn ml_dsa_algorithm(kt: KeyType) -> &'static PqdsaSigningAlgorithm {
    match kt {
        KeyType::MlDsa44 => &signature::ML_DSA_44_SIGNING,
        KeyType::MlDsa87 => &signature::ML_DSA_87_SIGNING,
        _ => &signature::ML_DSA_65_SIGNING,
    }
}

/// Go writes an explicit NULL parameter for RSA and none for ECDSA, Ed25519 and ML-DSA.
fn signature_algorithm_params(kt: KeyType) -> &'static [u8] {
    if kt.is_rsa() {
        &[0x05, 0x00]
    } else {
        &[]
    }
}

/// Where the emulator gets keys. Real kubelets use a fresh key per request; RSA generation is
/// slow enough that tests and large runs may reuse a small pool of RSA keys instead.
#[derive(Clone)]
pub struct KeySource {
    rsa_pool: Option<Arc<RsaPool>>,
}

struct RsaPool {
    size: usize,
    keys: Mutex<Vec<KubeletKey>>,
    /// Per RSA type, so consecutive requests of one type never reuse the same key.
    next: [AtomicUsize; 2],
}

impl Default for KeySource {
    fn default() -> Self {
        Self::fresh()
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySource")
            .field("rsa_pool", &self.rsa_pool.as_ref().map(|p| p.size))
            .finish()
    }
}

impl KeySource {
    /// A new key for every request, like the kubelet.
    pub fn fresh() -> Self {
        KeySource { rsa_pool: None }
    }

    /// Fresh EC and Ed25519 keys; RSA keys cycle through a pool of `size` keys per RSA type
    /// (generated on first use). With `size >= 2` consecutive requests of one pod still get
    /// different keys.
    pub fn rsa_pool(size: usize) -> Self {
        KeySource {
            rsa_pool: Some(Arc::new(RsaPool {
                size: size.max(1),
                keys: Mutex::new(Vec::new()),
                next: [AtomicUsize::new(0), AtomicUsize::new(0)],
            })),
        }
    }

    /// One process-wide pool (4 keys per RSA type), so many tests share the RSA generation cost.
    pub fn shared_test_pool() -> Self {
        static POOL: std::sync::OnceLock<KeySource> = std::sync::OnceLock::new();
        POOL.get_or_init(|| KeySource::rsa_pool(4)).clone()
    }

    /// A key of `key_type` (blocking: call from a blocking thread for RSA).
    pub fn key(&self, key_type: KeyType) -> Result<KubeletKey, KeyError> {
        let Some(pool) = self.rsa_pool.as_ref().filter(|_| key_type.is_rsa()) else {
            return KubeletKey::generate(key_type);
        };
        let turn =
            pool.next[usize::from(key_type == KeyType::Rsa4096)].fetch_add(1, Ordering::Relaxed);
        {
            let keys = pool.keys.lock().unwrap_or_else(|e| e.into_inner());
            let of_type: Vec<&KubeletKey> =
                keys.iter().filter(|k| k.key_type() == key_type).collect();
            if of_type.len() >= pool.size {
                return Ok(of_type[turn % of_type.len()].clone());
            }
        }
        // Generated outside the lock: a few extra keys under contention are harmless.
        let key = KubeletKey::generate(key_type)?;
        pool.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(key.clone());
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_names_round_trip() {
        for kt in KeyType::ALL.into_iter().chain(KeyType::ML_DSA) {
            assert_eq!(kt.as_str().parse::<KeyType>().unwrap(), kt);
        }
        assert!(matches!(
            "RSA2048".parse::<KeyType>(),
            Err(KeyError::UnknownType(_))
        ));
    }

    #[test]
    fn pool_cycles_distinct_rsa_keys() {
        let src = KeySource::rsa_pool(2);
        let a = src.key(KeyType::Rsa3072).unwrap();
        let b = src.key(KeyType::Rsa3072).unwrap();
        let c = src.key(KeyType::Rsa3072).unwrap();
        assert_ne!(a.spki_der(), b.spki_der());
        assert_ne!(b.spki_der(), c.spki_der());
    }
}
