//! A SPIFFE bundle endpoint (SPIFFE Trust Domain and Bundle, section 5): serves the signer's
//! trust bundle as a SPIFFE bundle (a JWK Set, [`podcert_core::spiffe_bundle`]) over HTTPS, so
//! other trust domains (SPIRE, go-spiffe clients, another podcert-signer) can federate with it.
//!
//! Profiles: `https_web` serves with a certificate the operator provides (files, re-read when
//! they change); `https_spiffe` serves with an X.509-SVID of the endpoint's SPIFFE ID issued
//! here from the signer's own CA (re-issued hourly and whenever the CA changes), which peers
//! verify against the bundle they already hold.
//!
//! Content: the preview ClusterTrustBundle (every root, the next CA's included: a peer must
//! hold a root before its CA signs) and its `podcert.dev/spiffe-sequence` annotation, written
//! by the leader's publisher, so every replica serves the same bundle and sequence. Without a
//! published bundle, the CA's own roots, with the newest root's notBefore as the sequence.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use podcert_core::issue::{issue_leaf, LeafProfile};
use podcert_core::key_type::KeyType;
use podcert_core::proof::SubjectKey;

use crate::bundle_preview::roots;
use crate::ca_backend::CaHandle;
use crate::tasks::Tasks;

/// The annotation on the preview ClusterTrustBundle holding its `spiffe_sequence`.
pub const SEQUENCE_ANNOTATION: &str = "podcert.dev/spiffe-sequence";

/// How the endpoint authenticates itself.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointTls {
    /// `https_web`: a serving certificate chain and key (PEM files) the operator provides.
    Web { cert: PathBuf, key: PathBuf },
    /// `https_spiffe`: an SVID with this SPIFFE ID, issued from the signer's own CA.
    Spiffe { id: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    pub listen: SocketAddr,
    pub tls: EndpointTls,
    pub refresh_hint: Duration,
}

/// Where the served bundle comes from.
pub struct Source {
    pub ca: Arc<CaHandle>,
    /// The preview ClusterTrustBundle (client, resource, name); None: trust bundles are off.
    pub published: Option<(kube::Client, ApiResource, String)>,
}

impl Source {
    /// The roots (DER) and the sequence to serve.
    async fn bundle(&self) -> Option<Served> {
        if let Some((client, resource, name)) = &self.published {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
            match api.get_opt(name).await {
                Ok(Some(o)) => {
                    let sequence = o
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(SEQUENCE_ANNOTATION))
                        .and_then(|v| v.parse::<u64>().ok());
                    let text = o.data["spec"]["trustBundle"].as_str().unwrap_or_default();
                    let ders: Vec<Vec<u8>> = roots(text).into_iter().map(|r| r.der).collect();
                    if let (Some(seq), false) = (sequence, ders.is_empty()) {
                        return Some((ders, seq));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    debug!(error = %e, bundle = %name, "reading the published bundle failed; serving the CA's roots")
                }
            }
        }
        let pem = self.ca.anchors_pem()?;
        let ders: Vec<Vec<u8>> = roots(&pem).into_iter().map(|r| r.der).collect();
        let sequence = ders.iter().filter_map(|d| not_before(d)).max().unwrap_or(0);
        Some((ders, sequence))
    }
}

/// [`Source::bundle`] kept for [`CACHE_FOR`]: the endpoint answers anyone, and each answer
/// must not cost an API request.
struct Cached {
    source: Source,
    last: tokio::sync::Mutex<Option<(Instant, Option<Served>)>>,
}

/// The roots (DER) and the sequence an answer carries.
type Served = (Vec<Vec<u8>>, u64);

const CACHE_FOR: Duration = Duration::from_secs(2);

impl Cached {
    async fn bundle(&self) -> Option<Served> {
        let mut last = self.last.lock().await;
        if let Some((at, b)) = last.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return b.clone();
            }
        }
        let b = self.source.bundle().await;
        *last = Some((Instant::now(), b.clone()));
        b
    }
}

fn not_before(der: &[u8]) -> Option<u64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, c) = X509Certificate::from_der(der).ok()?;
    u64::try_from(c.validity().not_before.timestamp()).ok()
}

/// Binds the endpoint's address and loads its certificate: the errors an operator must see
/// at start-up. [`Bound::serve`] then serves.
pub async fn bind(cfg: EndpointConfig, source: Source) -> anyhow::Result<Bound> {
    let resolver: Arc<dyn ResolvesServerCert> = match &cfg.tls {
        EndpointTls::Web { cert, key } => Arc::new(FileCert::new(cert.clone(), key.clone())?),
        EndpointTls::Spiffe { id } => Arc::new(SvidCert::new(source.ca.clone(), id.clone())),
    };
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(cfg.listen).await?;
    info!(addr = %listener.local_addr()?, profile = match cfg.tls { EndpointTls::Web { .. } => "https_web", EndpointTls::Spiffe { .. } => "https_spiffe" }, "serving the SPIFFE bundle endpoint");
    Ok(Bound {
        acceptor,
        listener,
        source: Arc::new(Cached {
            source,
            last: tokio::sync::Mutex::new(None),
        }),
        hint: cfg.refresh_hint.as_secs(),
    })
}

/// A bound endpoint, ready to serve.
pub struct Bound {
    acceptor: tokio_rustls::TlsAcceptor,
    listener: TcpListener,
    source: Arc<Cached>,
    hint: u64,
}

impl Bound {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `tasks` is cancelled; each connection is a task of `tasks`.
    pub async fn serve(self, tasks: Tasks) {
        let Bound {
            acceptor,
            listener,
            source,
            hint,
        } = self;
        let shutdown = tasks.token();
        serve_loop(acceptor, listener, source, hint, &tasks, shutdown).await
    }
}

async fn serve_loop(
    acceptor: tokio_rustls::TlsAcceptor,
    listener: TcpListener,
    source: Arc<Cached>,
    hint: u64,
    tasks: &Tasks,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => { warn!(error = %e, "bundle endpoint accept failed"); continue; }
            },
            _ = shutdown.cancelled() => return,
        };
        let acceptor = acceptor.clone();
        let source = source.clone();
        // One short-lived task per connection, dropped when the scope is cancelled.
        tasks.spawn(async move {
            let conn = async {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => return debug!(%peer, error = %e, "bundle endpoint handshake failed"),
                    Err(_) => return debug!(%peer, "bundle endpoint handshake timed out"),
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let source = source.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&req, &source, hint).await) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await
                {
                    debug!(%peer, error = %e, "bundle endpoint connection ended");
                }
            };
            conn.await
        });
    }
}

async fn answer<B>(req: &Request<B>, source: &Cached, hint: u64) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, body: String, json: bool| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        if json {
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
        }
        r
    };
    if req.method() != hyper::Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into(), false);
    }
    if req.uri().path() != "/" {
        return reply(
            StatusCode::NOT_FOUND,
            "the bundle is served at /\n".into(),
            false,
        );
    }
    let Some((ders, sequence)) = source.bundle().await else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "no CA loaded yet\n".into(),
            false,
        );
    };
    match podcert_core::spiffe_bundle::jwks(&ders, sequence, hint) {
        Ok(v) => reply(StatusCode::OK, v.to_string(), true),
        Err(e) => {
            warn!(error = %e, "the trust bundle cannot be served as a SPIFFE bundle");
            reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"), false)
        }
    }
}

/// `https_web`: the operator's certificate files, re-read when their modification time changes
/// (looked at most every 10 s).
#[derive(Debug)]
struct FileCert {
    cert: PathBuf,
    key: PathBuf,
    cached: Mutex<(Arc<CertifiedKey>, Option<SystemTime>, Instant)>,
}

impl FileCert {
    fn new(cert: PathBuf, key: PathBuf) -> anyhow::Result<Self> {
        let loaded = load_files(&cert, &key)?;
        let mtime = modified(&cert);
        Ok(FileCert {
            cert,
            key,
            cached: Mutex::new((loaded, mtime, Instant::now())),
        })
    }
}

fn modified(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load_files(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<Arc<CertifiedKey>> {
    use anyhow::Context as _;
    let cert_pem = crate::ca_files::read_ca_file(cert, false)
        .with_context(|| format!("bundle endpoint certificate {}", cert.display()))?;
    // The key file's permissions are checked as a CA key's are.
    let key_pem = crate::ca_files::read_ca_file(key, true)
        .with_context(|| format!("bundle endpoint key {}", key.display()))?;
    certified(&cert_pem, &key_pem)
}

fn certified(chain_pem: &str, key_pem: &str) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = pem::parse_many(chain_pem)?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect();
    anyhow::ensure!(!chain.is_empty(), "no CERTIFICATE block");
    let key = pem::parse(key_pem)?;
    let der = match key.tag() {
        "PRIVATE KEY" => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.into_contents())),
        "EC PRIVATE KEY" => PrivateKeyDer::Sec1(key.into_contents().into()),
        "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(key.into_contents().into()),
        other => anyhow::bail!("a {other} block is not a private key"),
    };
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Ok(Arc::new(CertifiedKey::from_der(chain, der, &provider)?))
}

impl ResolvesServerCert for FileCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut g = self.cached.lock().ok()?;
        if g.2.elapsed() >= Duration::from_secs(10) {
            g.2 = Instant::now();
            let now = modified(&self.cert);
            if now != g.1 {
                match load_files(&self.cert, &self.key) {
                    Ok(k) => *g = (k, now, Instant::now()),
                    Err(e) => warn!(error = %e, "keeping the previous bundle endpoint certificate"),
                }
            }
        }
        Some(g.0.clone())
    }
}

/// `https_spiffe`: an SVID from the signer's CA, re-issued after an hour or when the CA changes.
struct SvidCert {
    ca: Arc<CaHandle>,
    id: String,
    cached: Mutex<Option<(Arc<CertifiedKey>, u64, Instant)>>,
}

impl std::fmt::Debug for SvidCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvidCert")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SvidCert {
    fn new(ca: Arc<CaHandle>, id: String) -> Self {
        SvidCert {
            ca,
            id,
            cached: Mutex::new(None),
        }
    }

    fn issue(&self) -> anyhow::Result<Arc<CertifiedKey>> {
        let ca = self
            .ca
            .get()
            .ok_or_else(|| anyhow::anyhow!("no CA loaded yet"))?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let subject = SubjectKey {
            key_type: KeyType::EcdsaP256,
            spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
        };
        let profile = LeafProfile {
            spiffe_id: self.id.clone(),
            dns_names: Vec::new(),
            max_lifetime: time::Duration::hours(24),
            backdate: time::Duration::seconds(60),
            refresh_fraction: 0.5,
        };
        let leaf = issue_leaf(&ca, &subject, &profile, time::OffsetDateTime::now_utc())?;
        let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", key.serialize_der()));
        certified(&leaf.chain_pem, &key_pem)
    }
}

impl ResolvesServerCert for SvidCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let version = self.ca.version();
        let mut g = self.cached.lock().ok()?;
        let fresh = g
            .as_ref()
            .is_some_and(|(_, v, at)| *v == version && at.elapsed() < Duration::from_secs(3600));
        if !fresh {
            match self.issue() {
                Ok(k) => *g = Some((k, version, Instant::now())),
                Err(e) => warn!(error = %e, "issuing the bundle endpoint's SVID failed"),
            }
        }
        g.as_ref().map(|(k, _, _)| k.clone())
    }
}
