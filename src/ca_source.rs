//! Where the signing CA comes from at run time, and keeping it current: files (reloaded when a
//! mounted Secret changes them), a `kubernetes.io/tls` Secret (optionally bootstrapped), or
//! memory (demos). New material that fails the checks is refused loudly and the old CA kept.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::ca::{generate_self_signed, Ca, CaKeyType};

/// The current CA, shared by the controller and the trust-bundle publisher.
pub struct CaHandle {
    current: RwLock<Option<Arc<Ca>>>,
    version: watch::Sender<u64>,
}

impl CaHandle {
    pub fn new() -> Arc<Self> {
        let (version, _) = watch::channel(0);
        Arc::new(CaHandle {
            current: RwLock::new(None),
            version,
        })
    }

    pub fn get(&self) -> Option<Arc<Ca>> {
        self.current.read().ok().and_then(|g| g.clone())
    }

    pub fn set(&self, ca: Ca) {
        if let Ok(mut g) = self.current.write() {
            *g = Some(Arc::new(ca));
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// Changes whenever a new CA is installed (0 = none yet).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

/// Where to get the CA.
#[derive(Debug, Clone, PartialEq)]
pub enum CaSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
        trust_anchors: Option<PathBuf>,
        poll: Duration,
    },
    Secret {
        namespace: String,
        name: String,
        bootstrap: Option<Bootstrap>,
        poll: Duration,
    },
    Memory {
        key_type: CaKeyType,
        trust_domain: String,
        validity: time::Duration,
    },
}

/// How to create the CA Secret when it does not exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    pub key_type: CaKeyType,
    pub trust_domain: String,
    pub validity: time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("CA from {origin} refused: {source}")]
    Refused {
        origin: String,
        source: crate::ca::CaError,
    },
    #[error(
        "Secret {0} is missing key {1:?} (a kubernetes.io/tls Secret holds tls.crt and tls.key)"
    )]
    MissingKey(String, &'static str),
    #[error("Secret {0} key {1:?} is not UTF-8 PEM")]
    NotUtf8(String, &'static str),
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

/// PEM material as read, before checking (compared to skip reloading unchanged material).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Material {
    cert: String,
    key: String,
    anchors: Option<String>,
}

impl Material {
    fn load(&self, origin: &str) -> Result<Ca, SourceError> {
        Ca::from_pem(
            &self.cert,
            &self.key,
            self.anchors.as_deref(),
            OffsetDateTime::now_utc(),
        )
        .map_err(|source| SourceError::Refused {
            origin: origin.to_string(),
            source,
        })
    }
}

fn read_files(
    cert: &PathBuf,
    key: &PathBuf,
    anchors: &Option<PathBuf>,
) -> Result<Material, SourceError> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|source| SourceError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    Ok(Material {
        cert: read(cert)?,
        key: read(key)?,
        anchors: anchors.as_ref().map(read).transpose()?,
    })
}

fn install(handle: &CaHandle, ca: Ca, origin: &str) {
    info!(
        origin,
        fingerprint = %ca.fingerprint_sha256(),
        not_after = %crate::api::wire::format_time(ca.not_after()),
        "CA loaded"
    );
    handle.set(ca);
}

/// Loads the CA once (an error here is a configuration error: the caller exits), then keeps
/// it current in the background until `shutdown`.
pub async fn start(
    source: CaSource,
    client: Option<kube::Client>,
    handle: Arc<CaHandle>,
    on_refused: impl Fn() + Send + Sync + 'static,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SourceError> {
    match source {
        CaSource::Memory {
            key_type,
            trust_domain,
            validity,
        } => {
            let gen = generate_self_signed(
                key_type,
                Some(&trust_domain),
                validity,
                OffsetDateTime::now_utc(),
            )
            .map_err(|source| SourceError::Refused {
                origin: "memory".into(),
                source,
            })?;
            let m = Material {
                cert: gen.cert_pem,
                key: gen.key_pem,
                anchors: None,
            };
            install(&handle, m.load("memory")?, "memory");
            warn!("using an in-memory CA: every restart changes the trust anchor (demos only; use --ca-secret or --ca-cert/--ca-key)");
            Ok(tokio::spawn(async {}))
        }
        CaSource::Files {
            cert,
            key,
            trust_anchors,
            poll,
        } => {
            let origin = format!("{} + {}", cert.display(), key.display());
            let mut last = read_files(&cert, &key, &trust_anchors)?;
            install(&handle, last.load(&origin)?, &origin);
            Ok(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.changed() => return,
                    }
                    // A mounted Secret changes by symlink swap; re-reading is cheap and robust.
                    match read_files(&cert, &key, &trust_anchors) {
                        Ok(m) if m == last => {}
                        Ok(m) => {
                            match m.load(&origin) {
                                Ok(ca) => install(&handle, ca, &origin),
                                Err(e) => {
                                    on_refused();
                                    error!(error = %e, "new CA material refused; still signing with the previous CA");
                                }
                            }
                            last = m;
                        }
                        // Half-written files during a swap: try again next round.
                        Err(e) => warn!(error = %e, "could not re-read the CA files"),
                    }
                }
            }))
        }
        CaSource::Secret {
            namespace,
            name,
            bootstrap,
            poll,
        } => {
            let client = client.ok_or_else(|| {
                SourceError::Api(kube::Error::Service(
                    "a Secret-backed CA needs a Kubernetes client".into(),
                ))
            })?;
            let api: Api<Secret> = Api::namespaced(client, &namespace);
            let origin = format!("Secret {namespace}/{name}");
            Ok(tokio::spawn(async move {
                let mut last: Option<Material> = None;
                loop {
                    match secret_round(&api, &name, bootstrap.as_ref(), &origin).await {
                        Ok(Some(m)) if Some(&m) == last.as_ref() => {}
                        Ok(Some(m)) => {
                            match m.load(&origin) {
                                Ok(ca) => install(&handle, ca, &origin),
                                Err(e) => {
                                    on_refused();
                                    error!(error = %e, "CA Secret content refused; keeping the previous CA (if any)");
                                }
                            }
                            last = Some(m);
                        }
                        Ok(None) => {
                            warn!(secret = %origin, "CA Secret not found; not signing until it exists (or use --ca-bootstrap)")
                        }
                        Err(e) => {
                            warn!(error = %e, secret = %origin, "could not read the CA Secret; will retry")
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }))
        }
    }
}

/// Reads the Secret, creating it first when bootstrapping and it is absent. Creation is a
/// plain create: when replicas race, one wins and the others get 409 and read the winner's.
async fn secret_round(
    api: &Api<Secret>,
    name: &str,
    bootstrap: Option<&Bootstrap>,
    origin: &str,
) -> Result<Option<Material>, SourceError> {
    let secret = match api.get_opt(name).await? {
        Some(s) => s,
        None => {
            let Some(b) = bootstrap else { return Ok(None) };
            let gen = generate_self_signed(
                b.key_type,
                Some(&b.trust_domain),
                b.validity,
                OffsetDateTime::now_utc(),
            )
            .map_err(|source| SourceError::Refused {
                origin: origin.to_string(),
                source,
            })?;
            let data = BTreeMap::from([
                (
                    "tls.crt".to_string(),
                    ByteString(gen.cert_pem.clone().into_bytes()),
                ),
                (
                    "tls.key".to_string(),
                    ByteString(gen.key_pem.clone().into_bytes()),
                ),
                ("ca.crt".to_string(), ByteString(gen.cert_pem.into_bytes())),
            ]);
            let s = Secret {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        "podcert-signer".to_string(),
                    )])),
                    ..Default::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                data: Some(data),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &s).await {
                Ok(created) => {
                    info!(secret = %origin, "bootstrapped a new CA into the Secret");
                    created
                }
                Err(kube::Error::Api(e)) if e.code == 409 => match api.get_opt(name).await? {
                    Some(s) => s,
                    None => return Ok(None),
                },
                Err(e) => return Err(e.into()),
            }
        }
    };
    material_from_secret(&secret, origin).map(Some)
}

fn material_from_secret(s: &Secret, origin: &str) -> Result<Material, SourceError> {
    let data = s.data.clone().unwrap_or_default();
    let text = |k: &'static str, required: bool| -> Result<Option<String>, SourceError> {
        match data.get(k) {
            Some(b) => String::from_utf8(b.0.clone())
                .map(Some)
                .map_err(|_| SourceError::NotUtf8(origin.to_string(), k)),
            None if required => Err(SourceError::MissingKey(origin.to_string(), k)),
            None => Ok(None),
        }
    };
    Ok(Material {
        cert: text("tls.crt", true)?.unwrap_or_default(),
        key: text("tls.key", true)?.unwrap_or_default(),
        anchors: text("ca.crt", false)?.filter(|a| !a.trim().is_empty()),
    })
}
