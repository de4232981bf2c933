//! Reading Service objects from a file (`sign --services`): YAML or JSON, one Service or a
//! List (`kubectl get services -o yaml` prints a List), read with the same size, depth and
//! node budgets as requests. Only what the policy reads is kept: namespace, name, selector.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;

use podcert_core::policy::ServiceInfo;

const MAX_FILE: u64 = 1024 * 1024;
/// More Services than any namespace a test case needs; bounds the work on a hostile file.
const MAX_SERVICES: usize = 5_000;

/// The Services in `path`; one without a namespace is taken to be in `default_namespace` (as
/// `kubectl apply -n` would place it).
pub fn load(path: &Path, default_namespace: &str) -> anyhow::Result<Vec<ServiceInfo>> {
    let data = podcert_runtime::ca_files::read_file_bounded(path, MAX_FILE)
        .with_context(|| format!("reading {}", path.display()))?;
    parse(&data, default_namespace)
        .with_context(|| format!("reading Services from {}", path.display()))
}

/// Parses one Service or a List of them.
pub fn parse(data: &[u8], default_namespace: &str) -> anyhow::Result<Vec<ServiceInfo>> {
    let value: Value = podcert_core::request::wire::parse_yaml(data).map_err(|e| {
        anyhow::anyhow!(
            "not valid YAML or JSON: {}",
            e.to_string().lines().next().unwrap_or("")
        )
    })?;
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let items: Vec<&Value> = match kind {
        "Service" => vec![&value],
        "List" | "ServiceList" => value
            .get("items")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        other => bail!("expected a Service or a List of Services, found kind {other:?}"),
    };
    if items.len() > MAX_SERVICES {
        bail!("{} Services; at most {MAX_SERVICES} are read", items.len());
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| service(v, default_namespace).with_context(|| format!("item {i}")))
        .collect()
}

fn service(v: &Value, default_namespace: &str) -> anyhow::Result<ServiceInfo> {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("Service");
    if kind != "Service" {
        bail!("kind {kind:?} is not Service");
    }
    let meta = v.get("metadata");
    let text = |field: &str| meta.and_then(|m| m.get(field)).and_then(Value::as_str);
    let name = text("name").context("metadata.name is missing")?;
    let namespace = text("namespace").unwrap_or(default_namespace);
    let selector = match v.pointer("/spec/selector") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(
            m.iter()
                .map(|(k, v)| match v.as_str() {
                    Some(s) => Ok((k.clone(), s.to_string())),
                    None => bail!("spec.selector[{k}] is not a string"),
                })
                .collect::<anyhow::Result<BTreeMap<_, _>>>()?,
        ),
        Some(_) => bail!("spec.selector is not a map of strings"),
    };
    Ok(ServiceInfo {
        namespace: namespace.to_string(),
        name: name.to_string(),
        selector,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_service_or_a_list() {
        let one = b"apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 443}]}\n";
        let s = parse(one, "team-a").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].namespace, "team-a");
        assert_eq!(s[0].selector.as_ref().unwrap()["app"], "web");
        let list = br#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"team-b"},"spec":{}},
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"b","namespace":"team-a"},"spec":{"selector":{"x":"y"}}}]}"#;
        let s = parse(list, "team-a").unwrap();
        assert_eq!(s[0].namespace, "team-b");
        assert_eq!(s[0].selector, None);
        assert_eq!(s[1].name, "b");
    }

    #[test]
    fn refuses_what_is_not_a_service() {
        assert!(parse(b"kind: Pod\nmetadata: {name: p}\n", "a").is_err());
        assert!(parse(b"kind: Service\nmetadata: {}\n", "a").is_err());
        assert!(parse(
            b"kind: Service\nmetadata: {name: s}\nspec: {selector: {a: 1}}\n",
            "a"
        )
        .is_err());
        assert!(parse(b"[1, 2", "a").is_err());
    }
}
