//! The mTLS demo workload for podcert-signer: serves and calls over mutual TLS with the
//! credential bundle the kubelet projects from a `podCertificate` volume, verifies peers
//! against the ClusterTrustBundle file, authorises them by SPIFFE ID (never DNS names), and
//! follows rotations of both files without restarting.
//!
//! The pieces are a library so tests and the testkit demo can run a server and a client in
//! one process: [`Material::load`], [`serve`], [`Client::call_once`].

pub mod bundle;
pub mod client;
pub mod identity;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod tls;

pub use client::{Client, Exchange};
pub use identity::{AllowList, AllowRule, SpiffeId};
pub use reload::Material;
pub use server::{serve, ServeConfig, ServerEvent};

use std::net::SocketAddr;

/// Why serving or calling failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS configuration: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("could not resolve {target}: {reason}")]
    Resolve { target: String, reason: String },
    #[error("could not connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    #[error("exchange with {addr} failed: {source}")]
    Exchange {
        addr: SocketAddr,
        #[source]
        source: protocol::ProtocolError,
    },
    #[error("{addr} presented no usable certificate: {reason}")]
    PeerIdentity { addr: SocketAddr, reason: String },
}
