//! What two signers of one deployment may not share: a signer name, a trust domain, or a CA
//! (the same CA Secret, the same CA file, or once loaded the same CA certificate). A trust
//! domain is the unit a verifier trusts (it checks the SPIFFE ID's trust domain against a
//! bundle), so a second signer with the same trust domain or CA could mint IDs the first
//! signer's template never would (`ns/{namespace}/sa/{podName}` next to the default).
//!
//! Who wins is decided from the objects alone, so every replica agrees: the signer configured
//! by flags is the oldest, then objects by creation time, then by name. A younger signer that
//! shares anything with an older one is not served (Ready=False, reason Conflict), whether or
//! not the older one is itself served: an older object that is merely broken still holds what
//! it names, as it holds its signer name.

use std::fmt;

use podcert_k8s::crd::{PodCertificateSignerSpec, SignerSettings};
use podcert_k8s::settings::CaSpec;

/// What a signer holds exclusively (as written in its configuration).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claims {
    pub signer_name: String,
    pub trust_domain: String,
    /// `namespace/name`.
    pub ca_secret: Option<String>,
    /// The CA certificate and key files.
    pub ca_files: Vec<String>,
}

impl Claims {
    /// An object's claims, from its spec as written (a spec that does not convert still
    /// claims what it names). Its CA Secret lives in `own_namespace`.
    pub fn of_spec(spec: &PodCertificateSignerSpec, own_namespace: &str) -> Claims {
        Claims {
            signer_name: spec.signer_name.clone(),
            trust_domain: spec.trust_domain.clone(),
            ca_secret: spec
                .ca
                .secret
                .as_ref()
                .map(|s| format!("{own_namespace}/{}", s.name)),
            ca_files: spec
                .ca
                .files
                .iter()
                .flat_map(|f| [Some(f.cert_file.clone()), f.key_file.clone()])
                .flatten()
                // A token key is claimed like a key file: one CA key, one signer.
                .chain(spec.ca.pkcs11.iter().map(|p| p.uri.clone()))
                .collect(),
        }
    }

    /// The claims of a signer about to run (the one configured by flags).
    pub fn of_settings(s: &SignerSettings) -> Claims {
        let (ca_secret, ca_files) = match &s.ca {
            CaSpec::Secret {
                namespace, name, ..
            } => (Some(format!("{namespace}/{name}")), Vec::new()),
            CaSpec::Files { cert, key, .. } => (
                None,
                vec![cert.display().to_string(), key.display().to_string()],
            ),
            CaSpec::Pkcs11 { cert, key, .. } => {
                (None, vec![cert.display().to_string(), key.uri.clone()])
            }
            CaSpec::Memory { .. } => (None, Vec::new()),
        };
        Claims {
            signer_name: s.config.signer_name.clone(),
            trust_domain: s.config.trust_domain.as_str().to_string(),
            ca_secret,
            ca_files,
        }
    }

    /// What `self` and `other` both claim, for a message (empty: nothing).
    pub fn shared_with(&self, other: &Claims) -> Vec<String> {
        let mut out = Vec::new();
        if self.signer_name == other.signer_name {
            out.push(format!("signer name {}", self.signer_name));
        }
        if self.trust_domain == other.trust_domain {
            out.push(format!("trust domain {}", self.trust_domain));
        }
        if let (Some(a), Some(b)) = (&self.ca_secret, &other.ca_secret) {
            if a == b {
                out.push(format!("CA Secret {a}"));
            }
        }
        for f in &self.ca_files {
            if other.ca_files.contains(f) {
                out.push(format!("CA file {f}"));
            }
        }
        out
    }
}

/// An older signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// The signer configured by command-line flags.
    Flags(String),
    /// A PodCertificateSigner object, by name.
    Object(String),
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Flags(signer) => write!(
                f,
                "this deployment's command-line signer ({signer}, from --signer-name)"
            ),
            Holder::Object(name) => write!(f, "the older PodCertificateSigner {name}"),
        }
    }
}

/// The sentence for a younger signer's Conflict condition.
pub fn message(holder: &Holder, shared: &[String]) -> String {
    format!(
        "{holder} already uses {}; one trust domain is served by one signer with one CA, so change this object's trustDomain or CA (or delete one of the two)",
        shared.join(", ")
    )
}

/// The sort key that decides who is older: creation time (seconds; unknown sorts last), then
/// name. The flag signer is older than every object.
pub type Age = (i64, String);

/// For each object (in `objects`, any order, with its age and claims), the first older signer
/// it shares something with and what is shared. Objects not in the result conflict with no
/// one (as far as configuration shows; loaded CAs are compared by [`first_holder_of`]).
pub fn static_conflicts(
    flag: Option<&Claims>,
    objects: &[(Age, Claims)],
) -> Vec<Option<(Holder, Vec<String>)>> {
    let mut order: Vec<usize> = (0..objects.len()).collect();
    order.sort_by(|a, b| objects[*a].0.cmp(&objects[*b].0));
    let mut out = vec![None; objects.len()];
    for (rank, &i) in order.iter().enumerate() {
        let mine = &objects[i].1;
        if let Some(f) = flag {
            let shared = f.shared_with(mine);
            if !shared.is_empty() {
                out[i] = Some((Holder::Flags(f.signer_name.clone()), shared));
                continue;
            }
        }
        for &j in &order[..rank] {
            let shared = objects[j].1.shared_with(mine);
            if !shared.is_empty() {
                out[i] = Some((Holder::Object(objects[j].0 .1.clone()), shared));
                break;
            }
        }
    }
    out
}

/// Among loaded CAs of older signers (in age order), the first with `fingerprint`.
pub fn first_holder_of<'a>(
    older: impl IntoIterator<Item = &'a (Holder, String)>,
    fingerprint: &str,
) -> Option<&'a Holder> {
    older
        .into_iter()
        .find(|(_, fp)| fp == fingerprint)
        .map(|(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(name: &str, td: &str, secret: Option<&str>, files: &[&str]) -> Claims {
        Claims {
            signer_name: name.into(),
            trust_domain: td.into(),
            ca_secret: secret.map(Into::into),
            ca_files: files.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn age(t: i64, n: &str) -> Age {
        (t, n.into())
    }

    #[test]
    fn the_flag_signer_is_oldest_and_every_shared_thing_is_named() {
        let flag = claims("x.io/flag", "cluster.local", Some("sys/ca"), &[]);
        let objs = vec![
            (
                age(1, "same-td"),
                claims("x.io/a", "cluster.local", None, &["/a.crt", "/a.key"]),
            ),
            (
                age(2, "same-secret"),
                claims("x.io/b", "b.org", Some("sys/ca"), &[]),
            ),
            (
                age(3, "same-name"),
                claims("x.io/flag", "c.org", Some("sys/c"), &[]),
            ),
            (
                age(4, "alone"),
                claims("x.io/d", "d.org", Some("sys/d"), &[]),
            ),
        ];
        let c = static_conflicts(Some(&flag), &objs);
        let (h, shared) = c[0].clone().unwrap();
        assert_eq!(h, Holder::Flags("x.io/flag".into()));
        assert_eq!(shared, vec!["trust domain cluster.local"]);
        assert_eq!(c[1].as_ref().unwrap().1, vec!["CA Secret sys/ca"]);
        assert_eq!(c[2].as_ref().unwrap().1, vec!["signer name x.io/flag"]);
        assert!(c[3].is_none());
        let m = message(&h, &shared);
        assert!(m.contains("command-line signer (x.io/flag"), "{m}");
        assert!(m.contains("trust domain cluster.local"), "{m}");
    }

    #[test]
    fn the_oldest_object_wins_whatever_the_order_given() {
        let a = claims("x.io/a", "a.org", None, &["/ca.crt", "/a.key"]);
        let b = claims("x.io/b", "b.org", None, &["/ca.crt", "/b.key"]);
        let c = claims("x.io/c", "a.org", Some("ns/c"), &[]);
        // Same second: the name decides.
        let objs = vec![
            (age(200, "b"), b.clone()),
            (age(100, "a"), a.clone()),
            (age(200, "c"), c.clone()),
        ];
        let r = static_conflicts(None, &objs);
        assert!(r[1].is_none());
        assert_eq!(
            r[0],
            Some((Holder::Object("a".into()), vec!["CA file /ca.crt".into()]))
        );
        assert_eq!(
            r[2],
            Some((
                Holder::Object("a".into()),
                vec!["trust domain a.org".into()]
            ))
        );
        // A broken or conflicting older object still holds what it names.
        let d = claims("x.io/d", "b.org", None, &[]);
        let objs = vec![(age(1, "a"), a), (age(2, "b"), b), (age(3, "d"), d)];
        let r = static_conflicts(None, &objs);
        assert_eq!(r[2].as_ref().unwrap().0, Holder::Object("b".into()));
    }

    #[test]
    fn fingerprints_go_to_the_oldest_holder() {
        let older = vec![
            (Holder::Flags("x.io/f".into()), "AA".to_string()),
            (Holder::Object("a".into()), "BB".to_string()),
            (Holder::Object("b".into()), "BB".to_string()),
        ];
        assert_eq!(
            first_holder_of(&older, "BB"),
            Some(&Holder::Object("a".into()))
        );
        assert_eq!(first_holder_of(&older, "CC"), None);
    }
}
