//! The RBAC authorizer over stored Roles, ClusterRoles and bindings
//! (plugin/pkg/auth/authorizer/rbac/rbac.go, pkg/apis/rbac/v1/evaluation_helpers.go,
//! pkg/registry/rbac/validation/rule.go appliesTo) and the forbidden message of
//! staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go.

use super::{Attributes, Lookup, UserInfo};
use crate::status::{group_resource, ApiError};
use serde_json::{json, Value};

const GROUP: &str = "rbac.authorization.k8s.io";

/// Whether `user` may do `attrs`. `system:masters` is always allowed (the privileged-group
/// authorizer in front of RBAC).
pub fn authorize(user: &UserInfo, attrs: &Attributes, lookup: &dyn Lookup) -> bool {
    if user.groups.iter().any(|g| g == "system:masters") {
        return true;
    }
    for binding in lookup.list(GROUP, "clusterrolebindings") {
        if !applies_to(user, &binding, "") {
            continue;
        }
        if let Some(rules) = role_rules(&binding, "", lookup) {
            if rules.iter().any(|r| rule_allows(attrs, r)) {
                return true;
            }
        }
    }
    if attrs.namespace.is_empty() {
        return false;
    }
    for binding in lookup.list(GROUP, "rolebindings") {
        let ns = binding["metadata"]["namespace"].as_str().unwrap_or("");
        if ns != attrs.namespace || !applies_to(user, &binding, ns) {
            continue;
        }
        if let Some(rules) = role_rules(&binding, ns, lookup) {
            if rules.iter().any(|r| rule_allows(attrs, r)) {
                return true;
            }
        }
    }
    false
}

/// The rules of the role a binding refers to: a ClusterRole, or a Role in the binding's
/// namespace. `None` when it does not exist (RBAC then reports it as a reason, not an error).
fn role_rules(binding: &Value, namespace: &str, lookup: &dyn Lookup) -> Option<Vec<Value>> {
    let kind = binding["roleRef"]["kind"].as_str().unwrap_or("");
    let name = binding["roleRef"]["name"].as_str().unwrap_or("");
    let role = match kind {
        "ClusterRole" => lookup.get(GROUP, "clusterroles", None, name)?,
        "Role" if !namespace.is_empty() => lookup.get(GROUP, "roles", Some(namespace), name)?,
        _ => return None,
    };
    Some(role["rules"].as_array().cloned().unwrap_or_default())
}

/// appliesToUser (pkg/registry/rbac/validation/rule.go).
fn applies_to(user: &UserInfo, binding: &Value, namespace: &str) -> bool {
    let Some(subjects) = binding["subjects"].as_array() else {
        return false;
    };
    subjects.iter().any(|s| {
        let name = s["name"].as_str().unwrap_or("");
        match s["kind"].as_str().unwrap_or("") {
            "User" => user.username == name,
            "Group" => user.groups.iter().any(|g| g == name),
            "ServiceAccount" => {
                let sa_ns = s["namespace"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(namespace);
                !sa_ns.is_empty()
                    && user.username == format!("system:serviceaccount:{sa_ns}:{name}")
            }
            _ => false,
        }
    })
}

fn strings(rule: &Value, key: &str) -> Vec<String> {
    rule[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// RuleAllows (rbac.go) with the evaluation helpers.
pub fn rule_allows(attrs: &Attributes, rule: &Value) -> bool {
    let verbs = strings(rule, "verbs");
    let verb_ok = verbs.iter().any(|v| v == "*" || *v == attrs.verb);
    if !verb_ok {
        return false;
    }
    if let Some(path) = &attrs.path {
        return strings(rule, "nonResourceURLs").iter().any(|u| {
            u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
        });
    }
    let groups = strings(rule, "apiGroups");
    if !groups.iter().any(|g| g == "*" || *g == attrs.api_group) {
        return false;
    }
    let combined = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let resource_ok = strings(rule, "resources").iter().any(|r| {
        r == "*"
            || *r == combined
            || (!attrs.subresource.is_empty()
                && r.len() == attrs.subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(attrs.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = strings(rule, "resourceNames");
    names.is_empty() || names.contains(&attrs.name)
}

/// forbiddenMessage (responsewriters/errors.go).
pub fn forbidden_message(user: &UserInfo, attrs: &Attributes) -> String {
    let u = &user.username;
    if let Some(path) = &attrs.path {
        return format!("User {u:?} cannot {} path {path:?}", attrs.verb);
    }
    let mut resource = attrs.resource.clone();
    if !attrs.subresource.is_empty() {
        resource = format!("{resource}/{}", attrs.subresource);
    }
    if !attrs.namespace.is_empty() {
        return format!(
            "User {u:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
            attrs.verb, attrs.api_group, attrs.namespace
        );
    }
    format!(
        "User {u:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
        attrs.verb, attrs.api_group
    )
}

/// The 403 kube-apiserver answers (responsewriters.Forbidden → errors.NewForbidden with the
/// request's group/resource and name; `forbidden: ...` for non-resource paths).
pub fn forbidden_error(user: &UserInfo, attrs: &Attributes) -> ApiError {
    let msg = forbidden_message(user, attrs);
    if attrs.path.is_some() {
        let mut e = ApiError::forbidden("", "", "", &msg);
        e.message = format!("forbidden: {msg}");
        e.details = Some(json!({}));
        return e;
    }
    let mut e = ApiError::forbidden(&attrs.api_group, &attrs.resource, &attrs.name, &msg);
    if attrs.name.is_empty() {
        e.message = format!(
            "{} is forbidden: {msg}",
            group_resource(&attrs.api_group, &attrs.resource)
        );
    }
    e
}
