//! One request through the pure pipeline: precheck, key proof, policy, issuance. The result is
//! exactly the status the controller writes (and `podcert-signer sign` prints).
//!
//! A decision is `Issued` or `Denied`. Nothing here produces `Failed`: the kubelet treats it as
//! permanent, so every problem on our side (CA about to expire, signing error) is returned as
//! an error for the caller to retry.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::ca::Ca;
use crate::issue::{self, IssueError, IssuedLeaf};
use crate::policy::{self, Decision, Denial, PodFacts, ServiceInfo, ServiceOutcome, SignerConfig};
use crate::proof;
use crate::request::{ConditionType, Request, Status};

/// The condition reason written with `Issued`.
pub const ISSUED_REASON: &str = "Issued";

/// Why no decision could be reached now (retry later).
#[derive(Debug, thiserror::Error)]
pub enum NotDecided {
    #[error("request {namespace}/{name} is already {}; nothing to do", .condition.as_str())]
    AlreadyTerminal {
        namespace: String,
        name: String,
        condition: ConditionType,
    },
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    NamespaceUnknown(#[from] policy::NamespaceUnknown),
    #[error(transparent)]
    PodUnknown(#[from] policy::PodUnknown),
    #[error(
        "the Services of namespace {0} have not been read yet (needed by dnsNames.fromServices)"
    )]
    ServicesUnknown(String),
    /// A Service the policy needs may still be created: decide again within `retry_after`.
    #[error("{message}")]
    WaitingForService {
        retry_after: time::Duration,
        message: String,
    },
}

/// What the caller knows about the request beyond the object itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The labels of the request's namespace (needed only for a namespace selector).
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// The pod named by the request (needed when [`SignerConfig::needs_pod`]).
    pub pod: PodFacts<'a>,
    /// The Services of the request's namespace (needed for `dnsNames.fromServices`); others
    /// are ignored.
    pub services: Option<&'a [ServiceInfo]>,
}

/// What happened, with the leaf when one was issued (for logs, metrics, inspection).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub leaf: Option<IssuedLeaf>,
    pub spiffe_id: Option<String>,
}

/// Runs one request through the pipeline at `now`, for a signer without a namespace selector.
pub fn process(
    req: &Request,
    cfg: &SignerConfig,
    ca: &Ca,
    now: OffsetDateTime,
) -> Result<Outcome, NotDecided> {
    process_with(req, cfg, ca, now, Facts::default())
}

/// Runs one request through the pipeline at `now`, with what is known about its namespace.
pub fn process_with(
    req: &Request,
    cfg: &SignerConfig,
    ca: &Ca,
    now: OffsetDateTime,
    facts: Facts<'_>,
) -> Result<Outcome, NotDecided> {
    if let Some(condition) = req.terminal {
        return Err(NotDecided::AlreadyTerminal {
            namespace: req.namespace.clone(),
            name: req.name.clone(),
            condition,
        });
    }
    // Cheap checks first: a request for another signer or with forged annotations is denied
    // without spending a signature verification on it.
    let mut early = match policy::precheck(req, cfg) {
        Some(d) => Some(d),
        None => policy::check_namespace(req, cfg, facts.namespace_labels)?,
    };
    let mut labels = None;
    if early.is_none() && cfg.needs_pod() {
        if facts.pod == PodFacts::Unknown {
            return Err(policy::PodUnknown {
                namespace: req.namespace.clone(),
                name: req.pod_name.clone(),
            }
            .into());
        }
        early = policy::check_pod(req, cfg, facts.pod);
        if let PodFacts::Found(p) = facts.pod {
            labels = Some(&p.labels);
        }
    }
    let denial = match early {
        Some(d) => d,
        None => match proof::extract_subject_key(req) {
            Err(e) => policy::deny_for_proof_error(&e, cfg),
            Ok(key) => match policy::decide_for(req, &key, cfg, labels) {
                Decision::Deny(d) => d,
                Decision::Issue(mut profile) => {
                    // Services last: a request denied for its key or labels is not kept
                    // waiting for one.
                    if let (Some(sp), Some(labels)) = (&cfg.services, labels) {
                        let services = facts
                            .services
                            .ok_or_else(|| NotDecided::ServicesUnknown(req.namespace.clone()))?;
                        match sp.resolve(req, labels, services, now) {
                            ServiceOutcome::Names(names) => {
                                for n in names {
                                    if !profile.dns_names.contains(&n) {
                                        profile.dns_names.push(n);
                                    }
                                }
                            }
                            ServiceOutcome::Deny(kind, message) => {
                                return Ok(denied(policy::service_denial(kind, message)))
                            }
                            ServiceOutcome::Wait(retry_after, message) => {
                                return Err(NotDecided::WaitingForService {
                                    retry_after,
                                    message,
                                })
                            }
                        }
                    }
                    let leaf = issue::issue_leaf(ca, &key, &profile, now)?;
                    return Ok(issued(leaf, profile.spiffe_id));
                }
            },
        },
    };
    Ok(denied(denial))
}

fn denied(d: Denial) -> Outcome {
    Outcome {
        status: Status {
            condition: ConditionType::Denied,
            reason: d.reason.as_str().to_string(),
            message: d.message,
            certificate_chain: None,
            not_before: None,
            not_after: None,
            begin_refresh_at: None,
        },
        leaf: None,
        spiffe_id: None,
    }
}

fn issued(leaf: IssuedLeaf, spiffe_id: String) -> Outcome {
    Outcome {
        status: Status {
            condition: ConditionType::Issued,
            reason: ISSUED_REASON.to_string(),
            message: format!("issued {spiffe_id} (serial {})", leaf.serial_hex),
            certificate_chain: Some(leaf.chain_pem.clone()),
            not_before: Some(leaf.not_before),
            not_after: Some(leaf.not_after),
            begin_refresh_at: Some(leaf.begin_refresh_at),
        },
        leaf: Some(leaf),
        spiffe_id: Some(spiffe_id),
    }
}
