//! The generic registry operations (k8s.io/apiserver/pkg/registry/generic/registry/store.go):
//! create, update, patch, delete, list, with the per-resource strategies and admission hooks.

use super::admission;
use super::convert::to_external;
use super::crd;
use super::meta::{self, meta_mut, name_of, rv_of, spec_part, timestamp};
use super::patch::{self, PatchType};
use super::registry::{Conversion, ResourceDef};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{State, WriteRecord};
use crate::api_status::{ApiError, FieldError};
use crate::rules::{self, UserInfo};
use base64::Engine as _;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Who is asking, and the server clock (with any injected offset).
pub struct Ctx<'a> {
    pub user: &'a UserInfo,
    pub now: OffsetDateTime,
}

/// Main resource or `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Main,
    Status,
}

impl Sub {
    fn as_str(self) -> &'static str {
        match self {
            Sub::Main => "",
            Sub::Status => "status",
        }
    }
}

/// The object as received in `version` → internal (stored) form.
pub fn to_internal(def: &ResourceDef, obj: Value, version: &str) -> Value {
    match def.conversion {
        Conversion::Pcr { kube_minor } => rules::pcr::to_internal_at(obj, version, kube_minor),
        Conversion::Ctb => rules::ctb::to_internal(obj, version),
        Conversion::None => {
            let mut o = obj;
            if let Some(m) = o.as_object_mut() {
                m.insert("apiVersion".into(), json!(def.group_version(version)));
                m.insert("kind".into(), json!(def.kind));
            }
            o
        }
    }
}

/// Decodes a request body: the decoder's type checks (400), then conversion to internal.
pub fn decode(def: &ResourceDef, body: Value, version: &str) -> Result<Value, ApiError> {
    if let Conversion::Pcr { .. } = def.conversion {
        rules::pcr::check_decodable(&body, version)?;
    }
    if !def.custom {
        rules::core::check_meta_decodable(&def.kind, version, &body)?;
    }
    let body = match (def.group.as_str(), def.resource.as_str()) {
        ("coordination.k8s.io", "leases") => {
            rules::lease::check_lease_decodable(&body, version)?;
            body
        }
        ("events.k8s.io", "events") => {
            rules::lease::check_event_decodable(&body, version)?;
            body
        }
        ("", "configmaps") => {
            rules::core::check_configmap_decodable(&body, version)?;
            body
        }
        ("", "secrets") => rules::core::decode_secret(body, version)?,
        _ => body,
    };
    Ok(to_internal(def, body, version))
}

fn log(st: &mut State, ctx: &Ctx, verb: &str, def: &ResourceDef, sub: Sub, obj: &Value) {
    let rv = rv_of(obj).parse().unwrap_or(0);
    st.log.push(WriteRecord {
        verb: verb.into(),
        group: def.group.clone(),
        resource: def.resource.clone(),
        subresource: sub.as_str().into(),
        namespace: meta::namespace_of(obj).into(),
        name: name_of(obj).into(),
        username: ctx.user.username.clone(),
        resource_version: rv,
    });
}

/// The apiVersion/kind in a body must match the endpoint (when given).
fn check_type(def: &ResourceDef, version: &str, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    let want = def.group_version(version);
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str) {
        if av != want {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want})"
            )));
        }
    }
    if let Some(k) = body.get("kind").and_then(Value::as_str) {
        if k != def.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )));
        }
    }
    Ok(())
}

fn qos_class(pod: &Value) -> &'static str {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
    let any_resources = containers.into_iter().flatten().any(|c| {
        ["requests", "limits"].iter().any(|k| {
            c.pointer(&format!("/resources/{k}"))
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
    });
    if any_resources {
        "Burstable"
    } else {
        "BestEffort"
    }
}

/// PrepareForCreate of the strategies that reset or default fields.
fn prepare_for_create(st: &State, def: &ResourceDef, obj: &mut Value, now: &str) {
    match (def.group.as_str(), def.resource.as_str()) {
        ("", "pods") => {
            if !st.cluster_trust_bundle_projection {
                rules::core::drop_disabled_cluster_trust_bundle_projection(obj, None);
            }
            let qos = qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("", "services") => {
            let seq = st.rv;
            rules::service::prepare_for_create(obj, seq);
        }
        ("", "namespaces") => {
            obj["status"] = json!({"phase": "Active"});
            if obj.get("spec").and_then(|s| s.get("finalizers")).is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            obj["status"] = crd::status(obj, now);
        }
        _ if def.custom && def.has_status => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
}

/// The strategies' Canonicalize: a namespace always carries `kubernetes.io/metadata.name`
/// with its own name (pkg/registry/core/namespace/strategy.go), so selectors can pick
/// namespaces by name.
fn canonicalize(def: &ResourceDef, obj: &mut Value) {
    if def.group.is_empty() && def.resource == "namespaces" {
        let name = name_of(obj).to_string();
        let m = meta_mut(obj);
        let labels = m.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels["kubernetes.io/metadata.name"] = json!(name);
    }
}

/// A namespaced object's namespace must exist (NamespaceLifecycle admission).
fn check_namespace(st: &State, def: &ResourceDef, ns: &str) -> Result<(), ApiError> {
    if def.namespaced && st.get_obj("", "namespaces", "", ns).is_none() {
        return Err(ApiError::not_found("", "namespaces", ns));
    }
    Ok(())
}

/// POST: create an object in `ns` (empty for cluster-scoped resources).
pub fn create(
    st: &mut State,
    ctx: &Ctx,
    def: &ResourceDef,
    version: &str,
    ns: &str,
    body: Value,
) -> Result<Value, ApiError> {
    create_with(st, ctx, def, version, ns, body, false)
}

/// POST with `dryRun=All` (`dry_run`): decoded, defaulted, admitted and checked for a name
/// clash like a create, then returned unstored, without a resourceVersion
/// (storage/etcd3's DryRunnableStorage.Create copies the object it would have written).
pub fn create_with(
    st: &mut State,
    ctx: &Ctx,
    def: &ResourceDef,
    version: &str,
    ns: &str,
    body: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    check_type(def, version, &body)?;
    let mut obj = decode(def, body, version)?;
    let now = timestamp(ctx.now);
    {
        let m = meta_mut(&mut obj);
        if def.namespaced {
            match m.get("namespace").and_then(Value::as_str) {
                Some(x) if !x.is_empty() && x != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    m.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            m.remove("namespace");
        }
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let gen = m
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() && !gen.is_empty() {
            m.insert("name".into(), json!(meta::generate_name(&gen)));
        }
        // etcd3 store.Create refuses a set resourceVersion with a plain (500) error.
        if m.get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(now));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        if def.tracks_generation() {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    let name = name_of(&obj).to_string();
    // PodCertificateRequests and ClusterTrustBundles validate their own object meta
    // (rules::names::validate_object_meta; bundle names carry ':' after the signer).
    let own_meta = matches!(def.conversion, Conversion::Pcr { .. } | Conversion::Ctb);
    let mut errs = if own_meta {
        Vec::new()
    } else if def.group.is_empty() && def.resource == "services" {
        rules::service::validate_name(&name)
    } else {
        meta::validate_name(&def.resource, &name)
    };
    // ValidateObjectMeta's labels rule applies to every kind.
    if let Some(labels) = obj.pointer("/metadata/labels") {
        errs.extend(rules::names::validate_labels("metadata.labels", labels));
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(&def.group, &def.kind, &name, &errs));
    }
    check_namespace(st, def, ns)?;
    prepare_for_create(st, def, &mut obj, &now);
    admission::admit_create(st, ctx.user, def, &mut obj)?;
    canonicalize(def, &mut obj);
    if st.get_obj(&def.group, &def.resource, ns, &name).is_some() {
        return Err(ApiError::already_exists(&def.group, &def.resource, &name));
    }
    if dry_run {
        return Ok(obj);
    }
    let rv = st.next_rv();
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
    st.put(&def.group, &def.resource, obj.clone(), rv);
    log(st, ctx, "create", def, Sub::Main, &obj);
    after_write(st, ctx, def, &obj);
    Ok(obj)
}

/// Side effects of a successful write: CRDs serve their resources, namespaces get the
/// `default` service account the ServiceAccount controller would create.
fn after_write(st: &mut State, ctx: &Ctx, def: &ResourceDef, obj: &Value) {
    match (def.group.as_str(), def.resource.as_str()) {
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            if let Some(d) = crd::resource_def(obj) {
                st.registry.upsert_custom(d);
            }
        }
        ("", "namespaces") => {
            let ns = name_of(obj).to_string();
            if st.get_obj("", "serviceaccounts", &ns, "default").is_none() {
                let now = timestamp(ctx.now);
                let rv = st.next_rv();
                let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": ns, "uid": meta::new_uid(),
                                 "creationTimestamp": now, "resourceVersion": rv.to_string()}});
                st.put("", "serviceaccounts", sa, rv);
            }
        }
        _ => {}
    }
}

/// The 422 for an update without resourceVersion where the strategy requires one
/// (store.go Update: "must be specified for an update", printed by Go as `0x0`).
fn rv_required(def: &ResourceDef, name: &str) -> ApiError {
    let mut e = ApiError::invalid(
        &def.group,
        &def.kind,
        name,
        &[FieldError::invalid(
            "metadata.resourceVersion",
            json!(0),
            "must be specified for an update",
        )],
    );
    e.message = e
        .message
        .replace("Invalid value: 0:", "Invalid value: 0x0:");
    if let Some(c) = e
        .details
        .as_mut()
        .and_then(|d| d.pointer_mut("/causes/0/message"))
    {
        *c = json!("Invalid value: 0x0: must be specified for an update");
    }
    e
}

/// PUT (and the second half of PATCH): replace an object, or its status.
#[allow(clippy::too_many_arguments)]
pub fn update(
    st: &mut State,
    ctx: &Ctx,
    def: &ResourceDef,
    version: &str,
    ns: &str,
    name: &str,
    body: Value,
    sub: Sub,
    verb: &str,
) -> Result<(Value, bool), ApiError> {
    check_type(def, version, &body)?;
    let body_name = name_of(&body).to_string();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if def.namespaced {
        let bns = meta::namespace_of(&body);
        if !bns.is_empty() && bns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let Some(old) = st.get_obj(&def.group, &def.resource, ns, name).cloned() else {
        if sub == Sub::Main && def.allow_create_on_update {
            let mut body = body;
            meta_mut(&mut body).remove("resourceVersion");
            return create(st, ctx, def, version, ns, body).map(|o| (o, true));
        }
        return Err(ApiError::not_found(&def.group, &def.resource, name));
    };
    let new_rv = rv_of(&body).to_string();
    if new_rv.is_empty() {
        if !def.allow_unconditional_update {
            return Err(rv_required(def, name));
        }
    } else if new_rv != rv_of(&old) {
        *st.stale_writes
            .entry((def.resource.clone(), sub.as_str().to_string()))
            .or_default() += 1;
        return Err(ApiError::conflict(
            &def.group,
            &def.resource,
            name,
            ApiError::STALE_RV,
        ));
    }
    let mut new = decode(def, body, version)?;
    match sub {
        Sub::Status => {
            // ResetObjectMetaForStatus + status strategies: only status changes.
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        Sub::Main => {
            if def.has_status {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            let om = old.get("metadata").cloned().unwrap_or(json!({}));
            let m = meta_mut(&mut new);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match om.get(k) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
            if def.namespaced {
                m.insert("namespace".into(), json!(ns));
            } else {
                m.remove("namespace");
            }
        }
    }
    // ValidateObjectMetaUpdate validates the labels again (before the rest here; the real
    // server lists every error at once).
    if sub == Sub::Main {
        if let Some(labels) = new.pointer("/metadata/labels") {
            let errs = rules::names::validate_labels("metadata.labels", labels);
            if !errs.is_empty() {
                return Err(ApiError::invalid(
                    &def.group,
                    &def.kind,
                    name_of(&new),
                    &errs,
                ));
            }
        }
    }
    match sub {
        Sub::Status => admission::admit_status(st, ctx.user, def, &old, &mut new, ctx.now)?,
        Sub::Main => admission::admit_update(st, ctx.user, def, &old, &mut new)?,
    }
    if def.resource == "customresourcedefinitions" && def.group == "apiextensions.k8s.io" {
        let s = crd::status(&new, &timestamp(ctx.now));
        new["status"] = s;
    }
    canonicalize(def, &mut new);
    if def.tracks_generation() && spec_part(&new) != spec_part(&old) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta_mut(&mut new).insert("generation".into(), json!(g));
    }
    meta_mut(&mut new).insert("resourceVersion".into(), json!(rv_of(&old)));
    if new == old {
        // A no-op update writes nothing and keeps the resourceVersion (GuaranteedUpdate).
        return Ok((old, false));
    }
    let finalizers_empty = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    let rv = st.next_rv();
    meta_mut(&mut new).insert("resourceVersion".into(), json!(rv.to_string()));
    if finalizers_empty && new.pointer("/metadata/deletionTimestamp").is_some() {
        // The last finalizer is gone from an object being deleted: it goes now.
        st.put(&def.group, &def.resource, new.clone(), rv);
        log(st, ctx, verb, def, sub, &new);
        let last = remove_cascade(st, def, ns, name, true).unwrap_or(new);
        return Ok((last, false));
    }
    st.put(&def.group, &def.resource, new.clone(), rv);
    log(st, ctx, verb, def, sub, &new);
    after_write(st, ctx, def, &new);
    Ok((new, false))
}

/// PATCH: apply the patch to the object as `version` serves it, then update.
#[allow(clippy::too_many_arguments)]
pub fn patch(
    st: &mut State,
    ctx: &Ctx,
    def: &ResourceDef,
    version: &str,
    ns: &str,
    name: &str,
    ptype: PatchType,
    body: &[u8],
    sub: Sub,
    field_manager: Option<&str>,
) -> Result<(Value, bool), ApiError> {
    let patch_doc: Value = if ptype == PatchType::Apply {
        if field_manager.is_none_or(str::is_empty) {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                &[FieldError::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            ));
        }
        serde_saphyr::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
    };
    let Some(old) = st.get_obj(&def.group, &def.resource, ns, name).cloned() else {
        if ptype == PatchType::Apply && sub == Sub::Main {
            let mut obj = patch_doc;
            meta_mut(&mut obj).insert("name".into(), json!(name));
            return create(st, ctx, def, version, ns, obj).map(|o| (o, true));
        }
        return Err(ApiError::not_found(&def.group, &def.resource, name));
    };
    let mut doc = to_external(def, &old, version);
    match ptype {
        PatchType::Merge => patch::apply_merge_patch(&mut doc, &patch_doc),
        PatchType::Json => patch::apply_json_patch(&mut doc, &patch_doc)?,
        PatchType::Strategic => {
            if def.custom {
                // Custom resources have no Go struct to take merge keys from.
                return Err(patch::unsupported_media_type(
                    "application/strategic-merge-patch+json",
                ));
            }
            patch::apply_strategic(&mut doc, &patch_doc)
        }
        PatchType::Apply => patch::apply_ssa(&mut doc, &patch_doc),
    }
    // A patch that does not name a resourceVersion is unconditional.
    if rv_of(&doc).is_empty() {
        meta_mut(&mut doc).insert("resourceVersion".into(), json!(rv_of(&old)));
    }
    let patched = doc.to_string();
    update(st, ctx, def, version, ns, name, doc, sub, "patch").map_err(|e| {
        // A patched object that does not decode is the patch's fault (patch.go
        // applyPatchToObject): 422 on the field `patch`, showing the patched JSON.
        if e.code == 400 && e.reason == "BadRequest" {
            let detail = e.message.rsplit(": json: ").next().unwrap_or(&e.message);
            ApiError::invalid(
                "",
                "",
                "",
                &[FieldError::invalid("patch", json!(patched), detail)],
            )
        } else {
            e
        }
    })
}

/// DELETE of one object: with finalizers it is only marked; otherwise it goes, with its
/// dependents (background propagation) unless `orphan`.
pub fn delete(
    st: &mut State,
    ctx: &Ctx,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    opts: &Value,
) -> Result<Value, ApiError> {
    let Some(old) = st.get_obj(&def.group, &def.resource, ns, name).cloned() else {
        return Err(ApiError::not_found(&def.group, &def.resource, name));
    };
    if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str) {
        if uid != meta::uid_of(&old) {
            let msg = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid_of(&old)
            );
            return Err(ApiError::conflict(&def.group, &def.resource, name, &msg));
        }
    }
    if let Some(rv) = opts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
    {
        if rv != rv_of(&old) {
            // store.go Delete's precondition check names the kind, not the resource.
            let msg = format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                rv_of(&old)
            );
            return Err(ApiError::conflict(&def.group, &def.kind, name, &msg));
        }
    }
    admission::admit_delete(st, ctx.user, def, &old)?;
    let orphan = opts.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan")
        || opts.get("orphanDependents") == Some(&json!(true));
    let has_finalizers = old
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_finalizers {
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(old);
        }
        let mut obj = old;
        let rv = st.next_rv();
        let m = meta_mut(&mut obj);
        m.insert("deletionTimestamp".into(), json!(timestamp(ctx.now)));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        m.insert("resourceVersion".into(), json!(rv.to_string()));
        st.put(&def.group, &def.resource, obj.clone(), rv);
        log(st, ctx, "delete", def, Sub::Main, &obj);
        return Ok(obj);
    }
    let last = remove_cascade(st, def, ns, name, !orphan)
        .ok_or_else(|| ApiError::not_found(&def.group, &def.resource, name))?;
    log(st, ctx, "delete", def, Sub::Main, &last);
    Ok(last)
}

/// Removes an object; a namespace takes its contents along; with `cascade`, dependents
/// whose owners are all gone are deleted too (the garbage collector, immediately).
pub fn remove_cascade(
    st: &mut State,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    cascade: bool,
) -> Option<Value> {
    let rv = st.next_rv();
    let last = st.remove(&def.group, &def.resource, ns, name, rv)?;
    if def.group == "apiextensions.k8s.io" && def.resource == "customresourcedefinitions" {
        if let Some(d) = crd::resource_def(&last) {
            st.remove_all(&d.group, &d.resource);
            st.registry.remove_custom(&d.group, &d.resource);
        }
    }
    if def.group.is_empty() && def.resource == "namespaces" {
        let namespaced: Vec<ResourceDef> = st
            .registry
            .defs
            .iter()
            .filter(|d| d.namespaced)
            .cloned()
            .collect();
        for d in namespaced {
            let names: Vec<String> = st
                .objects(&d.group, &d.resource)
                .into_iter()
                .filter(|((n, _), _)| n == name)
                .map(|((_, x), _)| x.clone())
                .collect();
            for x in names {
                remove_cascade(st, &d, name, &x, cascade);
            }
        }
    }
    if cascade {
        collect_garbage(st, meta::uid_of(&last));
    }
    Some(last)
}

fn collect_garbage(st: &mut State, owner_uid: &str) {
    if owner_uid.is_empty() {
        return;
    }
    let defs: Vec<ResourceDef> = st.registry.defs.clone();
    let live: std::collections::HashSet<String> = defs
        .iter()
        .flat_map(|d| {
            st.objects(&d.group, &d.resource)
                .into_iter()
                .map(|(_, o)| meta::uid_of(o).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for d in &defs {
        let victims: Vec<(String, String)> = st
            .objects(&d.group, &d.resource)
            .into_iter()
            .filter(|(_, o)| {
                let refs: Vec<&str> = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.get("uid").and_then(Value::as_str))
                    .collect();
                refs.contains(&owner_uid)
                    && !refs.iter().any(|u| *u != owner_uid && live.contains(*u))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (ns, name) in victims {
            remove_cascade(st, d, &ns, &name, true);
        }
    }
}

/// Options of a list (or watch).
#[derive(Debug, Clone, Default)]
pub struct ListOpts {
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub limit: Option<usize>,
    pub cont: Option<String>,
}

/// The field selectors a resource supports (its GetAttrs / SelectableFields).
pub fn field_supported(def: &ResourceDef, field: &str) -> bool {
    if field == "metadata.name" || (def.namespaced && field == "metadata.namespace") {
        return true;
    }
    let fields: &[&str] = match (def.group.as_str(), def.resource.as_str()) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("", "secrets") => &["type"],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("certificates.k8s.io", "podcertificaterequests") => {
            &["spec.signerName", "spec.podName", "spec.nodeName"]
        }
        ("certificates.k8s.io", "clustertrustbundles") => &["spec.signerName"],
        _ => &[],
    };
    fields.contains(&field)
}

/// A field's value on a stored object.
pub fn field_value(def: &ResourceDef, obj: &Value, field: &str) -> Option<String> {
    match field {
        "metadata.name" => return Some(name_of(obj).into()),
        "metadata.namespace" => return Some(meta::namespace_of(obj).into()),
        _ => {}
    }
    match def.conversion {
        Conversion::Pcr { .. } => return rules::pcr::field_value(obj, field),
        Conversion::Ctb => return rules::ctb::field_value(obj, field),
        Conversion::None => {}
    }
    if def.resource == "events" && field == "source" {
        return obj
            .pointer("/source/component")
            .and_then(Value::as_str)
            .map(String::from);
    }
    let ptr = format!("/{}", field.replace('.', "/"));
    match obj.pointer(&ptr) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ if field == "spec.hostNetwork" || field == "spec.unschedulable" => Some("false".into()),
        _ => None,
    }
}

pub fn check_field_selector(def: &ResourceDef, fs: &FieldSelector) -> Result<(), ApiError> {
    for f in fs.fields() {
        if !field_supported(def, f) {
            // Kinds with a field label conversion func say "field label not supported";
            // the others use runtime.DefaultMetaV1FieldSelectorConversion's words.
            let custom_conversion = def.custom
                || (def.group.is_empty()
                    && matches!(
                        def.resource.as_str(),
                        "pods" | "nodes" | "namespaces" | "secrets" | "events"
                    ))
                || def.group == "certificates.k8s.io";
            return Err(ApiError::bad_request(if custom_conversion {
                format!("field label not supported: {f}")
            } else {
                format!(
                    "{f:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                )
            }));
        }
    }
    Ok(())
}

/// Whether a stored object is in scope of a list or watch.
pub fn matches(def: &ResourceDef, ns: Option<&str>, opts: &ListOpts, obj: &Value) -> bool {
    ns.is_none_or(|n| meta::namespace_of(obj) == n)
        && opts.label.matches(obj)
        && opts.field.matches(obj, &|o, f| field_value(def, o, f))
}

/// The message kube-apiserver gives for a continue token of a compacted revision
/// (storage/etcd3: errors.NewResourceExpired(continueExpired)).
pub const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

pub struct ListResult {
    pub items: Vec<Value>,
    pub rv: u64,
    pub cont: Option<String>,
    pub remaining: Option<u64>,
}

fn encode_continue(rv: u64, key: &(String, String)) -> String {
    let start = format!("{}/{}\u{0}", key.0, key.1);
    base64::engine::general_purpose::URL_SAFE
        .encode(json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string())
}

fn decode_continue(tok: &str) -> Result<(u64, (String, String)), ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {tok:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(tok)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .trim_end_matches('\u{0}');
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

/// LIST with selectors and pagination. Continue tokens resume after the last key returned;
/// pages reflect the current state (not a snapshot), and a token from a compacted
/// resourceVersion is refused with 410 like etcd's compaction.
pub fn list(
    st: &State,
    def: &ResourceDef,
    ns: Option<&str>,
    opts: &ListOpts,
) -> Result<ListResult, ApiError> {
    check_field_selector(def, &opts.field)?;
    let (list_rv, after) = match &opts.cont {
        Some(tok) if !tok.is_empty() => {
            let (rv, key) = decode_continue(tok)?;
            if rv < st.oldest_resumable(&def.group, &def.resource) {
                return Err(ApiError::gone(CONTINUE_EXPIRED));
            }
            (rv, Some(key))
        }
        _ => (st.rv, None),
    };
    let all: Vec<(&(String, String), &Value)> = st
        .objects(&def.group, &def.resource)
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
        .filter(|(_, o)| matches(def, ns, opts, o))
        .collect();
    let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let items: Vec<Value> = all.iter().take(limit).map(|(_, o)| (*o).clone()).collect();
    let (cont, remaining) = if all.len() > limit {
        let last = all[limit - 1].0;
        let rem =
            (opts.label.is_empty() && opts.field.is_empty()).then_some((all.len() - limit) as u64);
        (Some(encode_continue(list_rv, last)), rem)
    } else {
        (None, None)
    };
    Ok(ListResult {
        items,
        rv: list_rv,
        cont,
        remaining,
    })
}
