//! One running signer: its CA source, trust-bundle publisher and request controller, with a
//! stop switch of its own. The signer configured by flags and each PodCertificateSigner run as
//! one of these.

use std::sync::Arc;
use std::time::Duration;

use kube::discovery::ApiResource;
use kube::runtime::events::Reporter;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::ca_rotation::RotationOptions;
use crate::ca_source::{self, CaHandle, SourceError};
use crate::controller::{self, RunOptions};
use crate::namespaces::NamespaceLabels;
use crate::telemetry::Metrics;
use crate::trust_bundle;
use podcert_core::policy::SignerConfig;
use podcert_k8s::crd::SignerSettings;

/// What every signer of the process shares.
#[derive(Clone)]
pub struct Shared {
    pub client: kube::Client,
    pub metrics: Arc<Metrics>,
    pub leader: watch::Receiver<bool>,
    pub reporter: Option<Reporter>,
    /// The PodCertificateRequest version discovery chose.
    pub pcr: ApiResource,
    /// The ClusterTrustBundle version (None: not served, bundles are not published).
    pub ctb: Option<ApiResource>,
    pub namespaces: Option<NamespaceLabels>,
    pub concurrency: u16,
}

/// A running signer.
pub struct Instance {
    shared: Shared,
    settings: SignerSettings,
    ctx: Arc<controller::Context>,
    ca: Arc<CaHandle>,
    synced: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The request controller and the bundle publisher, while admitted.
    serving: Option<Serving>,
}

struct Serving {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Instance {
    /// Loads the CA (an error here is returned: nothing is started) and starts the rest.
    pub async fn start(shared: &Shared, settings: SignerSettings) -> Result<Self, SourceError> {
        let mut i = Self::start_withheld(shared, settings).await?;
        i.admit();
        Ok(i)
    }

    /// Loads the CA and keeps it loaded, but neither issues nor publishes until [`admit`]:
    /// the manager first checks that no older signer has the same CA.
    ///
    /// [`admit`]: Instance::admit
    pub async fn start_withheld(
        shared: &Shared,
        settings: SignerSettings,
    ) -> Result<Self, SourceError> {
        let (stop, stop_rx) = watch::channel(false);
        let signer = settings.config.signer_name.clone();
        let ca = CaHandle::new();
        let reload_errors = shared
            .metrics
            .ca_reload_errors
            .get_or_create(&Metrics::signer(&signer))
            .clone();
        let rotation = RotationOptions {
            policy: settings.rotation.clone(),
            leader: shared.leader.clone(),
            signer_name: signer.clone(),
            metrics: Some(shared.metrics.clone()),
            events: shared.reporter.clone(),
            bundle_name: settings
                .trust_bundle
                .as_ref()
                .filter(|_| shared.ctb.is_some())
                .map(|tb| tb.bundle_name()),
        };
        let ca_task = ca_source::start_with(
            settings.ca.clone(),
            Some(shared.client.clone()),
            ca.clone(),
            rotation,
            move || {
                reload_errors.inc();
            },
            stop_rx,
        )
        .await?;
        let mut ctx = controller::Context::new(
            shared.client.clone(),
            shared.pcr.clone(),
            settings.config.clone(),
            ca.clone(),
            shared.metrics.clone(),
            shared.leader.clone(),
            shared.reporter.clone(),
        );
        ctx.namespaces = shared.namespaces.clone();
        let (_, synced) = watch::channel(false);
        Ok(Instance {
            shared: shared.clone(),
            settings,
            ctx: Arc::new(ctx),
            ca,
            synced,
            stop,
            tasks: vec![ca_task],
            serving: None,
        })
    }

    /// Whether it issues (and publishes its bundle).
    pub fn admitted(&self) -> bool {
        self.serving.is_some()
    }

    /// Starts issuing and publishing (nothing if already).
    pub fn admit(&mut self) {
        if self.serving.is_some() {
            return;
        }
        let shared = &self.shared;
        let signer = &self.settings.config.signer_name;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        if let (Some(tb), Some(ctb)) = (&self.settings.trust_bundle, &shared.ctb) {
            info!(%signer, bundle = %tb.bundle_name(), version = %ctb.api_version, "publishing trust anchors");
            tasks.push(tokio::spawn(trust_bundle::run(
                shared.client.clone(),
                ctb.clone(),
                tb.clone(),
                self.ca.clone(),
                shared.leader.clone(),
                stop_rx.clone(),
            )));
        }
        let (synced_tx, synced) = watch::channel(false);
        let opts = RunOptions {
            concurrency: shared.concurrency,
            synced: synced_tx,
        };
        tasks.push(tokio::spawn(controller::run(
            self.ctx.clone(),
            opts,
            stop_rx,
        )));
        self.synced = synced;
        self.serving = Some(Serving { stop, tasks });
    }

    /// Stops issuing and publishing; the CA stays loaded (and watched).
    pub async fn withhold(&mut self) {
        if let Some(s) = self.serving.take() {
            let _ = s.stop.send(true);
            join(s.tasks).await;
        }
    }

    pub fn settings(&self) -> &SignerSettings {
        &self.settings
    }

    pub fn ca(&self) -> &Arc<CaHandle> {
        &self.ca
    }

    /// True once the request watch has listed everything.
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced.clone()
    }

    /// Whether `next` can be applied in place (same signer name, CA, bundle and rotation settings).
    pub fn can_update_to(&self, next: &SignerSettings) -> bool {
        self.settings.config.signer_name == next.config.signer_name
            && self.settings.ca == next.ca
            && self.settings.trust_bundle == next.trust_bundle
            && self.settings.rotation == next.rotation
    }

    /// Swaps the policy; the next decision uses it.
    pub fn update_policy(&mut self, config: SignerConfig) {
        if self.ctx.set_config(config.clone()) {
            self.settings.config = config;
        }
    }

    /// Stops every task and waits (briefly) for them.
    pub async fn stop(mut self) {
        self.withhold().await;
        let _ = self.stop.send(true);
        join(self.tasks).await;
    }
}

async fn join(tasks: Vec<JoinHandle<()>>) {
    for mut t in tasks {
        if tokio::time::timeout(Duration::from_secs(5), &mut t)
            .await
            .is_err()
        {
            t.abort();
        }
    }
}
