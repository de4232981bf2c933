//! Protobuf request bodies for the few built-in kinds that kubectl's typed commands send
//! (`kubectl create namespace|configmap|secret|serviceaccount`, `kubectl auth can-i`):
//! client-go sends `application/vnd.kubernetes.protobuf` for built-in types and, unlike for
//! CBOR, does not fall back to JSON on a 415 (rest/client.go), so kube-apiserver's protobuf
//! support is needed for these commands to work at all. The wire format is the `k8s\0` magic,
//! then a runtime.Unknown (staging/src/k8s.io/apimachinery/pkg/runtime/generated.proto) whose
//! `raw` is the object; field numbers are those of k8s.io/api's generated.proto. A field this
//! decoder does not model is refused (415) rather than silently dropped.

use crate::api_status::ApiError;
use base64::Engine as _;
use serde_json::{json, Map, Value};

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    StrList,
    MapStr,
    MapBytes,
    Msg(&'static [Field]),
}

struct Field {
    num: u64,
    name: &'static str,
    kind: Kind,
}

const fn f(num: u64, name: &'static str, kind: Kind) -> Field {
    Field { num, name, kind }
}

const OBJECT_META: &[Field] = &[
    f(1, "name", Kind::Str),
    f(2, "generateName", Kind::Str),
    f(3, "namespace", Kind::Str),
    f(11, "labels", Kind::MapStr),
    f(12, "annotations", Kind::MapStr),
    f(14, "finalizers", Kind::StrList),
];
const NAMESPACE_SPEC: &[Field] = &[f(1, "finalizers", Kind::StrList)];
const NAMESPACE: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(NAMESPACE_SPEC)),
    f(3, "status", Kind::Msg(&[])),
];
const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::MapStr),
    f(3, "binaryData", Kind::MapBytes),
    f(4, "immutable", Kind::Bool),
];
const SECRET: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "data", Kind::MapBytes),
    f(3, "type", Kind::Str),
    f(4, "stringData", Kind::MapStr),
    f(5, "immutable", Kind::Bool),
];
const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(4, "automountServiceAccountToken", Kind::Bool),
];
const RESOURCE_ATTRIBUTES: &[Field] = &[
    f(1, "namespace", Kind::Str),
    f(2, "verb", Kind::Str),
    f(3, "group", Kind::Str),
    f(4, "version", Kind::Str),
    f(5, "resource", Kind::Str),
    f(6, "subresource", Kind::Str),
    f(7, "name", Kind::Str),
];
const NON_RESOURCE_ATTRIBUTES: &[Field] = &[f(1, "path", Kind::Str), f(2, "verb", Kind::Str)];
const SSAR_SPEC: &[Field] = &[
    f(1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
    f(
        2,
        "nonResourceAttributes",
        Kind::Msg(NON_RESOURCE_ATTRIBUTES),
    ),
];
const SSAR: &[Field] = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(SSAR_SPEC)),
    // The generated marshaller always writes the non-pointer status with its zero
    // `allowed`, `reason`, ... (kubectl auth can-i); zero fields are skipped, the rest refused.
    f(3, "status", Kind::Msg(&[])),
];

fn schema(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SSAR,
        _ => return None,
    })
}

/// The 415 for a protobuf body this emulator cannot decode.
pub fn unsupported(ct: &str, why: &str) -> ApiError {
    ApiError {
        code: 415,
        reason: "UnsupportedMediaType".into(),
        message: format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {ct}: {why})"
        ),
        details: None,
        retry_after_seconds: None,
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(format!(
        "error decoding the protobuf request body: {}",
        msg.into()
    ))
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&x, rest) = self
                .b
                .split_first()
                .ok_or_else(|| bad("truncated varint"))?;
            self.b = rest;
            v |= u64::from(x & 0x7f) << (7 * i);
            if x & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let n = usize::try_from(self.varint()?).map_err(|_| bad("length too large"))?;
        if n > self.b.len() {
            return Err(bad("truncated field"));
        }
        let (x, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(x)
    }

    /// The next (field number, wire type), or None at the end.
    fn tag(&mut self) -> Result<Option<(u64, u64)>, ApiError> {
        if self.b.is_empty() {
            return Ok(None);
        }
        let t = self.varint()?;
        Ok(Some((t >> 3, t & 7)))
    }
}

fn string(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("a string field is not UTF-8"))
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), ApiError> {
    let mut r = Reader { b };
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while let Some((num, wt)) = r.tag()? {
        if wt != 2 {
            return Err(bad("a map entry field is not length-delimited"));
        }
        let x = r.bytes()?;
        match num {
            1 => k = string(x)?,
            2 if bytes_value => {
                v = Value::String(base64::engine::general_purpose::STANDARD.encode(x))
            }
            2 => v = Value::String(string(x)?),
            _ => return Err(bad("a map entry has a field other than key and value")),
        }
    }
    Ok((k, v))
}

fn message(b: &[u8], fields: &[Field], ct: &str) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    let mut r = Reader { b };
    while let Some((num, wt)) = r.tag()? {
        let Some(field) = fields.iter().find(|x| x.num == num) else {
            // Go's generated marshallers write non-pointer fields even when unset (an
            // empty selfLink, a zero creationTimestamp): a zero value carries nothing.
            let zero = match wt {
                0 => r.varint()? == 0,
                2 => r.bytes()?.is_empty(),
                _ => false,
            };
            if zero {
                continue;
            }
            return Err(unsupported(
                ct,
                &format!("field {num} is not decoded by this emulator"),
            ));
        };
        let entry = || out.get(field.name).cloned();
        let value = match (field.kind, wt) {
            (Kind::Bool, 0) => json!(r.varint()? != 0),
            (Kind::Str, 2) => json!(string(r.bytes()?)?),
            (Kind::StrList, 2) => {
                let mut list = entry().unwrap_or_else(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(string(r.bytes()?)?));
                }
                list
            }
            (Kind::MapStr | Kind::MapBytes, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(field.kind, Kind::MapBytes))?;
                let mut m = entry().unwrap_or_else(|| json!({}));
                if let Some(o) = m.as_object_mut() {
                    o.insert(k, v);
                }
                m
            }
            (Kind::Msg(inner), 2) => Value::Object(message(r.bytes()?, inner, ct)?),
            _ => return Err(bad(format!("field {num} has an unexpected wire type {wt}"))),
        };
        out.insert(field.name.to_string(), value);
    }
    Ok(out)
}

/// Decodes a protobuf request body of a supported kind to its JSON form.
pub fn decode(body: &[u8], ct: &str) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| bad("the body does not start with the k8s protobuf magic"))?;
    let mut r = Reader { b: rest };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    while let Some((num, wt)) = r.tag()? {
        if wt != 2 {
            return Err(bad("the envelope has a field that is not length-delimited"));
        }
        let x = r.bytes()?;
        match num {
            1 => {
                let mut t = Reader { b: x };
                while let Some((n, w)) = t.tag()? {
                    if w != 2 {
                        return Err(bad("the type meta has a field that is not a string"));
                    }
                    let s = string(t.bytes()?)?;
                    match n {
                        1 => api_version = s,
                        2 => kind = s,
                        _ => {}
                    }
                }
            }
            2 => raw = Some(x),
            3 | 4 if !x.is_empty() => {
                return Err(unsupported(ct, "an encoded or typed envelope"));
            }
            _ => {}
        }
    }
    let fields = schema(&api_version, &kind)
        .ok_or_else(|| unsupported(ct, &format!("{api_version} {kind} is not decoded")))?;
    let mut obj = message(raw.unwrap_or_default(), fields, ct)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(num: u64, b: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, b.len() as u8];
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn decodes_a_namespace_envelope() {
        let tm = [ld(1, b"v1"), ld(2, b"Namespace")].concat();
        let label = [ld(1, b"a"), ld(2, b"b")].concat();
        let meta = [ld(1, b"x"), ld(11, &label)].concat();
        let raw = ld(1, &meta);
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &raw)].concat();
        let v = decode(&body, "application/vnd.kubernetes.protobuf").unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {"a": "b"}}})
        );
    }

    #[test]
    fn unknown_kinds_and_fields_are_415_and_garbage_is_400() {
        let tm = [ld(1, b"apps/v1"), ld(2, b"Deployment")].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm)].concat();
        assert_eq!(decode(&body, "p").unwrap_err().code, 415);
        let tm = [ld(1, b"v1"), ld(2, b"Namespace")].concat();
        // An unmodelled field is refused unless it is zero (Go writes unset non-pointer fields).
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &ld(9, b"x"))].concat();
        assert_eq!(decode(&body, "p").unwrap_err().code, 415);
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &ld(9, b""))].concat();
        assert_eq!(
            decode(&body, "p").unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace"})
        );
        let zero_varint = [ld(1, &ld(1, b"x")), vec![(7 << 3), 0]].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &zero_varint)].concat();
        assert_eq!(
            decode(&body, "p").unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
        );
        let one_varint = [ld(1, &ld(1, b"x")), vec![(7 << 3), 1]].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &one_varint)].concat();
        assert_eq!(decode(&body, "p").unwrap_err().code, 415);
        assert_eq!(decode(b"k8s\0\x0a\xff", "p").unwrap_err().code, 400);
        assert_eq!(decode(b"nope", "p").unwrap_err().code, 400);
    }
}
