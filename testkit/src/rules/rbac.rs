//! The RBAC authorizer over stored Roles, ClusterRoles and bindings
//! (plugin/pkg/auth/authorizer/rbac/rbac.go, pkg/apis/rbac/v1/evaluation_helpers.go,
//! pkg/registry/rbac/validation/rule.go appliesTo) and the forbidden message of
//! staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go.

use super::{Attributes, Lookup, UserInfo};
use crate::api_status::{group_resource, ApiError};
use serde_json::{json, Value};

const GROUP: &str = "rbac.authorization.k8s.io";

/// Whether `user` may do `attrs`. `system:masters` is always allowed (the privileged-group
/// authorizer in front of RBAC).
pub fn authorize(user: &UserInfo, attrs: &Attributes, lookup: &dyn Lookup) -> bool {
    decide(user, attrs, lookup).0
}

/// RBACAuthorizer.Authorize: the decision, and on a denial the reason kube-apiserver appends
/// to the forbidden message (`RBAC: <errors>`, e.g. a binding to a role that does not exist).
pub fn decide(user: &UserInfo, attrs: &Attributes, lookup: &dyn Lookup) -> (bool, String) {
    if user.groups.iter().any(|g| g == "system:masters") {
        return (true, String::new());
    }
    let mut errors = Vec::new();
    let mut bindings: Vec<(Value, String)> = lookup
        .list(GROUP, "clusterrolebindings")
        .into_iter()
        .map(|b| (b, String::new()))
        .collect();
    if !attrs.namespace.is_empty() {
        bindings.extend(
            lookup
                .list(GROUP, "rolebindings")
                .into_iter()
                .filter(|b| b["metadata"]["namespace"].as_str() == Some(attrs.namespace.as_str()))
                .map(|b| (b, attrs.namespace.clone())),
        );
    }
    for (binding, ns) in bindings {
        if !applies_to(user, &binding, &ns) {
            continue;
        }
        match role_rules(&binding, &ns, lookup) {
            Ok(rules) if rules.iter().any(|r| rule_allows(attrs, r)) => {
                return (true, String::new())
            }
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    let reason = match errors.len() {
        0 => String::new(),
        1 => format!("RBAC: {}", errors[0]),
        _ => format!("RBAC: [{}]", errors.join(", ")),
    };
    (false, reason)
}

/// The rules of the role a binding refers to: a ClusterRole (with the rules of the
/// ClusterRoles its aggregationRule selects, which the aggregation controller would have
/// copied in), or a Role in the binding's namespace. Errors read like the listers' NotFound.
fn role_rules(binding: &Value, namespace: &str, lookup: &dyn Lookup) -> Result<Vec<Value>, String> {
    let kind = binding["roleRef"]["kind"].as_str().unwrap_or("");
    let name = binding["roleRef"]["name"].as_str().unwrap_or("");
    let (role, cluster) = match kind {
        "ClusterRole" => (lookup.get(GROUP, "clusterroles", None, name), true),
        "Role" if !namespace.is_empty() => {
            (lookup.get(GROUP, "roles", Some(namespace), name), false)
        }
        other => return Err(format!("unsupported role reference kind: {other:?}")),
    };
    let Some(role) = role else {
        let r = if cluster { "clusterrole" } else { "role" };
        return Err(format!("{r}.{GROUP} {name:?} not found"));
    };
    let mut rules = role["rules"].as_array().cloned().unwrap_or_default();
    if cluster {
        rules.extend(aggregated_rules(&role, lookup));
    }
    Ok(rules)
}

/// Rules of the ClusterRoles an aggregationRule selects (matchLabels and matchExpressions).
fn aggregated_rules(role: &Value, lookup: &dyn Lookup) -> Vec<Value> {
    let Some(selectors) = role["aggregationRule"]["clusterRoleSelectors"].as_array() else {
        return Vec::new();
    };
    let self_name = &role["metadata"]["name"];
    lookup
        .list(GROUP, "clusterroles")
        .into_iter()
        .filter(|r| &r["metadata"]["name"] != self_name)
        .filter(|r| {
            selectors
                .iter()
                .any(|s| selector_matches(s, &r["metadata"]["labels"]))
        })
        .flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// metav1.LabelSelector semantics.
fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let ml_ok = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let empty = Vec::new();
    let me_ok = selector["matchExpressions"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str().unwrap_or("") {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        });
    ml_ok && me_ok
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
    forbidden_error_with_reason(user, attrs, "")
}

/// As `forbidden_error`, with the authorizer's reason appended (`: RBAC: ...`) when non-empty.
pub fn forbidden_error_with_reason(user: &UserInfo, attrs: &Attributes, reason: &str) -> ApiError {
    let mut msg = forbidden_message(user, attrs);
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
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
