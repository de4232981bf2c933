//! Which versions of PodCertificateRequest and ClusterTrustBundle the cluster serves.
//!
//! The signer watches `v1beta1` where served (during 1.36/1.37 skew a 1.35 kubelet still
//! sends pkix + proof, which the v1 view drops), else `v1`, else `v1alpha1` (1.34).

use kube::discovery::ApiResource;

use podcert_core::request::GROUP;

/// Preference order for watching PodCertificateRequests.
pub const PCR_PREFERENCE: [&str; 3] = ["v1beta1", "v1", "v1alpha1"];
/// Preference order for writing ClusterTrustBundles (newest first).
pub const CTB_PREFERENCE: [&str; 3] = ["v1", "v1beta1", "v1alpha1"];

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("the cluster serves no {resource} in {GROUP} (tried {tried}); enable the PodCertificateRequest feature gate and API (see the README)")]
    NotServed {
        resource: &'static str,
        tried: String,
    },
    #[error("discovery of {GROUP}/{version}: {source}")]
    Api {
        version: String,
        source: kube::Error,
    },
}

/// The first version in `preference` under which the group serves `plural`.
pub async fn find(
    client: &kube::Client,
    plural: &'static str,
    kind: &str,
    preference: &[&str],
) -> Result<ApiResource, DiscoveryError> {
    for version in preference {
        let gv = format!("{GROUP}/{version}");
        match client.list_api_group_resources(&gv).await {
            Ok(list) => {
                if list.resources.iter().any(|r| r.name == plural) {
                    return Ok(ApiResource {
                        group: GROUP.into(),
                        version: version.to_string(),
                        api_version: gv,
                        kind: kind.into(),
                        plural: plural.into(),
                    });
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(DiscoveryError::Api {
                    version: version.to_string(),
                    source,
                })
            }
        }
    }
    Err(DiscoveryError::NotServed {
        resource: plural,
        tried: preference.join(", "),
    })
}

pub async fn pod_certificate_requests(
    client: &kube::Client,
) -> Result<ApiResource, DiscoveryError> {
    find(
        client,
        "podcertificaterequests",
        "PodCertificateRequest",
        &PCR_PREFERENCE,
    )
    .await
}

pub async fn cluster_trust_bundles(client: &kube::Client) -> Result<ApiResource, DiscoveryError> {
    find(
        client,
        "clustertrustbundles",
        "ClusterTrustBundle",
        &CTB_PREFERENCE,
    )
    .await
}
