//! The NodeRestriction admission plugin for PodCertificateRequests. Stub: owned by the rules task.

use super::{Lookup, UserInfo};
use crate::status::ApiError;
use serde_json::Value;

/// Admits (or refuses) the creation of a PCR by `user`. Only node identities are restricted.
pub fn admit_pcr_create(
    _user: &UserInfo,
    _obj: &Value,
    _lookup: &dyn Lookup,
) -> Result<(), ApiError> {
    Ok(())
}
