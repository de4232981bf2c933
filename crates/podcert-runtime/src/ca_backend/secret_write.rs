//! The guarded write of a CA Secret's rotation state (its format: [`podcert_k8s::ca_secret`]).

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

use podcert_core::rotation::RotationState;
use podcert_k8s::ca_secret::data_for;

use super::SourceError;

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
