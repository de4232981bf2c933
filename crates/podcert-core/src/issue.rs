//! Building and signing the leaf: the SPIFFE X509-SVID profile (README, "What is checked, and
//! what is issued"), with the status times the PodCertificate contract requires.

use crate::ca::Ca;
use crate::key_type::KeyType;
use crate::proof::SubjectKey;
use rand::Rng;
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

/// What the policy decided the leaf should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafProfile {
    /// The full SPIFFE ID, `spiffe://<td>/<path>`, already validated.
    pub spiffe_id: String,
    /// Extra DNS SANs (already validated by policy).
    pub dns_names: Vec<String>,
    /// Upper bound of notAfter - notBefore: min(request maxExpirationSeconds, policy cap).
    pub max_lifetime: Duration,
    /// notBefore = now (whole seconds) - backdate.
    pub backdate: Duration,
    /// beginRefreshAt sits at this fraction of the lifetime (before jitter and clamping).
    pub refresh_fraction: f64,
}

/// A signed leaf and the status times that go with it.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedLeaf {
    /// Leaf then intermediates, PEM, never the root.
    pub chain_pem: String,
    pub leaf_der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub begin_refresh_at: OffsetDateTime,
    /// Serial number, lowercase hex.
    pub serial_hex: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The CA cannot cover a lifetime of at least one hour from now: transient (rotate/reload).
    #[error("the CA expires at {ca_not_after}, too soon to issue a certificate valid for at least one hour")]
    CaExpiresTooSoon { ca_not_after: OffsetDateTime },
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The contract's floor on notAfter - notBefore.
const MIN_LIFETIME: i64 = 3600;
/// beginRefreshAt must stay this far from both ends of the validity.
const REFRESH_MARGIN: i64 = 600;
/// Jitter on beginRefreshAt: up to this fraction of the lifetime either way.
const REFRESH_JITTER: f64 = 0.05;

/// Issues a leaf for `subject` under `ca` following `profile`, at `now`.
pub fn issue_leaf(
    ca: &Ca,
    subject: &SubjectKey,
    profile: &LeafProfile,
    now: OffsetDateTime,
) -> Result<IssuedLeaf, IssueError> {
    let times = leaf_times(ca.not_after(), profile, now, jitter_seconds)?;
    let public_key = SubjectSpki::new(subject)?;
    let serial = crate::ca::generate::random_serial_bytes();

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.not_before = times.not_before;
    params.not_after = times.not_after;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = if subject.key_type.is_rsa() {
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.subject_alt_names = san_list(profile)?;

    let cert = params
        .signed_by(&public_key, &ca.issuer)
        .map_err(|e| IssueError::Signing(e.to_string()))?;
    let mut chain_pem = cert.pem();
    chain_pem.push_str(&ca.chain_tail_pem);
    Ok(IssuedLeaf {
        chain_pem,
        leaf_der: cert.der().to_vec(),
        not_before: times.not_before,
        not_after: times.not_after,
        begin_refresh_at: times.begin_refresh_at,
        serial_hex: serial.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

fn san_list(profile: &LeafProfile) -> Result<Vec<SanType>, IssueError> {
    let uri = profile.spiffe_id.clone().try_into().map_err(|_| {
        IssueError::Signing(format!(
            "the SPIFFE ID {:?} is not an IA5 string",
            profile.spiffe_id
        ))
    })?;
    let mut sans = vec![SanType::URI(uri)];
    for name in &profile.dns_names {
        let dns = name.clone().try_into().map_err(|_| {
            IssueError::Signing(format!("the DNS name {name:?} is not an IA5 string"))
        })?;
        sans.push(SanType::DnsName(dns));
    }
    Ok(sans)
}

/// The three status times, whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeafTimes {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    begin_refresh_at: OffsetDateTime,
}

/// notBefore = now (whole seconds) - backdate; the lifetime is the profile's maximum, cut so
/// notAfter never passes the CA's; beginRefreshAt at the profile's fraction plus `jitter`,
/// clamped to [notBefore + 10 min, notAfter - 10 min].
fn leaf_times(
    ca_not_after: OffsetDateTime,
    profile: &LeafProfile,
    now: OffsetDateTime,
    jitter: impl FnOnce(i64) -> i64,
) -> Result<LeafTimes, IssueError> {
    let to_time = |secs: i64| {
        OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|e| IssueError::Signing(format!("time out of range ({e})")))
    };
    let max_lifetime = profile.max_lifetime.whole_seconds();
    if max_lifetime < MIN_LIFETIME {
        return Err(IssueError::Signing(format!(
            "the profile's maximum lifetime of {max_lifetime} s is under one hour"
        )));
    }
    let nb = now.unix_timestamp() - profile.backdate.whole_seconds();
    let lifetime = max_lifetime.min(ca_not_after.unix_timestamp() - nb);
    if lifetime < MIN_LIFETIME {
        return Err(IssueError::CaExpiresTooSoon { ca_not_after });
    }
    let na = nb + lifetime;
    let fraction = if profile.refresh_fraction.is_finite() {
        profile.refresh_fraction
    } else {
        0.5
    };
    let target = nb + (lifetime as f64 * fraction) as i64 + jitter(lifetime);
    let refresh = target.clamp(nb + REFRESH_MARGIN, na - REFRESH_MARGIN);
    Ok(LeafTimes {
        not_before: to_time(nb)?,
        not_after: to_time(na)?,
        begin_refresh_at: to_time(refresh)?,
    })
}

/// Uniform jitter within ±5 % of the lifetime, so a burst of requests does not refresh at once.
fn jitter_seconds(lifetime: i64) -> i64 {
    let span = (lifetime as f64 * REFRESH_JITTER) as i64;
    if span == 0 {
        return 0;
    }
    rand::thread_rng().gen_range(-span..=span)
}

/// The subject's SPKI for rcgen. rcgen writes the SPKI from (algorithm, key bits); `new`
/// checks that this rebuilds the requester's DER byte for byte, so the leaf carries it verbatim.
struct SubjectSpki<'a> {
    key_bits: &'a [u8],
    alg: &'static SignatureAlgorithm,
}

impl<'a> SubjectSpki<'a> {
    fn new(subject: &'a SubjectKey) -> Result<Self, IssueError> {
        use x509_parser::prelude::FromDer;
        let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&subject.spki_der)
            .map_err(|e| {
                IssueError::Signing(format!("the subject key is not a valid SPKI ({e})"))
            })?;
        if !rest.is_empty() {
            return Err(IssueError::Signing(
                "the subject key has trailing bytes after its SPKI".into(),
            ));
        }
        // The key bits are the tail of the DER (the BIT STRING is the SPKI's last field);
        // borrowing them from `spki_der` avoids a copy, and the re-encoding check below
        // catches any other layout.
        let bits_len = spki.subject_public_key.data.len();
        let key = SubjectSpki {
            key_bits: &subject.spki_der[subject.spki_der.len() - bits_len..],
            alg: match subject.key_type {
                KeyType::Ed25519 => &rcgen::PKCS_ED25519,
                KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
                KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
                KeyType::EcdsaP521 => &rcgen::PKCS_ECDSA_P521_SHA512,
                KeyType::Rsa3072 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
                // Only the SPKI's algorithm OID (no parameters) is taken from these.
                KeyType::MlDsa44 => &rcgen::PKCS_ML_DSA_44,
                KeyType::MlDsa65 => &rcgen::PKCS_ML_DSA_65,
                KeyType::MlDsa87 => &rcgen::PKCS_ML_DSA_87,
            },
        };
        if key.subject_public_key_info() != subject.spki_der {
            return Err(IssueError::Signing(format!(
                "the subject key's SPKI is not the canonical encoding of a {} key",
                subject.key_type
            )));
        }
        Ok(key)
    }
}

impl PublicKeyData for SubjectSpki<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.key_bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(max_lifetime: i64) -> LeafProfile {
        LeafProfile {
            spiffe_id: "spiffe://example.org/ns/a/sa/b".into(),
            dns_names: vec![],
            max_lifetime: Duration::seconds(max_lifetime),
            backdate: Duration::seconds(60),
            refresh_fraction: 0.5,
        }
    }

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    #[test]
    fn times_are_whole_seconds_backdated_and_capped_by_max_lifetime() {
        let now = t(1_000_000) + Duration::milliseconds(750);
        let times = leaf_times(t(9_000_000), &profile(86400), now, |_| 0).unwrap();
        assert_eq!(times.not_before, t(1_000_000 - 60));
        assert_eq!(times.not_after, t(1_000_000 - 60 + 86400));
        assert_eq!(times.begin_refresh_at, t(1_000_000 - 60 + 43200));
    }

    #[test]
    fn ca_not_after_caps_the_lifetime() {
        let times = leaf_times(t(1_000_000 + 7200), &profile(86400), t(1_000_000), |_| 0).unwrap();
        assert_eq!(times.not_after, t(1_000_000 + 7200));
        assert_eq!(times.not_before, t(1_000_000 - 60));
    }

    #[test]
    fn under_one_hour_left_is_ca_expires_too_soon() {
        let err = leaf_times(t(1_000_000 + 3000), &profile(86400), t(1_000_000), |_| 0);
        assert!(matches!(err, Err(IssueError::CaExpiresTooSoon { .. })));
        // Exactly one hour of lifetime (the backdate counts) is still fine.
        assert!(leaf_times(t(1_000_000 + 3540), &profile(86400), t(1_000_000), |_| 0).is_ok());
    }

    #[test]
    fn a_profile_under_one_hour_is_refused() {
        let err = leaf_times(t(9_000_000), &profile(1800), t(1_000_000), |_| 0);
        assert!(matches!(err, Err(IssueError::Signing(_))));
    }

    #[test]
    fn refresh_is_clamped_into_the_window() {
        let early = leaf_times(t(9_000_000), &profile(3600), t(1_000_000), |_| -100_000).unwrap();
        assert_eq!(
            early.begin_refresh_at,
            early.not_before + Duration::minutes(10)
        );
        let late = leaf_times(t(9_000_000), &profile(3600), t(1_000_000), |_| 100_000).unwrap();
        assert_eq!(
            late.begin_refresh_at,
            late.not_after - Duration::minutes(10)
        );
        let mut p = profile(3600);
        p.refresh_fraction = f64::NAN;
        let nan = leaf_times(t(9_000_000), &p, t(1_000_000), |_| 0).unwrap();
        assert_eq!(nan.begin_refresh_at, nan.not_before + Duration::minutes(30));
    }

    #[test]
    fn jitter_stays_within_five_percent() {
        for _ in 0..1000 {
            let j = jitter_seconds(86400);
            assert!(j.abs() <= 4320, "{j}");
        }
        assert_eq!(jitter_seconds(10), 0);
    }
}
