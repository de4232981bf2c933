//! The CA Secret's content: a `kubernetes.io/tls` Secret whose `tls.crt`/`tls.key` are the
//! active CA and `ca.crt` the published roots, plus (for a bootstrapped CA) the rotation state
//! under [`STATE_KEY`]. Writes are guarded by the resourceVersion read, so two replicas (or a
//! replica and an operator) never overwrite each other's state.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::ca_source::{Material, SourceError};
use crate::rotation::{published_bundle_pem, RotationState, STATE_KEY};

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
pub fn read(secret: &Secret, origin: &str) -> Result<SecretCa, SourceError> {
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let text = |k: &'static str| -> Result<Option<String>, SourceError> {
        data.get(k)
            .map(|b| {
                String::from_utf8(b.0.clone())
                    .map_err(|_| SourceError::NotUtf8(origin.to_string(), k))
            })
            .transpose()
    };
    if let Some(json) = text(STATE_KEY)? {
        let state = RotationState::from_json(&json).map_err(|source| SourceError::State {
            origin: origin.to_string(),
            source,
        })?;
        return Ok(SecretCa::State(Box::new(state)));
    }
    Ok(SecretCa::Material(Material {
        cert: text(TLS_CRT)?.ok_or_else(|| SourceError::MissingKey(origin.to_string(), TLS_CRT))?,
        key: text(TLS_KEY)?.ok_or_else(|| SourceError::MissingKey(origin.to_string(), TLS_KEY))?,
        anchors: text(CA_CRT)?.filter(|a| !a.trim().is_empty()),
    }))
}

/// The Secret data for `state`: the active CA as `tls.crt`/`tls.key` (so the Secret stays a
/// valid `kubernetes.io/tls` Secret), every published root as `ca.crt`, the state as JSON.
pub fn data_for(state: &RotationState) -> Result<BTreeMap<String, ByteString>, SourceError> {
    let json = state.to_json().map_err(SourceError::Encode)?;
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
pub fn new_secret(name: &str, state: &RotationState) -> Result<Secret, SourceError> {
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

/// The result of a guarded write.
#[derive(Debug)]
pub enum WriteOutcome {
    /// Written; the Secret as stored now.
    Written(Box<Secret>),
    /// Someone changed the Secret since it was read (409): nothing was written; read again.
    Conflict,
}

/// Replaces `current`'s CA data with `state`, only if the Secret still has `current`'s
/// resourceVersion. Other keys, labels and annotations are kept.
pub async fn write_state(
    api: &Api<Secret>,
    current: &Secret,
    state: &RotationState,
) -> Result<WriteOutcome, SourceError> {
    let name = current.metadata.name.clone().unwrap_or_default();
    if current.metadata.resource_version.is_none() {
        return Err(SourceError::Unguarded(name));
    }
    let mut next = current.clone();
    let mut data = next.data.take().unwrap_or_default();
    data.extend(data_for(state)?);
    next.data = Some(data);
    next.string_data = None;
    match api.replace(&name, &PostParams::default(), &next).await {
        Ok(s) => Ok(WriteOutcome::Written(Box::new(s))),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(WriteOutcome::Conflict),
        Err(e) => Err(e.into()),
    }
}
