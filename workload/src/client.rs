//! The calling side: connect, mTLS handshake (the verifier authorises the server by SPIFFE
//! ID, ignoring its DNS name), one exchange.

use crate::identity::{spiffe_id_of_cert, AllowList, SpiffeId};
use crate::protocol;
use crate::reload::Material;
use crate::tls;
use crate::{bundle, WorkloadError};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The result of one successful call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The server's SPIFFE ID, verified and allowed.
    pub peer_id: SpiffeId,
    /// Serial of the server's leaf certificate (lowercase hex), to see rotations.
    pub peer_serial: String,
    /// The server's answer, without the newline.
    pub reply: String,
}

/// Calls servers with the current credential; cheap to clone.
#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
    material: Arc<Material>,
}

impl Client {
    /// `allow` lists the servers this client accepts.
    pub fn new(material: Arc<Material>, allow: AllowList) -> Result<Self, WorkloadError> {
        let config = tls::client_config(&material, allow, tls::provider())?;
        Ok(Client {
            connector: TlsConnector::from(config),
            material,
        })
    }

    /// Resolves `HOST:PORT` and calls the first address.
    pub async fn call(&self, target: &str) -> Result<Exchange, WorkloadError> {
        let resolve_err = |reason: String| WorkloadError::Resolve {
            target: target.to_string(),
            reason,
        };
        let addr = tokio::net::lookup_host(target)
            .await
            .map_err(|e| resolve_err(e.to_string()))?
            .next()
            .ok_or_else(|| resolve_err("no addresses".into()))?;
        self.call_once(addr).await
    }

    /// One connection, handshake and exchange with `addr`.
    pub async fn call_once(&self, addr: SocketAddr) -> Result<Exchange, WorkloadError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            .map_err(|source| WorkloadError::Connect { addr, source })?;
        // SNI carries the IP only: identity is checked by SPIFFE ID, not by name.
        let name = ServerName::IpAddress(addr.ip().into());
        let mut tls = tokio::time::timeout(CONNECT_TIMEOUT, self.connector.connect(name, stream))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            .map_err(|e| WorkloadError::Handshake {
                addr,
                reason: tls::handshake_reason(&e),
            })?;
        let (peer_id, peer_serial) = {
            let (_, conn) = tls.get_ref();
            let leaf = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or_else(|| WorkloadError::PeerIdentity {
                    addr,
                    reason: "no certificate".into(),
                })?;
            let id = spiffe_id_of_cert(leaf).map_err(|e| WorkloadError::PeerIdentity {
                addr,
                reason: e.to_string(),
            })?;
            let serial = bundle::serial_of(leaf).map_err(|e| WorkloadError::PeerIdentity {
                addr,
                reason: e.to_string(),
            })?;
            (id, serial)
        };
        let own = self.material.credential.get().spiffe_id.clone();
        let exchange_err = |source| WorkloadError::Exchange { addr, source };
        protocol::write_line(&mut tls, &protocol::greeting(own.as_str()))
            .await
            .map_err(exchange_err)?;
        // A server that refuses our certificate (TLS 1.3 verifies it after our handshake
        // completes) shows up here, as an alert instead of a reply.
        let reply = protocol::read_line(&mut tls).await.map_err(exchange_err)?;
        tracing::info!(peer = %peer_id, server = %addr, "exchange ok");
        Ok(Exchange {
            peer_id,
            peer_serial,
            reply,
        })
    }
}
