//! Server configuration: the emulated Kubernetes version, served API versions, fault injection.

use std::net::SocketAddr;
use std::time::Duration;

/// The Kubernetes minor version the emulator pretends to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KubeVersion {
    V1_34,
    V1_35,
    V1_36,
    V1_37,
    /// 1.38: ML-DSA key types behind the `PodCertificateMLDSA` gate.
    V1_38,
}

impl KubeVersion {
    /// The minor version number (34 for 1.34).
    pub fn minor(self) -> u32 {
        match self {
            KubeVersion::V1_34 => 34,
            KubeVersion::V1_35 => 35,
            KubeVersion::V1_36 => 36,
            KubeVersion::V1_37 => 37,
            KubeVersion::V1_38 => 38,
        }
    }

    /// `gitVersion` as `/version` reports it.
    pub fn git_version(self) -> String {
        format!("v1.{}.0", self.minor())
    }

    /// Parses `1.37`, `v1.37` or `v1.37.0`.
    pub fn parse(s: &str) -> Option<KubeVersion> {
        let s = s.trim_start_matches('v');
        let mut it = s.split('.');
        if it.next()? != "1" {
            return None;
        }
        match it.next()? {
            "34" => Some(KubeVersion::V1_34),
            "35" => Some(KubeVersion::V1_35),
            "36" => Some(KubeVersion::V1_36),
            "37" => Some(KubeVersion::V1_37),
            "38" => Some(KubeVersion::V1_38),
            _ => None,
        }
    }

    /// PodCertificateRequest versions served by default, preferred first.
    pub fn default_pcr_versions(self) -> Vec<String> {
        let v: &[&str] = match self {
            KubeVersion::V1_34 => &["v1alpha1"],
            KubeVersion::V1_35 | KubeVersion::V1_36 => &["v1beta1"],
            KubeVersion::V1_37 | KubeVersion::V1_38 => &["v1", "v1beta1"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }

    /// ClusterTrustBundle versions served by default, preferred first.
    pub fn default_ctb_versions(self) -> Vec<String> {
        let v: &[&str] = match self {
            KubeVersion::V1_37 | KubeVersion::V1_38 => &["v1", "v1beta1"],
            _ => &["v1beta1"],
        };
        v.iter().map(|s| s.to_string()).collect()
    }
}

/// Faults injected into API requests. Changeable at runtime (`TestServer::set_faults`);
/// random choices come from a generator seeded with `seed`, so a run is reproducible.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    pub seed: u64,
    /// Close every open watch stream this often.
    pub drop_watch_every: Option<Duration>,
    /// Delay every resource request by `delay` plus a uniform jitter in `[0, delay_jitter]`.
    pub delay: Duration,
    pub delay_jitter: Duration,
    /// Fraction (0..=1) of resource requests answered with `error_code` instead.
    pub error_rate: f64,
    /// 500, 503 or 429 (429 carries `Retry-After: retry_after_seconds`).
    pub error_code: u16,
    pub retry_after_seconds: u64,
    /// Fraction of writes (create, update, patch, delete) answered with 409 Conflict.
    pub conflict_rate: f64,
    /// Fraction of resource requests that hang for `stall_for` before being served.
    pub stall_rate: f64,
    pub stall_for: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 0,
            drop_watch_every: None,
            delay: Duration::ZERO,
            delay_jitter: Duration::ZERO,
            error_rate: 0.0,
            error_code: 503,
            retry_after_seconds: 1,
            conflict_rate: 0.0,
            stall_rate: 0.0,
            stall_for: Duration::from_secs(30),
        }
    }
}

/// How a `TestServer` is configured.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub version: KubeVersion,
    /// Served PodCertificateRequest versions, preferred first (`None`: the version's default).
    pub pcr_versions: Option<Vec<String>>,
    /// Served ClusterTrustBundle versions, preferred first (`None`: the version's default).
    pub ctb_versions: Option<Vec<String>>,
    pub cleaner_max_age: Duration,
    pub cleaner_interval: Duration,
    /// How many watch events are kept per resource for resuming watches; older
    /// resourceVersions get 410.
    pub watch_history: usize,
    pub faults: Faults,
    pub listen: SocketAddr,
    /// How often watches with `allowWatchBookmarks=true` receive a BOOKMARK.
    pub bookmark_interval: Duration,
    /// kube-apiserver's `ClusterTrustBundleProjection` feature gate. Off, a pod's
    /// `clusterTrustBundle` projected sources are dropped on create, as kube-apiserver does
    /// (pkg/api/pod/util.go dropDisabledClusterTrustBundleProjection). Default on, as on
    /// 1.37 (GA); on 1.35 it is beta and off unless `--feature-gates` turns it on.
    pub cluster_trust_bundle_projection: bool,
    /// kube-apiserver's `PodCertificateMLDSA` gate (1.38, beta, off by default): on, pods may
    /// ask for `MLDSA44`/`MLDSA65`/`MLDSA87` podCertificate keys. Only 1.38 has the gate
    /// (`TestServer::start` refuses it on older versions, as kube-apiserver refuses an unknown
    /// gate).
    pub pod_certificate_mldsa: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            version: KubeVersion::V1_37,
            pcr_versions: None,
            ctb_versions: None,
            cleaner_max_age: Duration::from_secs(15 * 60),
            cleaner_interval: Duration::from_secs(5 * 60),
            watch_history: 1000,
            faults: Faults::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bookmark_interval: Duration::from_secs(1),
            cluster_trust_bundle_projection: true,
            pod_certificate_mldsa: false,
        }
    }
}
