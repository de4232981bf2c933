//! Stored objects as each served version shows them (apiVersion, kind, per-version fields and
//! defaults).

use serde_json::{json, Value};

use super::crd;
use super::registry::{Conversion, ResourceDef};
use crate::rules;

/// A stored object as `version` serves it.
pub fn to_external(def: &ResourceDef, obj: &Value, version: &str) -> Value {
    match def.conversion {
        Conversion::Pcr { kube_minor } => rules::pcr::from_internal_at(obj, version, kube_minor),
        Conversion::Ctb => rules::ctb::from_internal(obj, version),
        Conversion::None => {
            let mut o = obj.clone();
            if let Some(m) = o.as_object_mut() {
                m.insert("apiVersion".into(), json!(def.group_version(version)));
                m.insert("kind".into(), json!(def.kind));
            }
            if def.custom {
                crd::default_stored(def, version, &mut o);
            }
            o
        }
    }
}
