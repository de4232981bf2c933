//! CA material as read from a backend (files, a Secret), before it is checked.

use time::OffsetDateTime;

use super::{Ca, CaError, KeyResolver};

/// PEM material as read, before checking (compared to skip reloading unchanged material).
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    pub cert: String,
    /// The private key, or a reference to it (a `pkcs11:` URI); never logged (Debug redacts it).
    pub key: String,
    pub anchors: Option<String>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .field("anchors", &self.anchors)
            .finish()
    }
}

impl Material {
    /// Checks the material and loads it as a signing CA.
    pub fn load(&self, now: OffsetDateTime) -> Result<Ca, CaError> {
        self.load_with(now, &super::PemKeys)
    }

    /// As [`Material::load`], the key possibly a reference `resolver` knows (a `pkcs11:` URI).
    pub fn load_with(
        &self,
        now: OffsetDateTime,
        resolver: &dyn KeyResolver,
    ) -> Result<Ca, CaError> {
        Ca::load(
            &self.cert,
            &self.key,
            self.anchors.as_deref(),
            now,
            resolver,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let m = Material {
            cert: "CERT".into(),
            key: "-----BEGIN PRIVATE KEY-----SECRET".into(),
            anchors: None,
        };
        let shown = format!("{m:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains("SECRET"));
    }
}
