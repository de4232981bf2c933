//! PKCS#11 URIs (RFC 7512): `pkcs11:token=podcert;object=ca-2026?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/podcert/pin`.
//!
//! Only what selecting one key needs is accepted; anything else is refused by name rather than
//! ignored, so a typo cannot select another key. `pin-value` is refused: a URI ends up in
//! process arguments, manifests and logs, and the PIN must not.

use std::fmt;
use std::path::PathBuf;

/// Longest URI accepted (bytes); RFC 7512 sets none, real ones are well under this.
pub const MAX_URI_LEN: usize = 4096;
/// Longest attribute value after percent-decoding (bytes).
pub const MAX_VALUE_LEN: usize = 1024;

/// A parsed PKCS#11 URI naming one key.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The URI as given (it holds no secret: `pin-value` is refused).
    text: String,
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub slot_id: Option<u64>,
    /// CKA_LABEL of the key.
    pub object: Option<String>,
    /// CKA_ID of the key.
    pub id: Option<Vec<u8>>,
    pub module_path: PathBuf,
    /// Where to read the PIN (`pin-source=file:/path`); None: the caller supplies it (a
    /// Kubernetes Secret) or the token needs no login.
    pub pin_source: Option<PathBuf>,
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PKCS#11 URI: {0}")]
pub struct UriError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, UriError> {
    Err(UriError(msg.into()))
}

/// Whether `text` is meant as a PKCS#11 URI (the scheme is case-insensitive).
pub fn is_pkcs11_uri(text: &str) -> bool {
    text.get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("pkcs11:"))
}

impl Pkcs11Uri {
    pub fn parse(text: &str) -> Result<Pkcs11Uri, UriError> {
        if text.len() > MAX_URI_LEN {
            return err(format!("longer than {MAX_URI_LEN} bytes"));
        }
        if !is_pkcs11_uri(text) {
            return err("it does not start with \"pkcs11:\"");
        }
        let rest = &text[7..];
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri {
            text: text.to_string(),
            token: None,
            manufacturer: None,
            serial: None,
            model: None,
            slot_id: None,
            object: None,
            id: None,
            module_path: PathBuf::new(),
            pin_source: None,
        };
        let mut seen: Vec<String> = Vec::new();
        let mut module_path = None;
        for (attr, sep) in path.split(';').map(|a| (a, ';')).chain(
            query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .map(|a| (a, '&')),
        ) {
            if attr.is_empty() {
                continue;
            }
            let Some((name, raw)) = attr.split_once('=') else {
                return err(format!("attribute {attr:?} has no '='"));
            };
            let name = name.to_ascii_lowercase();
            if seen.contains(&name) {
                return err(format!("attribute {name:?} appears twice"));
            }
            seen.push(name.clone());
            let value = decode(raw).map_err(|e| UriError(format!("attribute {name:?}: {e}")))?;
            let in_path = sep == ';';
            let text = || {
                String::from_utf8(value.clone())
                    .map_err(|_| UriError(format!("attribute {name:?} is not UTF-8")))
            };
            match (in_path, name.as_str()) {
                (true, "token") => uri.token = Some(text()?),
                (true, "manufacturer") => uri.manufacturer = Some(text()?),
                (true, "serial") => uri.serial = Some(text()?),
                (true, "model") => uri.model = Some(text()?),
                (true, "object") => uri.object = Some(text()?),
                (true, "id") => uri.id = Some(value),
                (true, "slot-id") => {
                    uri.slot_id = Some(text()?.parse().map_err(|_| {
                        UriError("slot-id is not a decimal number".to_string())
                    })?)
                }
                (true, "type") => {
                    let t = text()?;
                    if t != "private" {
                        return err(format!(
                            "type={t:?}: a CA key URI names the private key (type=private or no type)"
                        ));
                    }
                }
                (false, "module-path") => module_path = Some(PathBuf::from(text()?)),
                (false, "pin-source") => {
                    let t = text()?;
                    let path = t
                        .strip_prefix("file://")
                        .or_else(|| t.strip_prefix("file:"))
                        .unwrap_or(&t);
                    if !path.starts_with('/') {
                        return err(format!(
                            "pin-source={t:?}: use file:/absolute/path"
                        ));
                    }
                    uri.pin_source = Some(PathBuf::from(path));
                }
                (false, "pin-value") => {
                    return err("pin-value is refused (the URI is logged and shown); use pin-source=file:/path or a PIN Secret")
                }
                (false, "module-name") => {
                    return err("module-name is not supported; give module-path=/absolute/path/to/the/module.so")
                }
                (_, other) => {
                    return err(format!(
                        "unsupported {} attribute {other:?} (path: token, manufacturer, serial, model, slot-id, object, id, type; query: module-path, pin-source)",
                        if in_path { "path" } else { "query" }
                    ))
                }
            }
        }
        match module_path {
            Some(p) if p.is_absolute() => uri.module_path = p,
            Some(p) => {
                return err(format!(
                    "module-path {:?} is not an absolute path",
                    p.display()
                ))
            }
            None => {
                return err(
                    "module-path is missing (e.g. ?module-path=/usr/lib/softhsm/libsofthsm2.so)",
                )
            }
        }
        if uri.object.is_none() && uri.id.is_none() {
            return err("it names no key: give object=<label> or id=<hex bytes>");
        }
        Ok(uri)
    }

    /// The same URI naming another object in the same token (rotation's next key).
    pub fn with_object(&self, label: &str) -> Pkcs11Uri {
        let mut u = self.clone();
        u.object = Some(label.to_string());
        u.id = None;
        let (path, query) = match self.text.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.text.as_str(), None),
        };
        let mut attrs: Vec<String> = path[7..]
            .split(';')
            .filter(|a| {
                let n = a.split('=').next().unwrap_or("").to_ascii_lowercase();
                !a.is_empty() && n != "object" && n != "id"
            })
            .map(str::to_string)
            .collect();
        attrs.push(format!("object={}", encode(label)));
        u.text = format!("pkcs11:{}", attrs.join(";"));
        if let Some(q) = query {
            u.text.push('?');
            u.text.push_str(q);
        }
        u
    }
}

/// Strict percent-decoding: a '%' must start two hex digits.
fn decode(raw: &str) -> Result<Vec<u8>, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a '%' is not followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
        if out.len() > MAX_VALUE_LEN {
            return Err(format!("longer than {MAX_VALUE_LEN} bytes"));
        }
    }
    Ok(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "module-path=/usr/lib/softhsm/libsofthsm2.so";

    #[test]
    fn the_issue_example_parses() {
        let u = Pkcs11Uri::parse("pkcs11:token=podcert;object=ca-2026?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/podcert/pin").unwrap();
        assert_eq!(u.token.as_deref(), Some("podcert"));
        assert_eq!(u.object.as_deref(), Some("ca-2026"));
        assert_eq!(
            u.module_path,
            PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(u.pin_source, Some(PathBuf::from("/etc/podcert/pin")));
    }

    #[test]
    fn percent_encoding_and_ids_decode() {
        let u = Pkcs11Uri::parse(&format!("pkcs11:token=my%20token;id=%01%02?{M}")).unwrap();
        assert_eq!(u.token.as_deref(), Some("my token"));
        assert_eq!(u.id, Some(vec![1, 2]));
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases = [
            (format!("pkcs11:object=a;object=b?{M}"), "appears twice"),
            (
                format!("pkcs11:object=a?{M}&pin-value=1234"),
                "pin-value is refused",
            ),
            (format!("pkcs11:object=a%2?{M}"), "two hex digits"),
            (
                format!("pkcs11:object=a;colour=red?{M}"),
                "unsupported path attribute",
            ),
            ("pkcs11:object=a".to_string(), "module-path is missing"),
            (
                "pkcs11:object=a?module-path=lib.so".to_string(),
                "not an absolute path",
            ),
            (format!("pkcs11:token=t?{M}"), "names no key"),
            (
                format!("pkcs11:object=a;type=cert?{M}"),
                "names the private key",
            ),
            (
                format!("pkcs11:object=a?{M}&pin-source=pin.txt"),
                "file:/absolute/path",
            ),
            ("file:/x".to_string(), "does not start with"),
            (
                format!("pkcs11:object={}?{M}", "a".repeat(MAX_URI_LEN)),
                "longer than",
            ),
        ];
        for (uri, want) in cases {
            let e = Pkcs11Uri::parse(&uri).unwrap_err().to_string();
            assert!(e.contains(want), "{uri}: {e}");
        }
    }

    #[test]
    fn with_object_replaces_only_the_label() {
        let u = Pkcs11Uri::parse(&format!("pkcs11:token=podcert;object=old;id=%01?{M}")).unwrap();
        let n = u.with_object("ca next");
        assert_eq!(
            n.to_string(),
            format!("pkcs11:token=podcert;object=ca%20next?{M}")
        );
        assert_eq!(Pkcs11Uri::parse(&n.to_string()).unwrap(), n);
    }
}
