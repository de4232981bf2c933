//! May this deployment serve a signer name? Two checks: the name is under one of the domains
//! the deployment was configured for, and its identity holds `sign` (and `attest`, when it
//! publishes a trust bundle) on that signer. The apiserver authorises a signer name either by
//! the exact name or by `<domain>/*` (certificates' `IsAuthorizedForSignerName`), so both are
//! asked, as the apiserver does.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// Whether `signer_name` is under one of `domains` (`example.com` allows `example.com/*`).
pub fn in_domains(signer_name: &str, domains: &[String]) -> bool {
    signer_name
        .split_once('/')
        .is_some_and(|(d, _)| domains.iter().any(|allowed| allowed == d))
}

async fn allowed(client: &kube::Client, verb: &str, name: &str) -> Result<bool, kube::Error> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("signers".into()),
                verb: Some(verb.into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// `Ok(None)` when every verb is allowed, else the verb that is not.
pub async fn missing_verb(
    client: &kube::Client,
    signer_name: &str,
    verbs: &[&'static str],
) -> Result<Option<&'static str>, kube::Error> {
    let domain_wildcard = signer_name
        .split_once('/')
        .map(|(d, _)| format!("{d}/*"))
        .unwrap_or_default();
    for verb in verbs {
        if !allowed(client, verb, signer_name).await?
            && !allowed(client, verb, &domain_wildcard).await?
        {
            return Ok(Some(verb));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_match_whole_domains_only() {
        let d = vec!["podcert.dev".to_string()];
        assert!(in_domains("podcert.dev/web", &d));
        assert!(!in_domains("evil.podcert.dev/web", &d));
        assert!(!in_domains("podcert.dev.evil/web", &d));
        assert!(!in_domains("kubernetes.io/kube-apiserver-client", &d));
        assert!(!in_domains("podcert.dev", &d));
    }
}
