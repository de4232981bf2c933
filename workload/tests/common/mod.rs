//! Test fixtures: CAs and leaves from podcert-signer's signing core, projected files written
//! the way the kubelet writes them, and an in-process server.
#![allow(dead_code)]

use podcert_core::ca::{generate_self_signed, Ca, CaKeyType};
use podcert_core::issue::{issue_leaf, LeafProfile};
use podcert_core::key_type::KeyType;
use podcert_core::proof::SubjectKey;
use podcert_workload::{
    serve, tls, AllowList, Client, Material, ServeConfig, ServerEvent, SpiffeId,
};
use rcgen::{KeyPair, PublicKeyData};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use tokio::sync::{mpsc, oneshot};

pub const TD: &str = "example.org";

/// A CA plus its trust-bundle PEM.
pub struct TestCa {
    pub ca: Ca,
    pub root_pem: String,
}

impl TestCa {
    pub fn new(key_type: CaKeyType) -> Self {
        Self::for_trust_domain(key_type, TD)
    }

    /// A CA whose name differs from the default one (its name embeds the trust domain).
    pub fn for_trust_domain(key_type: CaKeyType, td: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        let generated = generate_self_signed(key_type, Some(td), Duration::days(1), now).unwrap();
        let ca = Ca::from_pem(&generated.cert_pem, &generated.key_pem, None, now).unwrap();
        TestCa {
            root_pem: ca.trust_anchors_pem(),
            ca,
        }
    }

    /// A credential bundle (PKCS#8 key, then the chain) for `id` with a fresh key.
    pub fn issue(&self, id: &str, key: SubjectKind) -> Issued {
        let (key_type, key_pair) = key.generate();
        let subject = SubjectKey {
            key_type,
            spki_der: key_pair.subject_public_key_info(),
        };
        self.issue_for(id, &subject, &key_pair.serialize_pem())
    }

    /// A bundle for an existing key (PKCS#8 PEM) whose SPKI is `subject`.
    pub fn issue_for(&self, id: &str, subject: &SubjectKey, key_pem: &str) -> Issued {
        let profile = LeafProfile {
            spiffe_id: id.to_string(),
            dns_names: vec![],
            max_lifetime: Duration::hours(1),
            backdate: Duration::seconds(60),
            refresh_fraction: 0.5,
        };
        let leaf = issue_leaf(&self.ca, subject, &profile, OffsetDateTime::now_utc()).unwrap();
        Issued {
            bundle_pem: format!("{key_pem}{}", leaf.chain_pem),
            key_pem: key_pem.to_string(),
            chain_pem: leaf.chain_pem,
            serial_hex: leaf.serial_hex,
        }
    }
}

pub struct Issued {
    pub bundle_pem: String,
    pub key_pem: String,
    pub chain_pem: String,
    pub serial_hex: String,
}

/// Subject key algorithms the kubelet may generate.
#[derive(Debug, Clone, Copy)]
pub enum SubjectKind {
    EcdsaP256,
    Ed25519,
    /// The repo's RSA-3072 vector key (generating one per test would be slow).
    Rsa3072,
}

impl SubjectKind {
    fn generate(self) -> (KeyType, KeyPair) {
        match self {
            SubjectKind::EcdsaP256 => (
                KeyType::EcdsaP256,
                KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            ),
            SubjectKind::Ed25519 => (
                KeyType::Ed25519,
                KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
            ),
            SubjectKind::Rsa3072 => {
                let path = format!(
                    "{}/../testdata/kubelet-vectors/keys/RSA3072.key.pem",
                    env!("CARGO_MANIFEST_DIR")
                );
                let pem = std::fs::read_to_string(path).unwrap();
                (KeyType::Rsa3072, KeyPair::from_pem(&pem).unwrap())
            }
        }
    }
}

/// A workload's projected volume: credential bundle and trust bundle in a temp dir.
pub struct Files {
    pub dir: tempfile::TempDir,
    pub credential: PathBuf,
    pub trust: PathBuf,
}

impl Files {
    pub fn new(bundle_pem: &str, trust_pem: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let credential = dir.path().join("credentialbundle.pem");
        let trust = dir.path().join("trust-bundle.pem");
        write_by_rename(&credential, bundle_pem.as_bytes());
        write_by_rename(&trust, trust_pem.as_bytes());
        Files {
            dir,
            credential,
            trust,
        }
    }

    pub fn material(&self) -> Arc<Material> {
        Material::load(&self.credential, &self.trust, tls::provider()).unwrap()
    }
}

/// Replaces `path` atomically, as the kubelet's atomic writer does.
pub fn write_by_rename(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn allow(entries: &[&str]) -> AllowList {
    AllowList::parse(entries).unwrap()
}

pub fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

/// A server on 127.0.0.1; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub events: mpsc::UnboundedReceiver<ServerEvent>,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    pub async fn start(material: Arc<Material>, allow: AllowList) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let cfg = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            material,
            allow,
            events: Some(tx),
        };
        let addr = serve(cfg, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        TestServer {
            addr,
            events,
            _stop: stop,
        }
    }

    /// The event for the next connection the server finished.
    pub async fn next_event(&mut self) -> ServerEvent {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.events.recv())
            .await
            .expect("the server reported no event")
            .expect("the server stopped")
    }
}

pub fn client(material: Arc<Material>, allow: AllowList) -> Client {
    Client::new(material, allow).unwrap()
}
