//! ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1): the subset the chart ships.
//!
//! Policies and bindings are ordinary stored objects; every write runs through [`validate`]
//! after the built-in admission rules, as kube-apiserver's ValidatingAdmissionPolicy plugin
//! runs after the other validating plugins. Supported: `matchConstraints` (resourceRules,
//! excludeResourceRules, namespaceSelector, objectSelector), `matchConditions`, `validations`
//! (expression, message, messageExpression, reason), `failurePolicy`, a binding's
//! `matchResources` and `validationActions` (only `Deny` changes the response). CEL runs on
//! kube-cel with the variables `object`, `oldObject` and `request` (untyped: no type-checking
//! against the resource's schema, unlike kube-apiserver). matchPolicy is always Equivalent.
//! `paramKind`, `variables`
//! and `auditAnnotations` are refused when a policy is written, so a test cannot silently
//! rely on something the emulator would ignore.

use super::convert::to_external;
use super::registry::ResourceDef;
use super::store::State;
use crate::api_status::{ApiError, FieldError};
use crate::rules::UserInfo;
use kube_cel::cel::{self, Context, Program};
use kube_cel::KubeCelExt;
use serde_json::{json, Value};

pub const GROUP: &str = "admissionregistration.k8s.io";
pub const POLICIES: &str = "validatingadmissionpolicies";
pub const BINDINGS: &str = "validatingadmissionpolicybindings";

/// The admission operation of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// One write as the policies see it (objects in stored, internal form).
pub struct Write<'a> {
    pub def: &'a ResourceDef,
    pub op: Operation,
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: Option<&'a Value>,
    pub old: Option<&'a Value>,
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn has(list: &[&str], x: &str) -> bool {
    list.iter().any(|l| *l == "*" || *l == x)
}

/// The version a rule sees the object in (matchPolicy Equivalent: any served version of the
/// resource matches), or None when no rule in `rules` covers the write.
fn rule_version(rules: Option<&Value>, w: &Write) -> Option<String> {
    for r in rules.and_then(Value::as_array).into_iter().flatten() {
        let ops = strs(r.get("operations"));
        // "resources": "x" is the resource, "x/y" a subresource; policies here see only main writes.
        let resources = strs(r.get("resources"));
        let scope = r.get("scope").and_then(Value::as_str).unwrap_or("*");
        let scope_ok = match scope {
            "Cluster" => !w.def.namespaced,
            "Namespaced" => w.def.namespaced,
            _ => true,
        };
        if !has(&ops, w.op.as_str())
            || !has(&strs(r.get("apiGroups")), &w.def.group)
            || !has(&resources, &w.def.resource)
            || !scope_ok
        {
            continue;
        }
        let versions = strs(r.get("apiVersions"));
        if let Some(v) = w.def.versions.iter().find(|v| has(&versions, v)) {
            // "*" sees the storage (preferred) version, as the first served one.
            return Some(if versions.contains(&"*") {
                w.def.storage_version().to_string()
            } else {
                v.clone()
            });
        }
    }
    None
}

/// metav1.LabelSelector semantics (an absent or empty selector matches everything).
fn selector_matches(sel: Option<&Value>, labels: &Value) -> bool {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return true;
    };
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        if m.iter().any(|(k, v)| label(k) != v.as_str()) {
            return false;
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values = strs(e.get("values"));
        let ok = match e.get("operator").and_then(Value::as_str) {
            Some("In") => label(key).is_some_and(|l| values.contains(&l)),
            Some("NotIn") => label(key).is_none_or(|l| !values.contains(&l)),
            Some("Exists") => label(key).is_some(),
            Some("DoesNotExist") => label(key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn labels_of(obj: Option<&Value>) -> Value {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// MatchResources of a policy or binding: the version the write is seen in, if it matches.
fn match_resources(st: &State, m: Option<&Value>, w: &Write) -> Option<String> {
    let version = rule_version(m.and_then(|m| m.get("resourceRules")), w)?;
    if rule_version(m.and_then(|m| m.get("excludeResourceRules")), w).is_some() {
        return None;
    }
    let m = m?;
    // Cluster-scoped objects other than namespaces are never skipped by namespaceSelector.
    let ns_labels = if w.def.group.is_empty() && w.def.resource == "namespaces" {
        Some(labels_of(w.object.or(w.old)))
    } else if w.def.namespaced {
        Some(labels_of(st.get_obj("", "namespaces", "", w.namespace)))
    } else {
        None
    };
    if let Some(l) = ns_labels {
        if !selector_matches(m.get("namespaceSelector"), &l) {
            return None;
        }
    }
    // objectSelector matches when the new or the old object matches.
    let os = m.get("objectSelector");
    let objs: Vec<&Value> = [w.object, w.old].into_iter().flatten().collect();
    if !objs
        .iter()
        .any(|o| selector_matches(os, &labels_of(Some(o))))
    {
        return None;
    }
    Some(version)
}

/// The CEL activation: `object`, `oldObject` (null when absent) and `request`.
fn activation(w: &Write, user: &UserInfo, version: &str) -> Context<'static> {
    let mut ctx = Context::default();
    ctx.register_all();
    let ext = |o: Option<&Value>| o.map_or(Value::Null, |o| to_external(w.def, o, version));
    let request = json!({
        "operation": w.op.as_str(),
        "name": w.name,
        "namespace": w.namespace,
        "dryRun": false,
        "subResource": "",
        "kind": {"group": w.def.group, "version": version, "kind": w.def.kind},
        "resource": {"group": w.def.group, "version": version, "resource": w.def.resource},
        "userInfo": {"username": user.username, "uid": user.uid, "groups": user.groups},
    });
    for (name, v) in [
        ("object", ext(w.object)),
        ("oldObject", ext(w.old)),
        ("request", request),
    ] {
        // serde_json values always convert; Null stands in if one ever does not.
        ctx.add_variable_from_value(name, cel::to_value(v).unwrap_or(cel::Value::Null));
    }
    ctx
}

/// Evaluates a boolean expression: Ok(result) or the upstream error text.
fn eval_bool(ctx: &Context, expr: &str) -> Result<bool, String> {
    let program = Program::compile(expr)
        .map_err(|e| format!("compilation failed: {}", one_line(&e.to_string())))?;
    match program.execute(ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "expression '{expr}' resulted in error: expected bool, got {other:?}"
        )),
        Err(e) => Err(format!("expression '{expr}' resulted in error: {e}")),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The status code of a validation's `reason` (validating/dispatcher.go reasonToCode).
fn reason_code(reason: &str) -> u16 {
    match reason {
        "Unauthorized" => 401,
        "Forbidden" => 403,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// admission.NewForbidden with the policy's reason and code, and the message as a cause.
fn denial(w: &Write, policy: &str, binding: &str, msg: &str, reason: &str) -> ApiError {
    let message = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {msg}"
    );
    let mut e = ApiError::forbidden(&w.def.group, &w.def.resource, w.name, &message);
    e.reason = reason.to_string();
    e.code = reason_code(reason);
    if let Some(d) = e.details.as_mut() {
        d["causes"] = json!([{ "message": message }]);
    }
    e
}

/// Runs every bound policy that matches the write; the first denial is the answer.
pub fn validate(st: &State, user: &UserInfo, w: &Write) -> Result<(), ApiError> {
    // The policies do not govern themselves (upstream exempts admissionregistration writes
    // from policies only via their own rules; none of ours match that group anyway).
    for (_, binding) in st.objects(GROUP, BINDINGS) {
        let bname = super::meta::name_of(binding);
        let bspec = binding.get("spec").cloned().unwrap_or_default();
        let Some(pname) = bspec.get("policyName").and_then(Value::as_str) else {
            continue;
        };
        let Some(policy) = st.get_obj(GROUP, POLICIES, "", pname) else {
            continue; // a binding to a missing policy does nothing
        };
        if !strs(bspec.get("validationActions")).contains(&"Deny") {
            continue; // Warn and Audit never change the response
        }
        let spec = policy.get("spec").cloned().unwrap_or_default();
        let Some(version) = match_resources(st, spec.get("matchConstraints"), w) else {
            continue;
        };
        if bspec.get("matchResources").is_some()
            && match_resources(st, bspec.get("matchResources"), w).is_none()
        {
            continue;
        }
        let fail_closed = spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore");
        let ctx = activation(w, user, &version);
        let deny = |msg: &str, reason: &str| Err(denial(w, pname, bname, msg, reason));
        // matchConditions: all true to apply; any false skips the policy; an error fails
        // according to failurePolicy.
        let mut applies = true;
        for c in spec
            .get("matchConditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expr = c.get("expression").and_then(Value::as_str).unwrap_or("");
            match eval_bool(&ctx, expr) {
                Ok(true) => {}
                Ok(false) => {
                    applies = false;
                    break;
                }
                Err(e) if fail_closed => return deny(&e, "Invalid"),
                Err(_) => {
                    applies = false;
                    break;
                }
            }
        }
        if !applies {
            continue;
        }
        for v in spec
            .get("validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expr = v.get("expression").and_then(Value::as_str).unwrap_or("");
            let reason = v.get("reason").and_then(Value::as_str).unwrap_or("Invalid");
            match eval_bool(&ctx, expr) {
                Ok(true) => {}
                Ok(false) => {
                    let msg = v
                        .get("messageExpression")
                        .and_then(Value::as_str)
                        .and_then(|me| match Program::compile(me).ok()?.execute(&ctx) {
                            Ok(cel::Value::String(s)) if !s.trim().is_empty() => {
                                Some(s.to_string())
                            }
                            _ => None,
                        })
                        .or_else(|| v.get("message").and_then(Value::as_str).map(String::from))
                        .unwrap_or_else(|| format!("failed expression: {expr}"));
                    return deny(&msg, reason);
                }
                Err(e) if fail_closed => return deny(&e, reason),
                Err(_) => {}
            }
        }
    }
    Ok(())
}

fn compile_errors(items: Option<&Value>, path: &str, fields: &[&str], errs: &mut Vec<FieldError>) {
    for (i, item) in items
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for f in fields {
            let Some(expr) = item.get(*f).and_then(Value::as_str) else {
                if *f == "expression" {
                    errs.push(FieldError::required(format!("{path}[{i}].{f}"), ""));
                }
                continue;
            };
            if let Err(e) = Program::compile(expr) {
                errs.push(FieldError::invalid(
                    format!("{path}[{i}].{f}"),
                    json!(expr),
                    format!("compilation failed: {}", one_line(&e.to_string())),
                ));
            }
        }
    }
}

fn check_operations(m: Option<&Value>, path: &str, errs: &mut Vec<FieldError>) {
    const OPS: &[&str] = &["*", "CREATE", "UPDATE", "DELETE", "CONNECT"];
    for key in ["resourceRules", "excludeResourceRules"] {
        for (i, r) in m
            .and_then(|m| m.get(key))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (j, op) in strs(r.get("operations")).into_iter().enumerate() {
                if !OPS.contains(&op) {
                    errs.push(FieldError::not_supported(
                        format!("{path}.{key}[{i}].operations[{j}]"),
                        json!(op),
                        OPS,
                    ));
                }
            }
        }
    }
}

/// Validation of a policy or binding write: the checks a test could trip over (CEL that does
/// not compile, missing or unknown required values) and the features the emulator lacks.
pub fn validate_definition(def: &ResourceDef, obj: &Value) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or_default();
    match def.resource.as_str() {
        POLICIES => {
            let mc = spec.get("matchConstraints");
            if mc
                .and_then(|m| m.get("resourceRules"))
                .and_then(Value::as_array)
                .is_none_or(|a| a.is_empty())
            {
                errs.push(FieldError::required(
                    "spec.matchConstraints.resourceRules",
                    "",
                ));
            }
            check_operations(mc, "spec.matchConstraints", &mut errs);
            if let Some(fp) = spec.get("failurePolicy").and_then(Value::as_str) {
                if !["Fail", "Ignore"].contains(&fp) {
                    errs.push(FieldError::not_supported(
                        "spec.failurePolicy",
                        json!(fp),
                        &["Fail", "Ignore"],
                    ));
                }
            }
            if spec
                .get("validations")
                .and_then(Value::as_array)
                .is_none_or(|a| a.is_empty())
            {
                errs.push(FieldError::required(
                    "spec.validations",
                    "validations or auditAnnotations must contain at least one item",
                ));
            }
            compile_errors(
                spec.get("validations"),
                "spec.validations",
                &["expression", "messageExpression"],
                &mut errs,
            );
            compile_errors(
                spec.get("matchConditions"),
                "spec.matchConditions",
                &["expression"],
                &mut errs,
            );
            for unsupported in ["paramKind", "variables", "auditAnnotations"] {
                if spec.get(unsupported).is_some_and(|v| !v.is_null()) {
                    errs.push(FieldError::forbidden(
                        format!("spec.{unsupported}"),
                        "not implemented by the podcert-testkit API emulator",
                    ));
                }
            }
        }
        BINDINGS => {
            if spec
                .get("policyName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errs.push(FieldError::required("spec.policyName", ""));
            }
            let actions = strs(spec.get("validationActions"));
            if actions.is_empty() {
                errs.push(FieldError::required(
                    "spec.validationActions",
                    "at least one validation action is required",
                ));
            }
            for (i, a) in actions.into_iter().enumerate() {
                if !["Deny", "Warn", "Audit"].contains(&a) {
                    errs.push(FieldError::not_supported(
                        format!("spec.validationActions[{i}]"),
                        json!(a),
                        &["Audit", "Deny", "Warn"],
                    ));
                }
            }
            check_operations(spec.get("matchResources"), "spec.matchResources", &mut errs);
            if spec.get("paramRef").is_some_and(|v| !v.is_null()) {
                errs.push(FieldError::forbidden(
                    "spec.paramRef",
                    "not implemented by the podcert-testkit API emulator",
                ));
            }
        }
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_follow_label_selector_semantics() {
        let l = json!({"a": "1", "b": "2"});
        assert!(selector_matches(None, &l));
        assert!(selector_matches(Some(&json!({})), &l));
        assert!(selector_matches(
            Some(&json!({"matchLabels": {"a": "1"}})),
            &l
        ));
        assert!(!selector_matches(
            Some(&json!({"matchLabels": {"a": "2"}})),
            &l
        ));
        let expr = |op: &str, vals: Value| json!({"matchExpressions": [{"key": "a", "operator": op, "values": vals}]});
        assert!(selector_matches(Some(&expr("In", json!(["1", "3"]))), &l));
        assert!(!selector_matches(Some(&expr("NotIn", json!(["1"]))), &l));
        assert!(selector_matches(Some(&expr("Exists", json!([]))), &l));
        assert!(!selector_matches(
            Some(&expr("DoesNotExist", json!([]))),
            &l
        ));
    }

    #[test]
    fn reasons_map_to_status_codes() {
        assert_eq!(reason_code("Forbidden"), 403);
        assert_eq!(reason_code("Unauthorized"), 401);
        assert_eq!(reason_code("RequestEntityTooLarge"), 413);
        assert_eq!(reason_code("Invalid"), 422);
    }
}
