//! Test helpers shared by the kubelet tests: a throwaway CA that issues leaves for a request's
//! key with rcgen, and the Issued status a signer would write.

#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SubjectPublicKeyInfo};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
        }
    }

    /// A leaf for `spki_der` valid over [not_before, not_after], as PEM.
    pub fn leaf(
        &self,
        spki_der: &[u8],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> String {
        let spki = SubjectPublicKeyInfo::from_der(spki_der).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = not_before;
        params.not_after = not_after;
        params.signed_by(&spki, &self.issuer).unwrap().pem()
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// Whole seconds, as certificates and the API carry them.
pub fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap()
}

/// The status a signer writes to issue: one Issued condition, the chain and the three times.
/// Lifetime 2 h, backdated 1 min, refresh at notBefore + 1 h.
pub fn issued_status(ca: &TestCa, spki_der: &[u8], now: OffsetDateTime) -> Value {
    let nb = whole_seconds(now) - Duration::minutes(1);
    let na = nb + Duration::hours(2);
    let bra = nb + Duration::hours(1);
    status_with(ca.leaf(spki_der, nb, na), nb, na, bra)
}

pub fn status_with(
    chain: String,
    nb: OffsetDateTime,
    na: OffsetDateTime,
    bra: OffsetDateTime,
) -> Value {
    json!({
        "conditions": [{
            "type": "Issued",
            "status": "True",
            "reason": "Issued",
            "message": "issued by the test signer",
            "lastTransitionTime": rfc3339(whole_seconds(OffsetDateTime::now_utc())),
        }],
        "certificateChain": chain,
        "notBefore": rfc3339(nb),
        "notAfter": rfc3339(na),
        "beginRefreshAt": rfc3339(bra),
    })
}

pub fn denied_status(reason: &str, message: &str) -> Value {
    json!({
        "conditions": [{
            "type": "Denied",
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": rfc3339(whole_seconds(OffsetDateTime::now_utc())),
        }],
    })
}
