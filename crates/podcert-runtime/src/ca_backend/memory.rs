//! A CA generated in memory at start (demos: every restart changes the trust anchor).

use std::sync::Arc;

use time::OffsetDateTime;
use tracing::{info, warn};

use podcert_core::ca::{generate_self_signed, CaKeyType, Material};

use super::{load, refused, CaBackend, CaHandle, Next, SourceError};

pub struct MemoryBackend {
    key_type: CaKeyType,
    trust_domain: String,
    validity: time::Duration,
    handle: Arc<CaHandle>,
}

impl MemoryBackend {
    pub fn new(
        key_type: CaKeyType,
        trust_domain: String,
        validity: time::Duration,
        handle: Arc<CaHandle>,
    ) -> Self {
        MemoryBackend {
            key_type,
            trust_domain,
            validity,
            handle,
        }
    }
}

impl CaBackend for MemoryBackend {
    async fn load(&mut self) -> Result<Next, SourceError> {
        let gen = generate_self_signed(
            self.key_type,
            Some(&self.trust_domain),
            self.validity,
            OffsetDateTime::now_utc(),
        )
        .map_err(|source| refused("memory", source))?;
        let m = Material {
            cert: gen.cert_pem,
            key: gen.key_pem,
            anchors: None,
        };
        let ca = load(&m, "memory")?;
        info!(
            origin = "memory",
            fingerprint = %ca.fingerprint_sha256(),
            not_after = %podcert_core::request::wire::format_time(ca.not_after()),
            "CA loaded"
        );
        self.handle.set(ca);
        warn!("using an in-memory CA: every restart changes the trust anchor (demos only; use --ca-secret or --ca-cert/--ca-key)");
        Ok(Next::Never)
    }

    async fn refresh(&mut self) -> Next {
        Next::Never
    }
}
