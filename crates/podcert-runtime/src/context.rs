//! The one context of a running process: what every signer shares (the client, metrics,
//! leadership, discovery's choices, the task scope). Built once by [`crate::app`].

use std::sync::Arc;
use std::time::Duration;

use kube::discovery::ApiResource;
use kube::runtime::events::Reporter;
use tokio::sync::watch;

use crate::membership::Members;
use crate::namespaces::NamespaceLabels;
use crate::pod_lookup::PodLookup;
use crate::tasks::Tasks;
use crate::telemetry::Metrics;

/// What every signer of the process shares.
#[derive(Clone)]
pub struct AppContext {
    pub client: kube::Client,
    pub metrics: Arc<Metrics>,
    pub leader: watch::Receiver<bool>,
    pub reporter: Option<Reporter>,
    /// The PodCertificateRequest version discovery chose.
    pub pcr: ApiResource,
    /// The ClusterTrustBundle version (None: not served, bundles are not published).
    pub ctb: Option<ApiResource>,
    pub namespaces: Option<NamespaceLabels>,
    /// Pods and Services, for signers whose policy reads them (PodCertificateSigner objects).
    pub pods: Option<PodLookup>,
    pub concurrency: u16,
    /// Who decides requests: the leader, or every member by ownership.
    pub issuance: Issuance,
    /// The process's task scope: each signer runs in a child of it.
    pub tasks: Tasks,
}

/// Who decides PodCertificateRequests.
#[derive(Clone)]
pub enum Issuance {
    /// Only the elected leader (`--ha-mode leader`, or a single replica).
    Leader,
    /// Every replica, each its own requests at once and another's after `hedge` (or at once
    /// when the owner is gone): `--ha-mode active-active`.
    ActiveActive { members: Members, hedge: Duration },
}
