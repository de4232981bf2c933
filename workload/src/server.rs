//! The serving side: accept, mTLS handshake (the verifier authorises the client), one
//! exchange, log the peer's SPIFFE ID.

use crate::identity::{spiffe_id_of_cert, AllowList, SpiffeId};
use crate::protocol::{self, ProtocolError};
use crate::reload::Material;
use crate::tls;
use crate::WorkloadError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio_rustls::TlsAcceptor;

/// A client has this long to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server saw, for callers that observe it (tests, the in-process demo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    Exchanged {
        peer_id: SpiffeId,
        remote: SocketAddr,
        /// The client's greeting line.
        greeting: String,
    },
    /// The handshake or exchange failed; `reason` is the error as logged.
    Refused { remote: SocketAddr, reason: String },
}

pub struct ServeConfig {
    pub listen: SocketAddr,
    pub material: Arc<Material>,
    /// Clients allowed to call.
    pub allow: AllowList,
    /// Receives one event per connection, if set.
    pub events: Option<UnboundedSender<ServerEvent>>,
}

/// Binds `cfg.listen` and serves in the background until `shutdown` resolves; returns the
/// bound address (so `127.0.0.1:0` works).
pub async fn serve(
    cfg: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, WorkloadError> {
    let tls_config = tls::server_config(&cfg.material, cfg.allow, tls::provider())?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| WorkloadError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| WorkloadError::Bind {
            addr: cfg.listen,
            source,
        })?;
    tracing::info!(listen = %local, "serving mTLS");
    let acceptor = TlsAcceptor::from(tls_config);
    let conn = Arc::new(Conn {
        acceptor,
        material: cfg.material,
        events: cfg.events,
    });
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let conn = Arc::clone(&conn);
                        tokio::spawn(async move { conn.handle(stream, remote).await });
                    }
                    // Transient (EMFILE, aborted connections): log and keep accepting.
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                },
            }
        }
        tracing::info!(listen = %local, "stopped serving");
    });
    Ok(local)
}

struct Conn {
    acceptor: TlsAcceptor,
    material: Arc<Material>,
    events: Option<UnboundedSender<ServerEvent>>,
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("TLS handshake failed: {}", tls::handshake_reason(.0))]
    Handshake(std::io::Error),
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    #[error("{0}")]
    Identity(String),
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
}

impl Conn {
    async fn handle(&self, stream: TcpStream, remote: SocketAddr) {
        let event = match self.exchange(stream).await {
            Ok((peer_id, greeting)) => {
                tracing::info!(peer = %peer_id, %remote, "exchange ok");
                ServerEvent::Exchanged {
                    peer_id,
                    remote,
                    greeting,
                }
            }
            Err(e) => {
                tracing::warn!(%remote, reason = %e, "peer refused");
                ServerEvent::Refused {
                    remote,
                    reason: e.to_string(),
                }
            }
        };
        if let Some(tx) = &self.events {
            // Nobody listening any more is fine.
            let _ = tx.send(event);
        }
    }

    async fn exchange(&self, stream: TcpStream) -> Result<(SpiffeId, String), ConnError> {
        let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream))
            .await
            .map_err(|_| ConnError::HandshakeTimeout)?
            .map_err(ConnError::Handshake)?;
        // The verifier already authorised this certificate; read its ID back for the log.
        let peer_id = {
            let (_, conn) = tls.get_ref();
            let leaf = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or_else(|| ConnError::Identity("the client sent no certificate".into()))?;
            spiffe_id_of_cert(leaf).map_err(|e| ConnError::Identity(e.to_string()))?
        };
        let greeting = protocol::read_line(&mut tls).await?;
        let own = self.material.credential.get().spiffe_id.clone();
        protocol::write_line(&mut tls, &protocol::reply(peer_id.as_str(), own.as_str())).await?;
        // close_notify; the client may already be gone, which changes nothing for us.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        Ok((peer_id, greeting))
    }
}
