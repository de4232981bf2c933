//! The current CA of one signer, shared by its request controller and its trust-bundle
//! publisher; backends install into it (through the rotation driver).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use podcert_core::ca::Ca;
use podcert_core::rotation::{encode_retained, RetainedRoot, RETAINED_ROOTS_ANNOTATION};

fn sha256_hex(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The current CA, shared by the controller and the trust-bundle publisher: the CA that signs
/// and the roots to publish. They differ during a rotation (the next CA's root is published
/// before it signs; retired roots stay until their leaves expire).
pub struct CaHandle {
    current: RwLock<Option<Installed>>,
    version: watch::Sender<u64>,
    /// The bundle the trust-bundle publisher last wrote successfully.
    published: RwLock<Option<String>>,
    /// Why the CA's key cannot sign now (a PKCS#11 token away); None: it can, or is local.
    key_problem: watch::Sender<Option<String>>,
}

#[derive(Clone)]
struct Installed {
    ca: Arc<Ca>,
    /// One PEM CERTIFICATE block each; None: the signing CA's own trust anchors.
    anchors: Option<Arc<Vec<String>>>,
    /// Annotations the published bundle carries: the record of the roots this signer
    /// published ([`podcert_core::rotation::RETAINED_ROOTS_ANNOTATION`]) and the like.
    annotations: Arc<BTreeMap<String, String>>,
}

/// What the trust-bundle publisher writes: the roots and the bundle's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleContent {
    pub pem: String,
    pub annotations: BTreeMap<String, String>,
}

impl CaHandle {
    pub fn new() -> Arc<Self> {
        let (version, _) = watch::channel(0);
        Arc::new(CaHandle {
            current: RwLock::new(None),
            version,
            published: RwLock::new(None),
            key_problem: watch::channel(None).0,
        })
    }

    /// Records why the key cannot sign (None: it can again); readiness follows it.
    pub fn set_key_problem(&self, problem: Option<String>) {
        self.key_problem.send_replace(problem);
    }

    /// Why the key cannot sign now, if it cannot.
    pub fn key_problem(&self) -> Option<String> {
        self.key_problem.borrow().clone()
    }

    /// Follows [`CaHandle::key_problem`] (the `/readyz` check "ca-key").
    pub fn subscribe_key_problem(&self) -> watch::Receiver<Option<String>> {
        self.key_problem.subscribe()
    }

    /// The CA that signs now.
    pub fn get(&self) -> Option<Arc<Ca>> {
        self.current
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|i| i.ca.clone()))
    }

    /// Installs a CA whose own trust anchors are the whole published bundle.
    pub fn set(&self, ca: Ca) {
        let roots = ca
            .trust_anchors_der()
            .iter()
            .map(|der| RetainedRoot {
                sha256: sha256_hex(der),
                retain_until: None,
            })
            .collect::<Vec<_>>();
        self.install(Installed {
            ca: Arc::new(ca),
            anchors: None,
            annotations: Arc::new(BTreeMap::from([(
                RETAINED_ROOTS_ANNOTATION.to_string(),
                encode_retained(&roots),
            )])),
        });
    }

    /// Installs a CA to sign with and the roots to publish (one PEM CERTIFICATE block each,
    /// in order), e.g. [`podcert_core::rotation::published_anchors`], each recorded as in use.
    pub fn set_with_anchors(&self, ca: Ca, anchors: Vec<String>) {
        let roots = anchors
            .iter()
            .filter_map(|a| podcert_core::rotation::anchor_sha256(a))
            .map(|sha256| RetainedRoot {
                sha256,
                retain_until: None,
            })
            .collect::<Vec<_>>();
        let annotations = BTreeMap::from([(
            RETAINED_ROOTS_ANNOTATION.to_string(),
            encode_retained(&roots),
        )]);
        self.set_published(ca, anchors, annotations);
    }

    /// Installs a CA to sign with, the roots to publish and the bundle's annotations.
    pub fn set_published(
        &self,
        ca: Ca,
        anchors: Vec<String>,
        annotations: BTreeMap<String, String>,
    ) {
        self.install(Installed {
            ca: Arc::new(ca),
            anchors: Some(Arc::new(anchors)),
            annotations: Arc::new(annotations),
        });
    }

    /// The roots to publish, one PEM text (a ClusterTrustBundle's `trustBundle`).
    pub fn anchors_pem(&self) -> Option<String> {
        let g = self.current.read().ok()?;
        let i = g.as_ref()?;
        Some(match &i.anchors {
            Some(a) => a.concat(),
            None => i.ca.trust_anchors_pem(),
        })
    }

    /// The roots to publish and the annotations the bundle carries.
    pub fn bundle(&self) -> Option<BundleContent> {
        let g = self.current.read().ok()?;
        let i = g.as_ref()?;
        Some(BundleContent {
            pem: match &i.anchors {
                Some(a) => a.concat(),
                None => i.ca.trust_anchors_pem(),
            },
            annotations: (*i.annotations).clone(),
        })
    }

    /// Called by the trust-bundle publisher once `pem` is written everywhere it publishes.
    pub fn mark_published(&self, pem: &str) {
        if let Ok(mut g) = self.published.write() {
            *g = Some(pem.to_string());
        }
    }

    /// The bundle last confirmed published by this process (None: not yet, or not leading).
    pub fn published_pem(&self) -> Option<String> {
        self.published.read().ok().and_then(|g| g.clone())
    }

    fn install(&self, installed: Installed) {
        if let Ok(mut g) = self.current.write() {
            *g = Some(installed);
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// How many times a CA or bundle was installed (0 = none yet).
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Changes whenever a new CA or bundle is installed (0 = none yet).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}
