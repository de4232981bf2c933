//! DNS names from the Services that select the pod (`dnsNames.fromServices`).
//!
//! The pod's labels come from the pod object the signer read (its UID checked against the
//! request) and the Services from the API; both are passed in as plain data. A Service gives
//! names only when it is in the request's namespace and its selector is non-empty and every
//! key of it is a label of the pod with that value (a Service without a selector selects no
//! pods, as for endpoints). A pod may narrow the set with its annotation (comma-separated
//! Service names); naming a Service that exists but does not select it is a denial. A Service
//! that does not exist yet (a pod created just before its Service) is waited for, up to
//! `wait` after the request was created, and so is the first selecting Service when
//! `required` is set.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use crate::request::Request;

use super::dns::check_name;

/// The annotation key a pod uses to narrow the Services, unless the signer names another.
pub const DEFAULT_ANNOTATION_KEY: &str = "podcert.dev/services";
/// At most this many Services give names to one certificate.
pub const MAX_SERVICES: usize = 16;
/// How long a request waits for its Service unless the signer says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::seconds(60);
/// The longest wait a signer may configure (a pending request holds the pod's start).
pub const MAX_WAIT: Duration = Duration::minutes(10);

/// A Service as the signer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    /// `spec.selector` (`None` or empty: selects no pods).
    pub selector: Option<BTreeMap<String, String>>,
}

impl ServiceInfo {
    /// Whether the Service selects a pod with `labels` (the endpoints controller's rule).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// Which names a Service gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NameForms {
    /// `<svc>` and `<svc>.<ns>` (resolvable only through the pod's search path).
    pub short: bool,
}

/// A signer's `dnsNames.fromServices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePolicy {
    /// The cluster's DNS domain (`cluster.local`): `<svc>.<ns>.svc.<domain>`.
    pub cluster_domain: String,
    pub forms: NameForms,
    /// Every pod must be selected by a Service (waited for, then denied).
    pub required: bool,
    /// The `unverifiedUserAnnotations` key naming the Services a pod wants.
    pub annotation_key: String,
    /// How long after the request's creation a missing Service is waited for.
    pub wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServicePolicyError {
    #[error("cluster domain {0:?} is not a DNS name (lowercase labels, e.g. cluster.local)")]
    ClusterDomain(String),
    #[error("wait {0} is outside 0s..=10m")]
    Wait(Duration),
}

impl ServicePolicy {
    pub fn new(cluster_domain: &str) -> Result<Self, ServicePolicyError> {
        let p = ServicePolicy {
            cluster_domain: cluster_domain.to_string(),
            forms: NameForms::default(),
            required: false,
            annotation_key: DEFAULT_ANNOTATION_KEY.into(),
            wait: DEFAULT_WAIT,
        };
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> Result<(), ServicePolicyError> {
        if check_name(&self.cluster_domain).is_err() {
            return Err(ServicePolicyError::ClusterDomain(
                self.cluster_domain.clone(),
            ));
        }
        if self.wait.is_negative() || self.wait > MAX_WAIT {
            return Err(ServicePolicyError::Wait(self.wait));
        }
        Ok(())
    }

    /// The names of one Service, in a fixed order.
    fn names(&self, svc: &str, ns: &str) -> Vec<String> {
        let mut out = vec![
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.{}", self.cluster_domain),
        ];
        if self.forms.short {
            out.push(svc.to_string());
            out.push(format!("{svc}.{ns}"));
        }
        out
    }

    /// The DNS names the Services give this pod, or why not (now).
    pub fn resolve(
        &self,
        req: &Request,
        pod_labels: &BTreeMap<String, String>,
        services: &[ServiceInfo],
        now: OffsetDateTime,
    ) -> ServiceOutcome {
        // Another namespace's Service never names this pod, whatever its selector says.
        let here: BTreeMap<&str, &ServiceInfo> = services
            .iter()
            .filter(|s| s.namespace == req.namespace)
            .map(|s| (s.name.as_str(), s))
            .collect();
        // Without a creation time (an offline file) there is nothing to wait from.
        let waited = req
            .creation_timestamp
            .map(|c| (now - c).max(Duration::ZERO))
            .unwrap_or(Duration::MAX);
        let wait_left = self.wait.saturating_sub(waited);
        let mut chosen: Vec<&str> = Vec::new();
        if let Some(value) = req.unverified_user_annotations.get(&self.annotation_key) {
            let named: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if named.len() > MAX_SERVICES {
                return ServiceOutcome::Deny(
                    ServiceDenial::BadAnnotation,
                    format!(
                        "{} names {} Services; at most {MAX_SERVICES} are allowed",
                        self.annotation_key,
                        named.len()
                    ),
                );
            }
            for name in named {
                if !service_name(name) {
                    return ServiceOutcome::Deny(
                        ServiceDenial::BadAnnotation,
                        format!(
                            "{}: {:?} is not a Service name (a DNS-1035 label)",
                            self.annotation_key,
                            name.chars().take(80).collect::<String>()
                        ),
                    );
                }
                match here.get(name) {
                    Some(s) if s.selects(pod_labels) => chosen.push(name),
                    Some(_) => {
                        return ServiceOutcome::Deny(
                            ServiceDenial::DoesNotSelect,
                            format!(
                                "{}: Service {}/{name} does not select pod {} (its selector does not match the pod's labels)",
                                self.annotation_key, req.namespace, req.pod_name
                            ),
                        )
                    }
                    None if wait_left.is_positive() => {
                        return ServiceOutcome::Wait(
                            wait_left,
                            format!(
                                "waiting for Service {}/{name}, named by {}",
                                req.namespace, self.annotation_key
                            ),
                        )
                    }
                    None => {
                        return ServiceOutcome::Deny(
                            ServiceDenial::DoesNotSelect,
                            format!(
                                "{}: there is no Service {}/{name} (waited {})",
                                self.annotation_key, req.namespace, self.wait
                            ),
                        )
                    }
                }
            }
        } else {
            chosen = here
                .values()
                .filter(|s| s.selects(pod_labels))
                .map(|s| s.name.as_str())
                .collect();
        }
        chosen.sort_unstable();
        chosen.dedup();
        if chosen.is_empty() && self.required {
            if wait_left.is_positive() {
                return ServiceOutcome::Wait(
                    wait_left,
                    format!(
                        "waiting for a Service of namespace {} that selects pod {}",
                        req.namespace, req.pod_name
                    ),
                );
            }
            return ServiceOutcome::Deny(
                ServiceDenial::NoneSelects,
                format!(
                    "no Service of namespace {} selects pod {} (waited {}); this signer issues only to pods behind a Service",
                    req.namespace, req.pod_name, self.wait
                ),
            );
        }
        if chosen.len() > MAX_SERVICES {
            return ServiceOutcome::Deny(
                ServiceDenial::BadAnnotation,
                format!(
                    "{} Services select pod {}; at most {MAX_SERVICES} give names: name the ones wanted in {}",
                    chosen.len(),
                    req.pod_name,
                    self.annotation_key
                ),
            );
        }
        let mut names = Vec::new();
        for svc in chosen {
            for n in self.names(svc, &req.namespace) {
                if let Err(e) = check_name(&n) {
                    return ServiceOutcome::Deny(ServiceDenial::BadAnnotation, e);
                }
                names.push(n);
            }
        }
        ServiceOutcome::Names(names)
    }
}

/// A Service name: an RFC 1035 label (`ValidateServiceName`).
fn service_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.ends_with('-')
}

/// Which denial a Service rule gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceDenial {
    /// A named Service does not select the pod (or does not exist after the wait).
    DoesNotSelect,
    /// The policy requires a Service and none selects the pod.
    NoneSelects,
    /// The annotation or the names are not usable.
    BadAnnotation,
}

/// What the Service rule says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceOutcome {
    Names(Vec<String>),
    Deny(ServiceDenial, String),
    /// Not yet: ask again within the duration (a Service may still be created).
    Wait(Duration, String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests_support::req;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn svc(ns: &str, name: &str, selector: &[(&str, &str)]) -> ServiceInfo {
        ServiceInfo {
            namespace: ns.into(),
            name: name.into(),
            selector: Some(labels(selector)),
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    /// A request created `age` before [`now`].
    fn aged(age: Duration) -> Request {
        let mut r = req();
        r.creation_timestamp = Some(now() - age);
        r
    }

    fn names(o: ServiceOutcome) -> Vec<String> {
        match o {
            ServiceOutcome::Names(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn selecting_services_of_the_namespace_give_their_names() {
        let mut p = ServicePolicy::new("cluster.local").unwrap();
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let services = [
            svc("team-a", "web", &[("app", "web")]),
            svc("team-a", "front", &[("app", "web"), ("tier", "front")]),
            svc("team-a", "db", &[("app", "db")]),
        ];
        assert_eq!(
            names(p.resolve(&req(), &pod, &services, now())),
            vec![
                "front.team-a.svc",
                "front.team-a.svc.cluster.local",
                "web.team-a.svc",
                "web.team-a.svc.cluster.local"
            ]
        );
        p.forms.short = true;
        let n = names(p.resolve(&req(), &pod, &services[..1], now()));
        assert_eq!(
            n,
            vec![
                "web.team-a.svc",
                "web.team-a.svc.cluster.local",
                "web",
                "web.team-a"
            ]
        );
    }

    #[test]
    fn forgeries_give_no_names() {
        let p = ServicePolicy::new("cluster.local").unwrap();
        let pod = labels(&[("app", "web")]);
        // A Service in another namespace selecting the same labels.
        let other_ns = [svc("team-b", "web", &[("app", "web")])];
        assert!(names(p.resolve(&req(), &pod, &other_ns, now())).is_empty());
        // A selector key the pod lacks: matches only some of the pod's labels.
        let partial = [svc("team-a", "web", &[("app", "web"), ("tier", "front")])];
        assert!(names(p.resolve(&req(), &pod, &partial, now())).is_empty());
        // A Service without a selector selects nothing.
        let empty = [
            svc("team-a", "a", &[]),
            ServiceInfo {
                namespace: "team-a".into(),
                name: "b".into(),
                selector: None,
            },
        ];
        assert!(names(p.resolve(&req(), &pod, &empty, now())).is_empty());
    }

    #[test]
    fn naming_a_service_narrows_and_a_non_selecting_one_is_denied() {
        let p = ServicePolicy::new("cluster.local").unwrap();
        let pod = labels(&[("app", "web")]);
        let services = [
            svc("team-a", "web", &[("app", "web")]),
            svc("team-a", "web-admin", &[("app", "web")]),
            svc("team-a", "db", &[("app", "db")]),
            svc("team-b", "other", &[("app", "web")]),
        ];
        let mut r = req();
        r.unverified_user_annotations
            .insert(DEFAULT_ANNOTATION_KEY.into(), "web".into());
        assert_eq!(
            names(p.resolve(&r, &pod, &services, now())),
            vec!["web.team-a.svc", "web.team-a.svc.cluster.local"]
        );
        for (value, want) in [
            ("web,db", ServiceDenial::DoesNotSelect),
            ("Web", ServiceDenial::BadAnnotation),
            ("web.team-a", ServiceDenial::BadAnnotation),
        ] {
            r.unverified_user_annotations
                .insert(DEFAULT_ANNOTATION_KEY.into(), value.into());
            match p.resolve(&r, &pod, &services, now()) {
                ServiceOutcome::Deny(d, m) => assert_eq!(d, want, "{value}: {m}"),
                other => panic!("{value}: {other:?}"),
            }
        }
        // Another namespace's Service of that name is no Service here: after the wait, denied.
        let mut r = aged(Duration::minutes(5));
        r.unverified_user_annotations
            .insert(DEFAULT_ANNOTATION_KEY.into(), "other".into());
        assert!(matches!(
            p.resolve(&r, &pod, &services, now()),
            ServiceOutcome::Deny(ServiceDenial::DoesNotSelect, _)
        ));
    }

    #[test]
    fn a_missing_service_is_waited_for_then_denied() {
        let mut p = ServicePolicy::new("cluster.local").unwrap();
        p.required = true;
        let pod = labels(&[("app", "web")]);
        match p.resolve(&aged(Duration::seconds(20)), &pod, &[], now()) {
            ServiceOutcome::Wait(left, _) => assert_eq!(left, Duration::seconds(40)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.resolve(&aged(Duration::seconds(61)), &pod, &[], now()),
            ServiceOutcome::Deny(ServiceDenial::NoneSelects, _)
        ));
        // Not required: no Service, no names, no wait.
        p.required = false;
        assert!(names(p.resolve(&aged(Duration::ZERO), &pod, &[], now())).is_empty());
        // A named Service not created yet.
        let mut r = aged(Duration::seconds(1));
        r.unverified_user_annotations
            .insert(DEFAULT_ANNOTATION_KEY.into(), "web".into());
        assert!(matches!(
            p.resolve(&r, &pod, &[], now()),
            ServiceOutcome::Wait(..)
        ));
    }

    #[test]
    fn configuration_is_checked() {
        assert!(ServicePolicy::new("Cluster.Local").is_err());
        assert!(ServicePolicy::new("").is_err());
        let mut p = ServicePolicy::new("cluster.local").unwrap();
        p.wait = Duration::minutes(11);
        assert!(p.validate().is_err());
    }
}
