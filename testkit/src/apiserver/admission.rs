//! Admission and strategy hooks: where the server calls the pure rules of `crate::rules`.

use super::admission_policy::{self, Operation};
use super::crd;
use super::meta::name_of;
use super::registry::{Conversion, ResourceDef};
use super::store::State;
use crate::api_status::{ApiError, FieldError};
use crate::rules::{self, Attributes, UserInfo};
use serde_json::Value;
use time::OffsetDateTime;

fn invalid(def: &ResourceDef, obj: &Value, errs: &[FieldError]) -> ApiError {
    ApiError::invalid(&def.group, &def.kind, name_of(obj), errs)
}

/// The RBAC authorizer over the current store.
pub fn authorize(st: &State, user: &UserInfo, attrs: &Attributes) -> bool {
    node_allows(st, user, attrs) || rules::rbac::authorize(user, attrs, st)
}

/// The Node authorizer's PodCertificateRequest rules, which come before RBAC
/// (plugin/pkg/auth/authorizer/node/node_authorizer.go authorizePodCertificateRequest): a
/// node may create any (NodeRestriction narrows it) and get those naming it; list and watch
/// need a spec.nodeName field selector, which these attributes do not carry, so they are
/// left to RBAC.
fn node_allows(st: &State, user: &UserInfo, attrs: &Attributes) -> bool {
    let Some(node) = rules::node_restriction::node_identity(user) else {
        return false;
    };
    if attrs.api_group != "certificates.k8s.io"
        || attrs.resource != "podcertificaterequests"
        || !attrs.subresource.is_empty()
    {
        return false;
    }
    match attrs.verb.as_str() {
        "create" => true,
        "get" => st
            .get_obj(
                &attrs.api_group,
                &attrs.resource,
                &attrs.namespace,
                &attrs.name,
            )
            .is_some_and(|o| !node.is_empty() && o["spec"]["nodeName"] == node),
        _ => false,
    }
}

/// Authorizes a request, answering a refusal with kube-apiserver's 403.
pub fn require(st: &State, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
    if node_allows(st, user, attrs) {
        return Ok(());
    }
    let (allowed, reason) = rules::rbac::decide(user, attrs, st);
    if allowed {
        Ok(())
    } else {
        Err(rules::rbac::forbidden_error_with_reason(
            user, attrs, &reason,
        ))
    }
}

/// Admission and validation of a create, after defaulting and name generation, in
/// kube-apiserver's order (mutating admission, strategy validation, validating admission).
pub fn admit_create(
    st: &State,
    user: &UserInfo,
    def: &ResourceDef,
    obj: &mut Value,
) -> Result<(), ApiError> {
    create_rules(st, user, def, obj)?;
    let w = policy_write(def, Operation::Create, Some(&*obj), None);
    admission_policy::validate(st, user, &w)
}

/// The write as ValidatingAdmissionPolicies see it.
fn policy_write<'a>(
    def: &'a ResourceDef,
    op: Operation,
    object: Option<&'a Value>,
    old: Option<&'a Value>,
) -> admission_policy::Write<'a> {
    static NULL: Value = Value::Null;
    let o = object.or(old).unwrap_or(&NULL);
    admission_policy::Write {
        def,
        op,
        namespace: super::meta::namespace_of(o),
        name: name_of(o),
        object,
        old,
    }
}

/// ValidatingAdmissionPolicies for a DELETE of `old`.
pub fn admit_delete(
    st: &State,
    user: &UserInfo,
    def: &ResourceDef,
    old: &Value,
) -> Result<(), ApiError> {
    let w = policy_write(def, Operation::Delete, None, Some(old));
    admission_policy::validate(st, user, &w)
}

fn create_rules(
    st: &State,
    user: &UserInfo,
    def: &ResourceDef,
    obj: &mut Value,
) -> Result<(), ApiError> {
    match (def.group.as_str(), def.resource.as_str()) {
        ("certificates.k8s.io", "podcertificaterequests") => {
            // NodeRestriction's pod-certificate volume requirement arrived in 1.37.
            let opts = rules::node_restriction::PcrAdmission {
                require_pod_certificate_volume: matches!(
                    def.conversion,
                    Conversion::Pcr { kube_minor } if kube_minor >= 37
                ),
            };
            rules::node_restriction::admit_pcr_create_with(user, obj, st, opts)?;
            let kube_minor = match def.conversion {
                Conversion::Pcr { kube_minor } => kube_minor,
                _ => 37,
            };
            rules::pcr::validate_create(obj, kube_minor).map_err(|e| invalid(def, obj, &e))
        }
        ("certificates.k8s.io", "clustertrustbundles") => {
            rules::ctb::validate_create(obj).map_err(|e| invalid(def, obj, &e))?;
            rules::ctb::authorize_write(user, obj, &|a| authorize(st, user, a))
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            crd::validate(obj).map_err(|e| invalid(def, obj, &e))
        }
        ("", "pods") => {
            admit_pod_service_account(st, obj)?;
            let errs =
                rules::core::validate_pod_certificate_key_types(obj, st.pod_certificate_mldsa);
            errs_to(def, obj, errs)
        }
        (admission_policy::GROUP, _) => {
            admission_policy::validate_definition(def, obj).map_err(|e| invalid(def, obj, &e))
        }
        ("coordination.k8s.io", "leases") => lease_valid(def, obj),
        ("", "configmaps") => errs_to(def, obj, rules::core::validate_configmap(obj)),
        ("", "secrets") => errs_to(def, obj, rules::core::validate_secret(obj)),
        ("", "services") => errs_to(def, obj, rules::service::validate(obj)),
        ("events.k8s.io", "events") => errs_to(def, obj, rules::core::validate_event_create(obj)),
        _ if def.custom => crd::validate_custom(def, obj, None, crd::Write::Main)
            .map_err(|e| invalid(def, obj, &e)),
        _ => Ok(()),
    }
}

fn errs_to(def: &ResourceDef, obj: &Value, errs: Vec<FieldError>) -> Result<(), ApiError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(invalid(def, obj, &errs))
    }
}

fn lease_valid(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let errs = rules::lease::validate_lease(obj);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(invalid(def, obj, &errs))
    }
}

/// Admission and validation of a main-resource update (status already reset from `old`).
pub fn admit_update(
    st: &State,
    user: &UserInfo,
    def: &ResourceDef,
    old: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    update_rules(st, user, def, old, new)?;
    let w = policy_write(def, Operation::Update, Some(&*new), Some(old));
    admission_policy::validate(st, user, &w)
}

fn update_rules(
    st: &State,
    user: &UserInfo,
    def: &ResourceDef,
    old: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    match (def.group.as_str(), def.resource.as_str()) {
        ("certificates.k8s.io", "podcertificaterequests") => {
            rules::pcr::validate_update(old, new).map_err(|e| invalid(def, new, &e))
        }
        ("certificates.k8s.io", "clustertrustbundles") => {
            rules::ctb::validate_update(old, new).map_err(|e| invalid(def, new, &e))?;
            rules::ctb::authorize_update(user, old, new, &|a| authorize(st, user, a))
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            crd::validate(new).map_err(|e| invalid(def, new, &e))
        }
        (admission_policy::GROUP, _) => {
            admission_policy::validate_definition(def, new).map_err(|e| invalid(def, new, &e))
        }
        ("coordination.k8s.io", "leases") => lease_valid(def, new),
        ("", "configmaps") => errs_to(def, new, rules::core::validate_configmap_update(old, new)),
        ("", "secrets") => errs_to(def, new, rules::core::validate_secret_update(old, new)),
        ("", "services") => errs_to(def, new, rules::service::validate(new)),
        _ if def.custom => crd::validate_custom(def, new, Some(old), crd::Write::Main)
            .map_err(|e| invalid(def, new, &e)),
        _ => Ok(()),
    }
}

/// Admission and validation of a `/status` write (`new` is `old` with the new status).
pub fn admit_status(
    st: &State,
    user: &UserInfo,
    def: &ResourceDef,
    old: &Value,
    new: &mut Value,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    if def.group == "certificates.k8s.io" && def.resource == "podcertificaterequests" {
        rules::pcr::validate_status_update(old, new, now).map_err(|e| invalid(def, new, &e))?;
        return rules::pcr::authorize_status_update(user, old, new, &|a| authorize(st, user, a));
    }
    if def.custom {
        return crd::validate_custom(def, new, Some(old), crd::Write::Status)
            .map_err(|e| invalid(def, new, &e));
    }
    Ok(())
}

/// The ServiceAccount admission plugin: a pod runs as `default` unless it names an account,
/// and the account must exist (plugin/pkg/admission/serviceaccount/admission.go).
fn admit_pod_service_account(st: &State, pod: &mut Value) -> Result<(), ApiError> {
    let ns = super::meta::namespace_of(pod).to_string();
    let spec = match pod.get_mut("spec").and_then(Value::as_object_mut) {
        Some(s) => s,
        None => return Ok(()),
    };
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), Value::String(sa.clone()));
    spec.insert("serviceAccount".into(), Value::String(sa.clone()));
    if st.get_obj("", "serviceaccounts", &ns, &sa).is_none() {
        return Err(ApiError::forbidden(
            "",
            "pods",
            name_of(pod),
            &format!(
                "error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"
            ),
        ));
    }
    Ok(())
}
