//! Services as kube-apiserver validates and defaults what the signer reads of them
//! (pkg/apis/core/validation ValidateService, pkg/apis/core/v1 defaults, the ClusterIP
//! allocator): names are DNS-1035 labels, the selector is a label map, ports are required
//! unless the Service is headless or ExternalName, each port 1-65535; type, sessionAffinity,
//! protocol, targetPort, clusterIP(s) and the IP family fields are defaulted. Not modelled:
//! NodePort and load-balancer allocation, IPv6, the many cross-field rules of other types.

use serde_json::{json, Value};

use super::names;
use crate::api_status::FieldError;

const DNS1035_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

/// validation.IsDNS1035Label (ValidateServiceName).
pub fn validate_name(name: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if name.len() > names::DNS1123_LABEL_MAX {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            names::max_len_error(names::DNS1123_LABEL_MAX),
        ));
    }
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if !ok {
        errs.push(FieldError::invalid(
            "metadata.name",
            json!(name),
            names::regex_error(DNS1035_ERR, DNS1035_FMT, &["my-name", "abc-123"]),
        ));
    }
    errs
}

fn headless(obj: &Value) -> bool {
    obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None")
}

/// ValidateService, the parts above.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported("spec.type", json!(ty), TYPES));
    }
    if let Some(sel) = spec.get("selector") {
        errs.extend(names::validate_labels("spec.selector", sel));
    }
    let ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() && !headless(obj) && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    for (i, p) in ports.iter().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid(
                format!("spec.ports[{i}].port"),
                json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
    errs
}

/// The defaults and allocations of a created Service (`seq`: a counter for its ClusterIP).
pub fn prepare_for_create(obj: &mut Value, seq: u64) {
    let is_headless = headless(obj);
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let ty = spec
        .entry("type")
        .or_insert_with(|| json!("ClusterIP"))
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    spec.entry("sessionAffinity")
        .or_insert_with(|| json!("None"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            p.entry("protocol").or_insert_with(|| json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            p.entry("targetPort").or_insert(port);
        }
    }
    if ty != "ExternalName" {
        let ip = if is_headless {
            "None".to_string()
        } else {
            // 10.96.0.0/12, the kubeadm default service CIDR.
            format!("10.96.{}.{}", (seq / 250) % 256, seq % 250 + 2)
        };
        spec.entry("clusterIP").or_insert_with(|| json!(ip));
        let ip = spec["clusterIP"].clone();
        spec.entry("clusterIPs").or_insert_with(|| json!([ip]));
        spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
        spec.entry("ipFamilyPolicy")
            .or_insert_with(|| json!("SingleStack"));
        spec.entry("internalTrafficPolicy")
            .or_insert_with(|| json!("Cluster"));
    }
    obj["status"] = json!({"loadBalancer": {}});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_1035_labels() {
        assert!(validate_name("web-1").is_empty());
        for bad in ["1web", "Web", "web.a", "web-", ""] {
            assert!(!validate_name(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn ports_and_selectors_are_checked_and_defaults_set() {
        let ok = json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 443}]}});
        assert!(validate(&ok).is_empty());
        let no_ports = json!({"spec": {"selector": {"app": "web"}}});
        assert_eq!(validate(&no_ports)[0].field, "spec.ports");
        assert!(validate(&json!({"spec": {"clusterIP": "None"}})).is_empty());
        let bad =
            json!({"spec": {"selector": {"app": "a/b"}, "ports": [{"port": 0}], "type": "Foo"}});
        let fields: Vec<String> = validate(&bad).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec!["spec.type", "spec.selector", "spec.ports[0].port"]
        );
        let mut s = ok.clone();
        prepare_for_create(&mut s, 3);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.5");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 443);
    }
}
