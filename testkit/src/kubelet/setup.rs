//! Creates the fleet as an administrator: namespaces, service accounts, nodes, then pods bound
//! to the nodes. Objects that already exist are reused, so a run can be repeated.

use std::collections::HashMap;

use futures::{stream, StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::Client;
use serde_json::Value;

use super::config::KubeletConfig;
use super::error::{status_code, KubeletError};
use super::objects::{self, PodInfo};

/// Creates (or finds) every object and returns the pods with all their UIDs.
pub(crate) async fn create_fleet(
    cfg: &KubeletConfig,
    admin: &Client,
) -> Result<Vec<PodInfo>, KubeletError> {
    if cfg.nodes == 0
        || cfg.namespaces == 0
        || cfg.service_accounts == 0
        || cfg.key_types.is_empty()
    {
        return Err(KubeletError::Config(
            "nodes, namespaces, service accounts and key types must all be at least one".into(),
        ));
    }
    let conc = cfg.create_concurrency.max(1);
    let ns_ar = objects::core_resource("Namespace", "namespaces");
    let node_ar = objects::core_resource("Node", "nodes");
    let sa_ar = objects::core_resource("ServiceAccount", "serviceaccounts");
    let pod_ar = objects::core_resource("Pod", "pods");

    let namespaces: Vec<String> = (0..cfg.namespaces).map(|i| cfg.namespace_name(i)).collect();
    stream::iter(
        namespaces
            .iter()
            .map(|ns| ensure(admin, &ns_ar, None, objects::namespace(ns))),
    )
    .buffer_unordered(conc)
    .try_collect::<Vec<_>>()
    .await?;

    let node_names: Vec<String> = (0..cfg.nodes).map(|j| cfg.node_name(j)).collect();
    let node_uids: HashMap<String, String> = stream::iter(
        node_names
            .iter()
            .map(|n| ensure(admin, &node_ar, None, objects::node(n))),
    )
    .buffer_unordered(conc)
    .try_collect::<Vec<_>>()
    .await?
    .into_iter()
    .collect();

    let sa_specs: Vec<(String, String)> = namespaces
        .iter()
        .flat_map(|ns| (0..cfg.service_accounts).map(move |k| (ns.clone(), k)))
        .map(|(ns, k)| (ns, cfg.service_account_name(k)))
        .collect();
    let sa_ar = &sa_ar;
    let sa_uids: HashMap<String, String> =
        stream::iter(sa_specs.iter().map(|(ns, sa)| async move {
            let (_, uid) = ensure(admin, sa_ar, Some(ns), objects::service_account(ns, sa)).await?;
            Ok::<_, KubeletError>((format!("{ns}/{sa}"), uid))
        }))
        .buffer_unordered(conc)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .collect();

    let mut pods = Vec::with_capacity(cfg.pods);
    for i in 0..cfg.pods {
        let namespace = namespaces[i % cfg.namespaces].clone();
        let service_account = cfg.service_account_name((i / cfg.namespaces) % cfg.service_accounts);
        let node = node_names[i % cfg.nodes].clone();
        let sa_key = format!("{namespace}/{service_account}");
        pods.push(PodInfo {
            index: i,
            pod: format!("pod-{i}"),
            pod_uid: String::new(),
            service_account_uid: sa_uids.get(&sa_key).cloned().unwrap_or_default(),
            node_uid: node_uids.get(&node).cloned().unwrap_or_default(),
            namespace,
            service_account,
            node,
            key_type: cfg.key_types[i % cfg.key_types.len()],
            user_annotations: if cfg.user_annotations.is_empty() {
                Default::default()
            } else {
                cfg.user_annotations[i % cfg.user_annotations.len()].clone()
            },
        });
    }
    let uids: Vec<(usize, String)> = stream::iter(pods.iter().map(|p| {
        let body = objects::pod(cfg, p);
        let (ar, ns, idx) = (&pod_ar, p.namespace.clone(), p.index);
        async move {
            let (_, uid) = ensure(admin, ar, Some(&ns), body).await?;
            Ok::<_, KubeletError>((idx, uid))
        }
    }))
    .buffer_unordered(conc)
    .try_collect()
    .await?;
    for (idx, uid) in uids {
        pods[idx].pod_uid = uid;
    }
    Ok(pods)
}

/// Creates `body`, or gets the existing object on 409 AlreadyExists. Returns (name, uid).
async fn ensure(
    client: &Client,
    ar: &ApiResource,
    namespace: Option<&str>,
    body: Value,
) -> Result<(String, String), KubeletError> {
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let what = match namespace {
        Some(ns) => format!("{} {ns}/{name}", ar.kind),
        None => format!("{} {name}", ar.kind),
    };
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    let obj = objects::to_dynamic(body).map_err(|source| KubeletError::Encode {
        what: what.clone(),
        source,
    })?;
    let stored = match api.create(&PostParams::default(), &obj).await {
        Ok(o) => o,
        Err(e) if status_code(&e) == Some(409) => api
            .get(&name)
            .await
            .map_err(|e| KubeletError::api(format!("getting existing {what}"), e))?,
        Err(e) => return Err(KubeletError::api(format!("creating {what}"), e)),
    };
    let uid = stored
        .metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| KubeletError::MissingUid(what))?;
    Ok((name, uid))
}
