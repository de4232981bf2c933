//! rustls configuration for SPIFFE mTLS: both sides present the current credential (read at
//! each handshake, so rotations apply to new connections) and verify the peer's chain against
//! the current trust bundle for the right EKU, then authorise its SPIFFE ID. DNS names are
//! never checked: the ID is the identity.

use crate::identity::{spiffe_id_of_cert, AllowList, IdentityError, SpiffeId};
use crate::reload::Material;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use std::fmt;
use std::sync::Arc;

/// Why a peer was refused after its certificate parsed. Carried inside the rustls error so
/// the handshake failure names it.
#[derive(Debug, thiserror::Error)]
pub enum PeerRejected {
    #[error("peer certificate is not valid for {usage} under the trust bundle: {reason}")]
    Chain { usage: &'static str, reason: String },
    #[error("peer certificate has no usable SPIFFE ID: {0}")]
    Identity(#[from] IdentityError),
    #[error("peer {0} is not in the allow-list")]
    NotAllowed(SpiffeId),
}

impl From<PeerRejected> for rustls::Error {
    fn from(e: PeerRejected) -> Self {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    }
}

/// webpki's errors print as Rust identifiers; the common ones get a sentence.
fn explain_webpki(e: &webpki::Error, usage: &str) -> String {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => "its issuer is not in the trust bundle".into(),
        // Two CAs with the same name (every podcert-signer CA of a trust domain) end here.
        E::InvalidSignatureForPublicKey => {
            "its signature does not verify with the trust-bundle CA of that name (issued by another CA?)".into()
        }
        E::CertExpired { .. } => "it has expired".into(),
        E::CertNotValidYet { .. } => "it is not valid yet".into(),
        E::RequiredEkuNotFoundContext(_) => {
            format!("it lacks the {usage} extended key usage")
        }
        E::CaUsedAsEndEntity => "it is a CA certificate".into(),
        other => format!("{other:?}"),
    }
}

/// The reason a handshake failed, in one sentence: our own verifier's verdict when it was
/// ours (rustls would print it with Debug formatting), else the TLS error as is.
pub fn handshake_reason(e: &std::io::Error) -> String {
    let Some(inner) = e.get_ref() else {
        return e.to_string();
    };
    if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other)))) =
        inner.downcast_ref::<rustls::Error>()
    {
        return other.to_string();
    }
    inner.to_string()
}

/// The crypto provider used everywhere: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Presents the credential that is current when the handshake starts.
pub struct CurrentCredential(pub Arc<Material>);

impl fmt::Debug for CurrentCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurrentCredential")
    }
}

impl CurrentCredential {
    fn key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.0.credential.get().certified_key)
    }
}

impl ResolvesServerCert for CurrentCredential {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

impl ResolvesClientCert for CurrentCredential {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies peers against the current trust bundle and the allow-list.
pub struct SpiffeVerifier {
    material: Arc<Material>,
    allow: AllowList,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for SpiffeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeVerifier")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl SpiffeVerifier {
    pub fn new(material: Arc<Material>, allow: AllowList, provider: Arc<CryptoProvider>) -> Self {
        SpiffeVerifier {
            material,
            allow,
            provider,
        }
    }

    /// Chain to a current trust anchor with `eku`, then one allowed SPIFFE ID.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        eku: webpki::KeyUsage,
        usage: &'static str,
    ) -> Result<SpiffeId, PeerRejected> {
        let trust = self.material.trust.get();
        let cert =
            webpki::EndEntityCert::try_from(end_entity).map_err(|e| PeerRejected::Chain {
                usage,
                reason: e.to_string(),
            })?;
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &trust.anchors,
            intermediates,
            now,
            eku,
            None,
            None,
        )
        .map_err(|e| PeerRejected::Chain {
            usage,
            reason: explain_webpki(&e, usage),
        })?;
        let id = spiffe_id_of_cert(end_entity)?;
        if self.allow.allows(&id) {
            Ok(id)
        } else {
            Err(PeerRejected::NotAllowed(id))
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The server name is deliberately ignored: servers are authorised by SPIFFE ID.
        self.check(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            "serverAuth",
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for SpiffeVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: clients hold exactly one credential and always send it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            "clientAuth",
        )?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// Server side: client certificates are mandatory. TLS 1.3 only: both ends are this program
/// (or another modern SPIFFE workload), and 1.3 encrypts the certificates on the wire.
pub fn server_config(
    material: &Arc<Material>,
    allow: AllowList,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let verifier = SpiffeVerifier::new(Arc::clone(material), allow, Arc::clone(&provider));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(CurrentCredential(Arc::clone(material))));
    // No resumption: a resumed session skips certificate verification, so a client would keep
    // its old identity across a trust-bundle or allow-list change.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Client side: presents the current credential, verifies the server by SPIFFE ID.
pub fn client_config(
    material: &Arc<Material>,
    allow: AllowList,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let verifier = SpiffeVerifier::new(Arc::clone(material), allow, Arc::clone(&provider));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(CurrentCredential(Arc::clone(material))));
    // Every connection does a full handshake, so each one sees (and verifies) the server's
    // current certificate; see server_config.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}
