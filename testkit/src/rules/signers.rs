//! certauthorization.IsAuthorizedForSignerName (pkg/certauthorization/helpers.go): a verb on
//! the `signers` resource of certificates.k8s.io for the exact signer name, or `<domain>/*`.

use super::{Attributes, UserInfo};

fn signer_attributes(verb: &str, name: String) -> Attributes {
    Attributes {
        verb: verb.into(),
        api_group: "certificates.k8s.io".into(),
        resource: "signers".into(),
        subresource: String::new(),
        namespace: String::new(),
        name,
        path: None,
    }
}

/// Whether `authorize` (which carries the user) allows `verb` on the signer or its domain.
pub fn is_authorized_for_signer_name(
    _user: &UserInfo,
    verb: &str,
    signer: &str,
    authorize: &dyn Fn(&Attributes) -> bool,
) -> bool {
    if authorize(&signer_attributes(verb, signer.to_string())) {
        return true;
    }
    let domain = signer.split('/').next().unwrap_or("");
    authorize(&signer_attributes(verb, format!("{domain}/*")))
}
