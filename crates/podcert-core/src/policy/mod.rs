//! What a signer is willing to issue: its configuration and the decision for one request.
//!
//! Pure: the decision depends only on the request's apiserver-verified fields, the checked
//! subject key, the signer's configuration and, for signers that read them, the pod's labels
//! and the namespace's Services (passed in as data by the caller). `unverified_user_annotations`
//! and pod labels are written by whoever writes the pod spec, so they are treated as hostile
//! input: any annotation key this signer does not recognise is a denial (as the API
//! documentation asks of signers), and a label value is checked before it is used.

mod access;
mod dns;
mod identity;
mod labels;
mod pod;
mod selector;
mod services;
mod template;

pub use access::{AccountPattern, AccountRules, PatternError};
pub use dns::{
    DnsError, DnsPolicy, DnsTemplate, DEFAULT_ANNOTATION_KEY as DEFAULT_DNS_ANNOTATION_KEY,
};
pub use identity::{
    check_identity, IdTemplate, IdentityError, DEFAULT_PATH as DEFAULT_SPIFFE_PATH,
};
pub use labels::{valid_key as valid_label_key, valid_value as valid_label_value, LabelProblem};
pub use pod::{mismatch as pod_mismatch, PodFacts, PodInfo, PodUnknown};
pub use selector::{Operator, Requirement, Selector, SelectorError};
pub use services::{
    NameForms, ServiceDenial, ServiceInfo, ServiceOutcome, ServicePolicy, ServicePolicyError,
    DEFAULT_ANNOTATION_KEY as DEFAULT_SERVICES_ANNOTATION_KEY,
    DEFAULT_WAIT as DEFAULT_SERVICE_WAIT, MAX_WAIT as MAX_SERVICE_WAIT,
};
pub use template::{TemplateError, Values, Var};

use std::collections::{BTreeMap, BTreeSet};

use time::Duration;

use crate::issue::LeafProfile;
use crate::key_type::KeyType;
use crate::proof::{ProofError, SubjectKey};
use crate::request::Request;
use crate::spiffe_id::TrustDomain;

/// The shortest certificate Kubernetes accepts (status validation: notAfter - notBefore >= 1h).
pub const MIN_LIFETIME: Duration = Duration::hours(1);

/// Reasons a signer denies a request. Each `as_str` matches the apiserver's condition reason
/// pattern `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$` and has no `%` (the kubelet formats it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The key type is not allowed by the API or by this signer.
    UnsupportedKeyType,
    /// The proof of possession or the stub CSR's self-signature does not verify.
    InvalidProof,
    /// The key material could not be parsed.
    MalformedKey,
    /// `unverifiedUserAnnotations` holds a key this signer does not recognise.
    UnknownUserAnnotation,
    /// The request is addressed to another signer.
    SignerNameMismatch,
    /// The verified identity cannot form a valid SPIFFE ID (or an always-added DNS name).
    InvalidIdentity,
    /// The request's namespace does not match the signer's namespace selector.
    NamespaceNotAllowed,
    /// The service account is denied, or not allowed, by the signer's lists.
    ServiceAccountNotAllowed,
    /// A requested DNS name is malformed, a wildcard, or matches none of the signer's templates.
    DnsNameNotAllowed,
    /// A template uses a pod label the pod does not have.
    MissingPodLabel,
    /// A pod label a template uses has a value that cannot go where the template puts it.
    InvalidPodLabel,
    /// The pod's labels do not match the signer's pod selector.
    PodNotAllowed,
    /// The pod named by the request is gone (not found, or another pod with another UID).
    PodUIDMismatch,
    /// A Service the pod names does not select it (or does not exist after the wait).
    ServiceDoesNotSelectPod,
    /// The signer requires a Service and none selects the pod (after the wait).
    NoServiceSelectsPod,
}

impl DenyReason {
    /// Every reason, for exporters that list them before the first denial (metrics start at 0).
    pub const ALL: [DenyReason; 15] = [
        DenyReason::UnsupportedKeyType,
        DenyReason::InvalidProof,
        DenyReason::MalformedKey,
        DenyReason::UnknownUserAnnotation,
        DenyReason::SignerNameMismatch,
        DenyReason::InvalidIdentity,
        DenyReason::NamespaceNotAllowed,
        DenyReason::ServiceAccountNotAllowed,
        DenyReason::DnsNameNotAllowed,
        DenyReason::MissingPodLabel,
        DenyReason::InvalidPodLabel,
        DenyReason::PodNotAllowed,
        DenyReason::PodUIDMismatch,
        DenyReason::ServiceDoesNotSelectPod,
        DenyReason::NoServiceSelectsPod,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::UnsupportedKeyType => "UnsupportedKeyType",
            DenyReason::InvalidProof => "InvalidProof",
            DenyReason::MalformedKey => "MalformedKey",
            DenyReason::UnknownUserAnnotation => "UnknownUserAnnotation",
            DenyReason::SignerNameMismatch => "SignerNameMismatch",
            DenyReason::InvalidIdentity => "InvalidIdentity",
            DenyReason::NamespaceNotAllowed => "NamespaceNotAllowed",
            DenyReason::ServiceAccountNotAllowed => "ServiceAccountNotAllowed",
            DenyReason::DnsNameNotAllowed => "DnsNameNotAllowed",
            DenyReason::MissingPodLabel => "MissingPodLabel",
            DenyReason::InvalidPodLabel => "InvalidPodLabel",
            DenyReason::PodNotAllowed => "PodNotAllowed",
            DenyReason::PodUIDMismatch => "PodUIDMismatch",
            DenyReason::ServiceDoesNotSelectPod => "ServiceDoesNotSelectPod",
            DenyReason::NoServiceSelectsPod => "NoServiceSelectsPod",
        }
    }
}

/// A signer's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct SignerConfig {
    pub signer_name: String,
    pub trust_domain: TrustDomain,
    /// Longest lifetime this signer issues (the request's maxExpirationSeconds may lower it).
    pub max_lifetime: Duration,
    pub backdate: Duration,
    pub refresh_fraction: f64,
    pub allowed_key_types: BTreeSet<KeyType>,
    /// `unverifiedUserAnnotations` keys this signer understands; any other key is denied.
    /// (The DNS annotation key, when `dns` is set, is understood as well.)
    pub known_annotation_keys: BTreeSet<String>,
    /// The SPIFFE ID path, rendered from verified fields.
    pub spiffe_path: IdTemplate,
    /// Only namespaces whose labels match get certificates (`None`: every namespace).
    pub namespace_selector: Option<Selector>,
    pub service_accounts: AccountRules,
    /// DNS names pods may ask for and names every leaf gets (`None`: no DNS names).
    pub dns: Option<DnsPolicy>,
    /// Only pods whose labels match get certificates (`None`: every pod).
    pub pod_selector: Option<Selector>,
    /// DNS names from the Services that select the pod (`None`: none).
    pub services: Option<ServicePolicy>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "signer name {0:?} is invalid: it must look like <domain>/<path>, e.g. example.com/spiffe"
    )]
    SignerName(String),
    #[error("maximum lifetime {0} is below the one hour Kubernetes requires of every certificate")]
    LifetimeTooShort(Duration),
    #[error("backdate {0} is outside 0s..=5m (the apiserver refuses a notBefore more than 5 minutes off)")]
    Backdate(Duration),
    #[error("refresh fraction {0} must lie strictly between 0 and 1")]
    RefreshFraction(f64),
    #[error("no key types are allowed")]
    NoKeyTypes,
    #[error(transparent)]
    Services(#[from] ServicePolicyError),
    #[error("annotation key {0:?} is used for both DNS names and Services")]
    AnnotationKeyClash(String),
}

impl SignerConfig {
    /// How far notBefore is set in the past unless configured (clock skew).
    pub const DEFAULT_BACKDATE: Duration = Duration::seconds(60);
    /// Where in the lifetime the kubelet refreshes unless configured.
    pub const DEFAULT_REFRESH_FRACTION: f64 = 0.5;

    /// The defaults (README, "What is checked, and what is issued"): 24 h lifetime cap, 60 s
    /// backdate, refresh at half-life, every key type the API allows, no user annotations
    /// recognised.
    pub fn new(signer_name: &str, trust_domain: TrustDomain) -> Result<Self, ConfigError> {
        let cfg = SignerConfig {
            signer_name: signer_name.to_string(),
            trust_domain,
            max_lifetime: Duration::hours(24),
            backdate: Self::DEFAULT_BACKDATE,
            refresh_fraction: Self::DEFAULT_REFRESH_FRACTION,
            allowed_key_types: KeyType::ALL.into_iter().collect(),
            known_annotation_keys: BTreeSet::new(),
            spiffe_path: IdTemplate::default(),
            namespace_selector: None,
            service_accounts: AccountRules::default(),
            dns: None,
            pod_selector: None,
            services: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the invariants `decide` relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !valid_signer_name(&self.signer_name) {
            return Err(ConfigError::SignerName(self.signer_name.clone()));
        }
        if self.max_lifetime < MIN_LIFETIME {
            return Err(ConfigError::LifetimeTooShort(self.max_lifetime));
        }
        if self.backdate.is_negative() || self.backdate > Duration::minutes(5) {
            return Err(ConfigError::Backdate(self.backdate));
        }
        if !(self.refresh_fraction > 0.0 && self.refresh_fraction < 1.0) {
            return Err(ConfigError::RefreshFraction(self.refresh_fraction));
        }
        if self.allowed_key_types.is_empty() {
            return Err(ConfigError::NoKeyTypes);
        }
        if let Some(s) = &self.services {
            s.validate()?;
            if self
                .dns
                .as_ref()
                .is_some_and(|d| d.annotation_key == s.annotation_key)
            {
                return Err(ConfigError::AnnotationKeyClash(s.annotation_key.clone()));
            }
        }
        Ok(())
    }

    /// Whether a decision needs the pod object (its labels, or its Services).
    pub fn needs_pod(&self) -> bool {
        self.pod_selector.is_some()
            || self.services.is_some()
            || self.spiffe_path.uses_labels()
            || self.dns.as_ref().is_some_and(DnsPolicy::uses_labels)
    }

    /// Every `unverifiedUserAnnotations` key this signer understands.
    pub fn known_annotation_keys(&self) -> BTreeSet<&str> {
        let mut keys: BTreeSet<&str> = self
            .known_annotation_keys
            .iter()
            .map(String::as_str)
            .collect();
        if let Some(d) = &self.dns {
            keys.insert(d.annotation_key.as_str());
        }
        if let Some(s) = &self.services {
            keys.insert(s.annotation_key.as_str());
        }
        keys
    }
}

/// `<domain>/<path>`: a DNS subdomain, a slash, and a non-empty path without spaces.
/// (The apiserver validates signer names on the request; this catches configuration typos.)
pub fn valid_signer_name(name: &str) -> bool {
    let Some((domain, path)) = name.split_once('/') else {
        return false;
    };
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let path_ok = !path.is_empty() && path.bytes().all(|b| b.is_ascii_graphic() && b != b'%');
    domain_ok && path_ok
}

/// A refusal: the reason (machine-readable) and a message for the pod's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
    pub message: String,
}

/// The policy's answer for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Issue(LeafProfile),
    Deny(Denial),
}

impl Decision {
    fn deny(reason: DenyReason, message: String) -> Self {
        Decision::Deny(Denial { reason, message })
    }
}

fn denial(reason: DenyReason, message: String) -> Denial {
    Denial { reason, message }
}

/// Checks what needs no key: the signer name and the user annotations.
pub fn precheck(req: &Request, cfg: &SignerConfig) -> Option<Denial> {
    if req.signer_name != cfg.signer_name {
        return Some(denial(
            DenyReason::SignerNameMismatch,
            format!(
                "this request is addressed to signer {:?}, not to {:?}",
                req.signer_name, cfg.signer_name
            ),
        ));
    }
    // Before any rule reads them: names the apiserver would refuse (a `/` in a namespace)
    // must not reach a template or a pattern.
    if let Err(e) = check_identity(req) {
        return Some(denial(DenyReason::InvalidIdentity, e.to_string()));
    }
    let known_keys = cfg.known_annotation_keys();
    let unknown: Vec<&str> = req
        .unverified_user_annotations
        .keys()
        .filter(|k| !known_keys.contains(k.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known = if known_keys.is_empty() {
            "none".to_string()
        } else {
            known_keys.into_iter().collect::<Vec<_>>().join(", ")
        };
        return Some(denial(
            DenyReason::UnknownUserAnnotation,
            format!(
                "signer {} does not recognise the unverifiedUserAnnotations key(s) {} (recognised: {known}); remove them from the pod's podCertificate volume",
                cfg.signer_name,
                unknown.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if let Err(message) = cfg
        .service_accounts
        .check(&req.namespace, &req.service_account_name)
    {
        return Some(denial(DenyReason::ServiceAccountNotAllowed, message));
    }
    // Names that need the pod's labels are checked once the pod is read (in `decide_for`).
    if let Some(dns) = cfg.dns.as_ref().filter(|d| !d.uses_labels()) {
        if let Err(e) = dns.resolve(&Values::request(req)) {
            return Some(dns_denial(e));
        }
    }
    None
}

fn dns_denial(e: DnsError) -> Denial {
    match e {
        DnsError::Name(message) => denial(DenyReason::DnsNameNotAllowed, message),
        DnsError::Label(p) => label_denial(p, "DNS name"),
    }
}

fn label_denial(p: LabelProblem, used_in: &str) -> Denial {
    let reason = match p {
        LabelProblem::Missing(_) => DenyReason::MissingPodLabel,
        LabelProblem::Invalid { .. } => DenyReason::InvalidPodLabel,
    };
    denial(reason, format!("{used_in}: {p}"))
}

/// Checks the pod the signer read: it must be the request's pod (same UID), and match the
/// signer's pod selector.
pub fn check_pod(req: &Request, cfg: &SignerConfig, pod: PodFacts<'_>) -> Option<Denial> {
    if let Some(message) = pod_mismatch(req, pod) {
        return Some(denial(DenyReason::PodUIDMismatch, message));
    }
    let PodFacts::Found(pod) = pod else {
        return None;
    };
    let selector = cfg.pod_selector.as_ref()?;
    if selector.matches(&pod.labels) {
        return None;
    }
    Some(denial(
        DenyReason::PodNotAllowed,
        format!(
            "signer {} does not issue to pod {}/{}: its labels do not match the signer's pod selector ({selector})",
            cfg.signer_name, req.namespace, req.pod_name
        ),
    ))
}

/// Maps a Service rule's denial to the requester's reason.
pub fn service_denial(kind: ServiceDenial, message: String) -> Denial {
    let reason = match kind {
        ServiceDenial::DoesNotSelect => DenyReason::ServiceDoesNotSelectPod,
        ServiceDenial::NoneSelects => DenyReason::NoServiceSelectsPod,
        ServiceDenial::BadAnnotation => DenyReason::DnsNameNotAllowed,
    };
    denial(reason, message)
}

/// The namespace's labels are needed (the signer has a namespace selector) but not known yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the labels of namespace {0} are not known yet (needed by the namespace selector)")]
pub struct NamespaceUnknown(pub String);

/// Checks the namespace selector against the namespace's labels (`None`: not known).
pub fn check_namespace(
    req: &Request,
    cfg: &SignerConfig,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<Option<Denial>, NamespaceUnknown> {
    let Some(selector) = &cfg.namespace_selector else {
        return Ok(None);
    };
    let labels = labels.ok_or_else(|| NamespaceUnknown(req.namespace.clone()))?;
    if selector.matches(labels) {
        return Ok(None);
    }
    Ok(Some(denial(
        DenyReason::NamespaceNotAllowed,
        format!(
            "signer {} does not issue in namespace {}: its labels do not match the signer's namespace selector ({selector})",
            cfg.signer_name, req.namespace
        ),
    )))
}

impl From<&ProofError> for DenyReason {
    fn from(e: &ProofError) -> Self {
        match e {
            ProofError::UnsupportedKeyType(_) => DenyReason::UnsupportedKeyType,
            ProofError::InvalidProof(_) => DenyReason::InvalidProof,
            ProofError::Malformed(_) => DenyReason::MalformedKey,
        }
    }
}

/// Maps a key-checking failure to the denial the requester sees.
pub fn deny_for_proof_error(err: &ProofError, cfg: &SignerConfig) -> Denial {
    match err {
        ProofError::UnsupportedKeyType(detail) => denial(
            err.into(),
            format!(
                "{detail}; signer {} accepts {}",
                cfg.signer_name,
                allowed_list(cfg)
            ),
        ),
        ProofError::InvalidProof(detail) => denial(
            err.into(),
            format!("the requester did not prove possession of the key: {detail}"),
        ),
        ProofError::Malformed(detail) => denial(
            err.into(),
            format!("the request's key could not be read: {detail}"),
        ),
    }
}

fn allowed_list(cfg: &SignerConfig) -> String {
    cfg.allowed_key_types
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides for a request whose key has been checked, for a signer that reads no pod.
pub fn decide(req: &Request, key: &SubjectKey, cfg: &SignerConfig) -> Decision {
    decide_for(req, key, cfg, None)
}

/// Decides for a request whose key has been checked, with its pod's labels when they were
/// read. (Names from Services are added by the pipeline once this has decided to issue.)
pub fn decide_for(
    req: &Request,
    key: &SubjectKey,
    cfg: &SignerConfig,
    pod_labels: Option<&BTreeMap<String, String>>,
) -> Decision {
    if let Some(d) = precheck(req, cfg) {
        return Decision::Deny(d);
    }
    if !cfg.allowed_key_types.contains(&key.key_type) {
        let suggestion = cfg
            .allowed_key_types
            .iter()
            .next()
            .map(|k| format!("; set keyType: {k} in the pod's podCertificate volume"))
            .unwrap_or_default();
        return Decision::deny(
            DenyReason::UnsupportedKeyType,
            format!(
                "signer {} does not issue for {} keys; it accepts {}{suggestion}",
                cfg.signer_name,
                key.key_type,
                allowed_list(cfg)
            ),
        );
    }
    // Identity comes only from fields the apiserver verified (NodeRestriction checks them).
    // Pod labels are the pod author's, checked as label values before they reach the ID.
    let spiffe_id = match cfg
        .spiffe_path
        .render_with(&cfg.trust_domain, req, pod_labels)
    {
        Ok(id) => id,
        Err(IdentityError::Label(p)) => return Decision::Deny(label_denial(p, "SPIFFE ID")),
        Err(e) => return Decision::deny(DenyReason::InvalidIdentity, e.to_string()),
    };
    let values = Values {
        req,
        labels: pod_labels,
    };
    let dns_names = match cfg.dns.as_ref().map(|d| d.resolve(&values)).transpose() {
        Ok(names) => names.unwrap_or_default(),
        Err(e) => return Decision::Deny(dns_denial(e)),
    };
    let requested = Duration::seconds(req.max_expiration_seconds);
    Decision::Issue(LeafProfile {
        spiffe_id,
        dns_names,
        max_lifetime: requested.min(cfg.max_lifetime),
        backdate: cfg.backdate,
        refresh_fraction: cfg.refresh_fraction,
    })
}

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::request::{ApiVersion, Request};
    use std::collections::BTreeMap;

    /// A request from pod team-a/web-0 (service account web) on node-1.
    pub fn req() -> Request {
        Request {
            api_version: ApiVersion::V1beta1,
            name: "req-1".into(),
            namespace: "team-a".into(),
            uid: "u".into(),
            resource_version: None,
            creation_timestamp: None,
            signer_name: "example.com/spiffe".into(),
            pod_name: "web-0".into(),
            pod_uid: "pod-uid".into(),
            service_account_name: "web".into(),
            service_account_uid: "sa-uid".into(),
            node_name: "node-1".into(),
            node_uid: "node-uid".into(),
            max_expiration_seconds: 86400,
            pkix_public_key: None,
            proof_of_possession: None,
            stub_pkcs10_request: None,
            unverified_user_annotations: BTreeMap::new(),
            terminal: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::req;
    use super::*;

    #[test]
    fn deny_reason_all_lists_every_reason_once() {
        // A new variant fails to compile here until it is added to this match, which is the
        // reminder to add it to `ALL` (the metrics pre-create one series per entry).
        for r in DenyReason::ALL {
            match r {
                DenyReason::UnsupportedKeyType
                | DenyReason::InvalidProof
                | DenyReason::MalformedKey
                | DenyReason::UnknownUserAnnotation
                | DenyReason::SignerNameMismatch
                | DenyReason::InvalidIdentity
                | DenyReason::NamespaceNotAllowed
                | DenyReason::ServiceAccountNotAllowed
                | DenyReason::DnsNameNotAllowed
                | DenyReason::MissingPodLabel
                | DenyReason::InvalidPodLabel
                | DenyReason::PodNotAllowed
                | DenyReason::PodUIDMismatch
                | DenyReason::ServiceDoesNotSelectPod
                | DenyReason::NoServiceSelectsPod => {}
            }
        }
        let names: BTreeSet<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names.len(),
            DenyReason::ALL.len(),
            "a reason is listed twice"
        );
    }

    fn cfg() -> SignerConfig {
        SignerConfig::new(
            "example.com/spiffe",
            TrustDomain::new("cluster.local").unwrap(),
        )
        .unwrap()
    }

    fn key(t: KeyType) -> SubjectKey {
        SubjectKey {
            key_type: t,
            spki_der: vec![1, 2, 3],
        }
    }

    fn reason(d: &Decision) -> Option<&'static str> {
        match d {
            Decision::Deny(d) => Some(d.reason.as_str()),
            Decision::Issue(_) => None,
        }
    }

    #[test]
    fn issues_the_default_spiffe_id_from_verified_fields() {
        let Decision::Issue(p) = decide(&req(), &key(KeyType::Ed25519), &cfg()) else {
            panic!("denied")
        };
        assert_eq!(p.spiffe_id, "spiffe://cluster.local/ns/team-a/sa/web");
        assert_eq!(p.max_lifetime, Duration::hours(24));
        assert_eq!(p.backdate, Duration::seconds(60));
        assert!(p.dns_names.is_empty());
    }

    #[test]
    fn lifetime_is_the_smaller_of_request_and_policy() {
        let mut r = req();
        r.max_expiration_seconds = 3600;
        let Decision::Issue(p) = decide(&r, &key(KeyType::Ed25519), &cfg()) else {
            panic!()
        };
        assert_eq!(p.max_lifetime, Duration::hours(1));
        let mut c = cfg();
        c.max_lifetime = Duration::hours(2);
        r.max_expiration_seconds = 7_862_400;
        let Decision::Issue(p) = decide(&r, &key(KeyType::Ed25519), &c) else {
            panic!()
        };
        assert_eq!(p.max_lifetime, Duration::hours(2));
    }

    #[test]
    fn denies_identities_the_apiserver_would_refuse() {
        // A `/` would otherwise become extra segments: .../ns/a/b/sa/web.
        for tweak in [
            (|r: &mut Request| r.namespace = "a/b".into()) as fn(&mut Request),
            |r| r.service_account_name = "web/x".into(),
            |r| r.pod_name = "Pod".into(),
        ] {
            let mut r = req();
            tweak(&mut r);
            let d = decide(&r, &key(KeyType::Ed25519), &cfg());
            assert_eq!(reason(&d), Some("InvalidIdentity"));
            assert_eq!(
                precheck(&r, &cfg()).unwrap().reason.as_str(),
                "InvalidIdentity"
            );
        }
    }

    #[test]
    fn denies_another_signers_request() {
        let mut r = req();
        r.signer_name = "other.example/x".into();
        assert_eq!(
            reason(&decide(&r, &key(KeyType::Ed25519), &cfg())),
            Some("SignerNameMismatch")
        );
    }

    #[test]
    fn denies_unknown_annotation_keys_and_names_them() {
        let mut r = req();
        r.unverified_user_annotations
            .insert("evil.example/dns".into(), "x".into());
        let d = decide(&r, &key(KeyType::Ed25519), &cfg());
        assert_eq!(reason(&d), Some("UnknownUserAnnotation"));
        let Decision::Deny(Denial { message, .. }) = d else {
            panic!()
        };
        assert!(message.contains("evil.example/dns"), "{message}");
        let mut c = cfg();
        c.known_annotation_keys.insert("evil.example/dns".into());
        assert_eq!(reason(&decide(&r, &key(KeyType::Ed25519), &c)), None);
    }

    #[test]
    fn denies_key_types_the_policy_excludes_with_a_suggestion() {
        let mut c = cfg();
        c.allowed_key_types = [KeyType::EcdsaP256].into_iter().collect();
        let d = decide(&req(), &key(KeyType::Rsa3072), &c);
        let Decision::Deny(Denial { reason, message }) = d else {
            panic!()
        };
        assert_eq!(reason.as_str(), "UnsupportedKeyType");
        assert!(message.contains("keyType: ECDSAP256"), "{message}");
    }

    #[test]
    fn proof_errors_map_to_their_reasons() {
        let c = cfg();
        let cases = [
            (
                ProofError::UnsupportedKeyType("RSA 2048".into()),
                "UnsupportedKeyType",
            ),
            (ProofError::InvalidProof("bad".into()), "InvalidProof"),
            (ProofError::Malformed("short".into()), "MalformedKey"),
        ];
        for (e, want) in cases {
            assert_eq!(deny_for_proof_error(&e, &c).reason.as_str(), want);
        }
    }

    #[test]
    fn reasons_match_the_apiserver_pattern() {
        let all = [
            DenyReason::UnsupportedKeyType,
            DenyReason::InvalidProof,
            DenyReason::MalformedKey,
            DenyReason::UnknownUserAnnotation,
            DenyReason::SignerNameMismatch,
            DenyReason::InvalidIdentity,
            DenyReason::NamespaceNotAllowed,
            DenyReason::ServiceAccountNotAllowed,
            DenyReason::DnsNameNotAllowed,
            DenyReason::MissingPodLabel,
            DenyReason::InvalidPodLabel,
            DenyReason::PodNotAllowed,
            DenyReason::PodUIDMismatch,
            DenyReason::ServiceDoesNotSelectPod,
            DenyReason::NoServiceSelectsPod,
        ];
        for r in all {
            let s = r.as_str();
            let first = s.as_bytes()[0];
            let last = *s.as_bytes().last().unwrap();
            assert!(first.is_ascii_alphabetic());
            assert!(s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b',' | b':')));
            assert!(last.is_ascii_alphanumeric() || last == b'_');
        }
    }

    fn pod(uid: &str, labels: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            uid: uid.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_pod_with_another_uid_or_none_is_never_the_requests() {
        let c = cfg();
        let same = pod("pod-uid", &[]);
        assert_eq!(check_pod(&req(), &c, PodFacts::Found(&same)), None);
        // Deleted and re-created under the same name: another pod.
        let other = pod("another-uid", &[("app", "web")]);
        let d = check_pod(&req(), &c, PodFacts::Found(&other)).unwrap();
        assert_eq!(d.reason.as_str(), "PodUIDMismatch");
        assert!(d.message.contains("another-uid"), "{}", d.message);
        let d = check_pod(&req(), &c, PodFacts::NotFound).unwrap();
        assert_eq!(d.reason.as_str(), "PodUIDMismatch");
    }

    #[test]
    fn the_pod_selector_restricts_like_the_namespace_selector() {
        let mut c = cfg();
        c.pod_selector = Some(Selector {
            match_labels: [("podcert.dev/identity".to_string(), "yes".to_string())].into(),
            ..Default::default()
        });
        assert!(c.needs_pod());
        let yes = pod("pod-uid", &[("podcert.dev/identity", "yes")]);
        assert_eq!(check_pod(&req(), &c, PodFacts::Found(&yes)), None);
        let no = pod("pod-uid", &[("app", "web")]);
        let d = check_pod(&req(), &c, PodFacts::Found(&no)).unwrap();
        assert_eq!(d.reason.as_str(), "PodNotAllowed");
        assert!(
            d.message.contains("podcert.dev/identity=yes"),
            "{}",
            d.message
        );
    }

    #[test]
    fn a_label_template_on_a_pod_without_the_label_is_denied_naming_it() {
        let mut c = cfg();
        c.spiffe_path = IdTemplate::parse("ns/{namespace}/app/{pod.labels.app}").unwrap();
        assert!(c.needs_pod());
        let p = pod("pod-uid", &[("tier", "front")]);
        let Decision::Deny(d) = decide_for(&req(), &key(KeyType::Ed25519), &c, Some(&p.labels))
        else {
            panic!("issued")
        };
        assert_eq!(d.reason.as_str(), "MissingPodLabel");
        assert!(d.message.contains("\"app\""), "{}", d.message);
        let p = pod("pod-uid", &[("app", "web")]);
        let Decision::Issue(profile) =
            decide_for(&req(), &key(KeyType::Ed25519), &c, Some(&p.labels))
        else {
            panic!("denied")
        };
        assert_eq!(
            profile.spiffe_id,
            "spiffe://cluster.local/ns/team-a/app/web"
        );
    }

    #[test]
    fn config_refuses_what_kubernetes_would_refuse_later() {
        let td = TrustDomain::new("td").unwrap();
        assert!(matches!(
            SignerConfig::new("no-slash", td.clone()),
            Err(ConfigError::SignerName(_))
        ));
        assert!(matches!(
            SignerConfig::new("Example.com/x", td.clone()),
            Err(ConfigError::SignerName(_))
        ));
        let mut c = SignerConfig::new("example.com/x", td).unwrap();
        c.max_lifetime = Duration::minutes(59);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::LifetimeTooShort(_))
        ));
        c.max_lifetime = Duration::hours(1);
        c.backdate = Duration::minutes(6);
        assert!(matches!(c.validate(), Err(ConfigError::Backdate(_))));
        c.backdate = Duration::seconds(60);
        c.refresh_fraction = 1.0;
        assert!(matches!(c.validate(), Err(ConfigError::RefreshFraction(_))));
    }
}
