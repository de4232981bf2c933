//! From a PodCertificateSigner's spec to what runs: the policy ([`SignerConfig`]), where the CA
//! comes from and where the trust anchors go. Every refusal names the field, so it can be shown
//! as is in the object's Ready condition and by `podcert-signer sign --signer`.

use std::time::Duration as StdDuration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::settings::{Bootstrap, CaSpec, PinSecret, Pkcs11KeyRef, SignerSettings};
use crate::trust_bundle::TrustBundleConfig;
use podcert_core::ca::CaKeyType;
use podcert_core::key_type::KeyType;
use podcert_core::policy::{
    AccountPattern, AccountRules, DnsPolicy, DnsTemplate, IdTemplate, Operator, Requirement,
    Selector, ServicePolicy, SignerConfig,
};
use podcert_core::rotation::RotationPolicy;
use podcert_core::spiffe_id::TrustDomain;

use super::{CaKeyTypeName, CaPkcs11Spec, KeyTypeName, PodCertificateSignerSpec};

/// A spec field that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub struct SignerSpecError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl ToString) -> SignerSpecError {
    SignerSpecError {
        field: field.into(),
        message: message.to_string(),
    }
}

impl From<KeyTypeName> for KeyType {
    fn from(k: KeyTypeName) -> Self {
        match k {
            KeyTypeName::Ed25519 => KeyType::Ed25519,
            KeyTypeName::EcdsaP256 => KeyType::EcdsaP256,
            KeyTypeName::EcdsaP384 => KeyType::EcdsaP384,
            KeyTypeName::EcdsaP521 => KeyType::EcdsaP521,
            KeyTypeName::Rsa3072 => KeyType::Rsa3072,
            KeyTypeName::Rsa4096 => KeyType::Rsa4096,
            KeyTypeName::MlDsa44 => KeyType::MlDsa44,
            KeyTypeName::MlDsa65 => KeyType::MlDsa65,
            KeyTypeName::MlDsa87 => KeyType::MlDsa87,
        }
    }
}

impl From<CaKeyTypeName> for CaKeyType {
    fn from(k: CaKeyTypeName) -> Self {
        match k {
            CaKeyTypeName::EcdsaP256 => CaKeyType::EcdsaP256,
            CaKeyTypeName::EcdsaP384 => CaKeyType::EcdsaP384,
            CaKeyTypeName::Ed25519 => CaKeyType::Ed25519,
            CaKeyTypeName::Rsa3072 => CaKeyType::Rsa3072,
            CaKeyTypeName::MlDsa44 => CaKeyType::MlDsa44,
            CaKeyTypeName::MlDsa65 => CaKeyType::MlDsa65,
            CaKeyTypeName::MlDsa87 => CaKeyType::MlDsa87,
        }
    }
}

impl From<KeyType> for KeyTypeName {
    fn from(k: KeyType) -> Self {
        match k {
            KeyType::Ed25519 => KeyTypeName::Ed25519,
            KeyType::EcdsaP256 => KeyTypeName::EcdsaP256,
            KeyType::EcdsaP384 => KeyTypeName::EcdsaP384,
            KeyType::EcdsaP521 => KeyTypeName::EcdsaP521,
            KeyType::Rsa3072 => KeyTypeName::Rsa3072,
            KeyType::Rsa4096 => KeyTypeName::Rsa4096,
            KeyType::MlDsa44 => KeyTypeName::MlDsa44,
            KeyType::MlDsa65 => KeyTypeName::MlDsa65,
            KeyType::MlDsa87 => KeyTypeName::MlDsa87,
        }
    }
}

impl From<CaKeyType> for CaKeyTypeName {
    fn from(k: CaKeyType) -> Self {
        match k {
            CaKeyType::EcdsaP256 => CaKeyTypeName::EcdsaP256,
            CaKeyType::EcdsaP384 => CaKeyTypeName::EcdsaP384,
            CaKeyType::Ed25519 => CaKeyTypeName::Ed25519,
            CaKeyType::Rsa3072 => CaKeyTypeName::Rsa3072,
            CaKeyType::MlDsa44 => CaKeyTypeName::MlDsa44,
            CaKeyType::MlDsa65 => CaKeyTypeName::MlDsa65,
            CaKeyType::MlDsa87 => CaKeyTypeName::MlDsa87,
        }
    }
}

/// A duration as a spec writes it (`90s`, `1500ms`): what [`duration`] reads back exactly.
pub fn duration_text(d: time::Duration) -> String {
    if d.subsec_nanoseconds() == 0 {
        format!("{}s", d.whole_seconds())
    } else {
        format!("{}ms", d.whole_milliseconds())
    }
}

/// The preview time: half the propagation delay unless given; "0s" (None) is no wait. A root
/// must reach the live bundle before its CA signs, so it is shorter than the delay.
fn preview_duration(
    text: Option<&str>,
    propagation: time::Duration,
) -> Result<Option<std::time::Duration>, SignerSpecError> {
    const FIELD: &str = "trustBundle.previewDuration";
    let d = match text {
        None => propagation / 2,
        Some(t) => duration(FIELD, t)?,
    };
    if d.is_zero() {
        return Ok(None);
    }
    if d.is_negative() || (text.is_some() && d >= propagation) {
        return Err(err(
            FIELD,
            format!(
                "{} must be shorter than the propagation delay ({}): a root must be live before its CA signs",
                duration_text(d),
                duration_text(propagation)
            ),
        ));
    }
    Ok(Some(std::time::Duration::from_millis(
        d.whole_milliseconds().try_into().unwrap_or(u64::MAX),
    )))
}

fn duration(field: &str, text: &str) -> Result<time::Duration, SignerSpecError> {
    podcert_core::duration::parse_duration(text).map_err(|m| err(field, m))
}

fn selector(name: &str, s: &LabelSelector) -> Result<Selector, SignerSpecError> {
    let mut out = Selector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        expressions: Vec::new(),
    };
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let field = format!("{name}.matchExpressions[{i}]");
        let op = Operator::parse(&e.operator).map_err(|m| err(&field, m))?;
        let values = e.values.clone().unwrap_or_default();
        out.expressions
            .push(Requirement::new(&e.key, op, &values).map_err(|m| err(&field, m))?);
    }
    Ok(out)
}

/// The policy part of a spec.
pub fn signer_config(spec: &PodCertificateSignerSpec) -> Result<SignerConfig, SignerSpecError> {
    let td = TrustDomain::new(&spec.trust_domain).map_err(|e| err("trustDomain", e))?;
    let mut cfg = SignerConfig::new(&spec.signer_name, td).map_err(|e| err("signerName", e))?;
    cfg.spiffe_path = IdTemplate::parse(&spec.spiffe_id).map_err(|e| err("spiffeID", e))?;
    cfg.namespace_selector = spec
        .namespace_selector
        .as_ref()
        .map(|s| selector("namespaceSelector", s))
        .transpose()?;
    cfg.pod_selector = spec
        .pod_selector
        .as_ref()
        .map(|s| selector("podSelector", s))
        .transpose()?;
    if let Some(sa) = &spec.service_accounts {
        let parse = |list: &[String], name: &str| -> Result<Vec<AccountPattern>, SignerSpecError> {
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    AccountPattern::parse(p)
                        .map_err(|e| err(format!("serviceAccounts.{name}[{i}]"), e))
                })
                .collect()
        };
        cfg.service_accounts = AccountRules {
            allow: parse(&sa.allow, "allow")?,
            deny: parse(&sa.deny, "deny")?,
        };
    }
    if let Some(d) = &spec.dns_names {
        let key = &d.annotation_key;
        if !valid_annotation_key(key) {
            return Err(err(
                "dnsNames.annotationKey",
                format!("{key:?} is not a qualified annotation key like podcert.dev/dns-names (the apiserver refuses other keys in unverifiedUserAnnotations)"),
            ));
        }
        let parse =
            |list: &[String], name: &str, any: bool| -> Result<Vec<DnsTemplate>, SignerSpecError> {
                list.iter()
                    .enumerate()
                    .map(|(i, t)| {
                        DnsTemplate::parse(t, any)
                            .map_err(|e| err(format!("dnsNames.{name}[{i}]"), e))
                    })
                    .collect()
            };
        cfg.dns = Some(DnsPolicy {
            annotation_key: key.clone(),
            allowed: parse(&d.allowed, "allowed", true)?,
            always: parse(&d.always, "always", false)?,
        });
        if let Some(f) = &d.from_services {
            let mut p = ServicePolicy::new(&f.cluster_domain)
                .map_err(|e| err("dnsNames.fromServices.clusterDomain", e))?;
            p.forms.short = f.short_names;
            p.required = f.required;
            if !valid_annotation_key(&f.annotation_key) {
                return Err(err(
                    "dnsNames.fromServices.annotationKey",
                    format!(
                        "{:?} is not a qualified annotation key like podcert.dev/services",
                        f.annotation_key
                    ),
                ));
            }
            if f.annotation_key == *key {
                return Err(err(
                    "dnsNames.fromServices.annotationKey",
                    "must differ from dnsNames.annotationKey",
                ));
            }
            p.annotation_key = f.annotation_key.clone();
            p.wait = duration("dnsNames.fromServices.wait", &f.wait)?;
            p.validate()
                .map_err(|e| err("dnsNames.fromServices.wait", e))?;
            cfg.services = Some(p);
        }
    }
    if let Some(types) = &spec.key_types {
        cfg.allowed_key_types = types.iter().map(|k| KeyType::from(*k)).collect();
    }
    cfg.max_lifetime = duration("maxLifetime", &spec.max_lifetime)?;
    cfg.backdate = duration("backdate", &spec.backdate)?;
    cfg.refresh_fraction = spec.refresh_fraction;
    cfg.validate().map_err(|e| {
        use podcert_core::policy::ConfigError as C;
        let field = match e {
            C::SignerName(_) => "signerName",
            C::LifetimeTooShort(_) => "maxLifetime",
            C::Backdate(_) => "backdate",
            C::RefreshFraction(_) => "refreshFraction",
            C::NoKeyTypes => "keyTypes",
            C::Services(_) | C::AnnotationKeyClash(_) => "dnsNames.fromServices",
        };
        err(field, e)
    })?;
    Ok(cfg)
}

/// `prefix/name` with a DNS-subdomain prefix, as the API requires of user annotation keys.
fn valid_annotation_key(key: &str) -> bool {
    let Some((prefix, name)) = key.split_once('/') else {
        return false;
    };
    podcert_core::policy::valid_signer_name(&format!("{prefix}/x"))
        && !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

/// The whole spec. CA Secrets live in `own_namespace` (the signer's namespace): the chart
/// grants Secret access there only, and a PodCertificateSigner cannot point the signer at
/// another namespace's Secrets.
pub fn settings(
    spec: &PodCertificateSignerSpec,
    own_namespace: &str,
    poll: StdDuration,
) -> Result<SignerSettings, SignerSpecError> {
    let config = signer_config(spec)?;
    let ca = ca(spec, own_namespace, poll)?;
    build(spec, config, ca)
}

/// The whole spec with its CA given instead of read from `spec.ca`: how `run --ca-memory`
/// converts the flag signer, whose in-memory CA no object can ask for (a trust anchor that
/// changes on every restart).
pub fn settings_with_ca(
    spec: &PodCertificateSignerSpec,
    ca: CaSpec,
) -> Result<SignerSettings, SignerSpecError> {
    let config = signer_config(spec)?;
    build(spec, config, ca)
}

/// Where a spec's CA comes from.
fn ca(
    spec: &PodCertificateSignerSpec,
    own_namespace: &str,
    poll: StdDuration,
) -> Result<CaSpec, SignerSpecError> {
    Ok(match (&spec.ca.secret, &spec.ca.files) {
        (Some(s), None) => CaSpec::Secret {
            namespace: own_namespace.to_string(),
            name: s.name.clone(),
            bootstrap: s
                .bootstrap
                .then(|| -> Result<Bootstrap, SignerSpecError> {
                    Ok(Bootstrap {
                        key_type: s.key_type.into(),
                        trust_domain: spec.trust_domain.clone(),
                        validity: duration("ca.secret.validity", &s.validity)?,
                    })
                })
                .transpose()?,
            poll,
            pkcs11: spec
                .ca
                .pkcs11
                .as_ref()
                .map(|p| pkcs11_key(p, own_namespace))
                .transpose()?,
        },
        (None, Some(f)) => match (&f.key_file, &spec.ca.pkcs11) {
            (Some(key), None) => CaSpec::Files {
                cert: f.cert_file.clone().into(),
                key: key.clone().into(),
                trust_anchors: f.trust_anchors_file.clone().map(Into::into),
                poll,
            },
            (None, Some(p)) => CaSpec::Pkcs11 {
                cert: f.cert_file.clone().into(),
                key: pkcs11_key(p, own_namespace)?,
                trust_anchors: f.trust_anchors_file.clone().map(Into::into),
                poll,
            },
            _ => {
                return Err(err(
                    "ca.files",
                    "give exactly one of files.keyFile or ca.pkcs11 (the key in a token)",
                ))
            }
        },
        _ => return Err(err("ca", "give exactly one of secret or files")),
    })
}

fn pkcs11_key(p: &CaPkcs11Spec, own_namespace: &str) -> Result<Pkcs11KeyRef, SignerSpecError> {
    // The URI is parsed (with its limits) where the token is opened; here only its scheme.
    if !p
        .uri
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("pkcs11:"))
    {
        return Err(err("ca.pkcs11.uri", "must be a PKCS#11 URI (pkcs11:...)"));
    }
    Ok(Pkcs11KeyRef {
        uri: p.uri.clone(),
        pin_secret: p.pin_secret_ref.as_ref().map(|r| PinSecret {
            namespace: own_namespace.to_string(),
            name: r.name.clone(),
            key: r.key.clone(),
        }),
    })
}

/// The rotation schedule and trust bundle around a converted policy and CA.
fn build(
    spec: &PodCertificateSignerSpec,
    config: SignerConfig,
    ca: CaSpec,
) -> Result<SignerSettings, SignerSpecError> {
    let mut rotation = RotationPolicy {
        ca_validity: time::Duration::days(365),
        prepare_at_fraction: RotationPolicy::DEFAULT_PREPARE_AT_FRACTION,
        propagation_delay: RotationPolicy::DEFAULT_PROPAGATION_DELAY,
        max_leaf_lifetime: config.max_lifetime,
        min_leaf_lifetime: podcert_core::policy::MIN_LIFETIME,
        safety_margin: RotationPolicy::DEFAULT_SAFETY_MARGIN,
    };
    if let Some(s) = &spec.ca.secret {
        rotation.prepare_at_fraction = s.rotate_at_fraction;
        rotation.propagation_delay = duration("ca.secret.propagationDelay", &s.propagation_delay)?;
        if let CaSpec::Secret {
            bootstrap: Some(b), ..
        } = &ca
        {
            // The signer rotates what it bootstrapped: the schedule must never cut a leaf short.
            rotation.ca_validity = b.validity;
            rotation
                .validate()
                .map_err(|e| err("ca.secret", format!("rotation schedule (validity, rotateAtFraction, propagationDelay, maxLifetime): {e}")))?;
        }
    }
    let tb = &spec.trust_bundle;
    let preview = preview_duration(tb.preview_duration.as_deref(), rotation.propagation_delay)?;
    let trust_bundle = tb.enabled.then(|| {
        let mut c = TrustBundleConfig::new(&spec.signer_name);
        c.suffix = tb.suffix.clone();
        c.labels = tb.labels.clone();
        c.configmap_namespaces = tb.config_map_namespaces.clone();
        c.configmap_name = tb.config_map_name.clone();
        c.trust_domain = Some(spec.trust_domain.clone());
        c.preview = preview;
        c
    });
    Ok(SignerSettings {
        config,
        ca,
        trust_bundle,
        rotation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> PodCertificateSignerSpec {
        let yaml = format!(
            "signerName: podcert.dev/x\ntrustDomain: x.example.org\nca: {{secret: {{name: x}}}}\n{extra}"
        );
        serde_saphyr::from_str(&yaml).unwrap()
    }

    #[test]
    fn pod_selector_and_services_convert_and_name_the_bad_field() {
        let cfg = signer_config(&spec(
            "podSelector: {matchLabels: {app: web}}\ndnsNames: {fromServices: {shortNames: true, wait: 5s}}",
        ))
        .unwrap();
        assert!(cfg.needs_pod());
        let s = cfg.services.unwrap();
        assert_eq!(s.cluster_domain, "cluster.local");
        assert!(s.forms.short);
        assert_eq!(s.wait, time::Duration::seconds(5));
        assert_eq!(
            s.annotation_key,
            podcert_core::policy::DEFAULT_SERVICES_ANNOTATION_KEY
        );
        for (extra, field) in [
            (
                "dnsNames: {fromServices: {clusterDomain: Cluster.Local}}",
                "dnsNames.fromServices.clusterDomain",
            ),
            (
                "dnsNames: {fromServices: {wait: 11m}}",
                "dnsNames.fromServices.wait",
            ),
            (
                "dnsNames: {annotationKey: a.example/k, fromServices: {annotationKey: a.example/k}}",
                "dnsNames.fromServices.annotationKey",
            ),
            (
                "podSelector: {matchExpressions: [{key: a, operator: Equals}]}",
                "podSelector.matchExpressions[0]",
            ),
            ("spiffeID: \"app/{pod.labels.app}\"", "spiffeID"),
        ] {
            let e = signer_config(&spec(extra)).unwrap_err();
            assert_eq!(e.field, field, "{extra}: {e}");
        }
    }

    #[test]
    fn duration_text_reads_back_exactly() {
        for d in [
            time::Duration::ZERO,
            time::Duration::seconds(1),
            time::Duration::hours(24),
            time::Duration::days(365),
            time::Duration::milliseconds(1500),
        ] {
            let text = duration_text(d);
            assert_eq!(duration("f", &text).unwrap(), d, "{text}");
        }
        assert_eq!(duration_text(time::Duration::minutes(90)), "5400s");
    }
}
