//! Serving certificates and the accept loop. One port answers both plain HTTP (what
//! `TestServer::url` gives kube::Client) and HTTPS (what kubeconfigs name): kubectl's
//! clientcmd only sends credentials over TLS, so kubeconfigs must point at https.

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::rustls;

/// A fresh CA and a serving certificate for 127.0.0.1 / localhost, signed by it.
pub struct ServingCert {
    pub ca_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

pub fn serving_cert() -> anyhow::Result<ServingCert> {
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "podcert-testkit apiserver CA");
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("self-signing the CA")?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().context("generating the serving key")?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .context("serving certificate parameters")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the serving certificate")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), ca_cert.der().clone()], key_der)
        .context("building the TLS server configuration")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServingCert {
        ca_pem: ca_cert.pem(),
        config: Arc::new(config),
    })
}

/// Accepts connections until `shutdown`; a first byte of 0x16 (a TLS handshake record)
/// selects HTTPS, anything else plain HTTP.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => {
                let Ok((tcp, _)) = r else { continue };
                // As Go's net package does for kube-apiserver: without it, small writes such
                // as single watch events wait for the peer's delayed ACK (~40 ms).
                let _ = tcp.set_nodelay(true);
                let app = app.clone();
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    let mut first = [0u8; 1];
                    if tcp.peek(&mut first).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let svc = TowerToHyperService::new(app);
                    let builder = hyper::server::conn::http1::Builder::new();
                    if first[0] == 0x16 {
                        match acceptor.accept(tcp).await {
                            Ok(s) => {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).with_upgrades().await;
                            }
                            Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                        }
                    } else {
                        let _ = builder.serve_connection(TokioIo::new(tcp), svc).with_upgrades().await;
                    }
                });
            }
        }
    }
    conns.abort_all();
}
