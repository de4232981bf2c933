//! The CA Secret's content: a `kubernetes.io/tls` Secret whose `tls.crt`/`tls.key` are the
//! active CA and `ca.crt` the published roots, plus (for a bootstrapped CA) the rotation state
//! under [`STATE_KEY`]. Writes are guarded by the resourceVersion read (by the runtime's Secret
//! backend), so two replicas (or a replica and an operator) never overwrite each other's state.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use podcert_core::ca::Material;
use podcert_core::rotation::{published_bundle_pem, RotationState, STATE_KEY};

/// Why a CA Secret's content cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFormatError {
    #[error(
        "Secret {0} is missing key {1:?} (a kubernetes.io/tls Secret holds tls.crt and tls.key)"
    )]
    MissingKey(String, &'static str),
    #[error("Secret {0} key {1:?} is not UTF-8 PEM")]
    NotUtf8(String, &'static str),
    #[error("{origin}: {source}")]
    State {
        origin: String,
        source: podcert_core::rotation::StateError,
    },
    #[error("could not encode the rotation state: {0}")]
    Encode(#[source] serde_json::Error),
}

pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CRT: &str = "ca.crt";

/// What a CA Secret holds.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretCa {
    /// A rotation state (a bootstrapped CA managed by this signer).
    State(Box<RotationState>),
    /// PEM material only: a Secret written before rotation existed, or by cert-manager/Vault.
    Material(Material),
}

/// Reads the Secret's CA: the rotation state when present, else the PEM material.
pub fn read(secret: &Secret, origin: &str) -> Result<SecretCa, SecretFormatError> {
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let text = |k: &'static str| -> Result<Option<String>, SecretFormatError> {
        data.get(k)
            .map(|b| {
                String::from_utf8(b.0.clone())
                    .map_err(|_| SecretFormatError::NotUtf8(origin.to_string(), k))
            })
            .transpose()
    };
    if let Some(json) = text(STATE_KEY)? {
        let state = RotationState::from_json(&json).map_err(|source| SecretFormatError::State {
            origin: origin.to_string(),
            source,
        })?;
        return Ok(SecretCa::State(Box::new(state)));
    }
    Ok(SecretCa::Material(Material {
        cert: text(TLS_CRT)?
            .ok_or_else(|| SecretFormatError::MissingKey(origin.to_string(), TLS_CRT))?,
        key: text(TLS_KEY)?
            .ok_or_else(|| SecretFormatError::MissingKey(origin.to_string(), TLS_KEY))?,
        anchors: text(CA_CRT)?.filter(|a| !a.trim().is_empty()),
    }))
}

/// The Secret data for `state`: the active CA as `tls.crt`/`tls.key` (so the Secret stays a
/// valid `kubernetes.io/tls` Secret), every published root as `ca.crt`, the state as JSON.
pub fn data_for(state: &RotationState) -> Result<BTreeMap<String, ByteString>, SecretFormatError> {
    let json = state.to_json().map_err(SecretFormatError::Encode)?;
    let key = state
        .active
        .key_pem
        .as_ref()
        .map(|k| k.expose().to_string())
        .unwrap_or_default();
    Ok(BTreeMap::from([
        (
            TLS_CRT.to_string(),
            ByteString(state.active.cert_pem.clone().into_bytes()),
        ),
        (TLS_KEY.to_string(), ByteString(key.into_bytes())),
        (
            CA_CRT.to_string(),
            ByteString(published_bundle_pem(state).into_bytes()),
        ),
        (STATE_KEY.to_string(), ByteString(json.into_bytes())),
    ]))
}

/// A new CA Secret holding `state`.
pub fn new_secret(name: &str, state: &RotationState) -> Result<Secret, SecretFormatError> {
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "podcert-signer".to_string(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data_for(state)?),
        ..Default::default()
    })
}
