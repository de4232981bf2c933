//! One running signer: its CA backend, trust-bundle publisher and request controller, in a
//! task scope of its own (a child of the process's). The signer configured by flags and each PodCertificateSigner run as
//! one of these.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;

use crate::ca_backend::rotation::RotationOptions;
use crate::ca_backend::{self, CaHandle, SourceError};
use crate::context::AppContext;
use crate::controller::{self, RunOptions};
use crate::tasks::Tasks;
use crate::telemetry::Metrics;
use crate::trust_bundle;
use podcert_core::policy::SignerConfig;
use podcert_k8s::crd::SignerSettings;

/// A running signer.
pub struct Instance {
    shared: AppContext,
    settings: SignerSettings,
    ctx: Arc<controller::Context>,
    ca: Arc<CaHandle>,
    synced: watch::Receiver<bool>,
    /// The CA backend and everything below.
    scope: Tasks,
    /// The request controller and the bundle publisher, while admitted (a child of `scope`).
    serving: Option<Tasks>,
}

/// Sessions a token key may sign in at once: one per reconcile worker (0: kube's unbounded
/// default, for which 16 is plenty for a token).
fn key_sessions(concurrency: u16) -> usize {
    match concurrency {
        0 => 16,
        n => usize::from(n),
    }
}

/// How long a stopping signer's tasks get to end.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Instance {
    /// Loads the CA (an error here is returned: nothing is started) and starts the rest.
    pub async fn start(shared: &AppContext, settings: SignerSettings) -> Result<Self, SourceError> {
        let mut i = Self::start_withheld(shared, settings).await?;
        i.admit();
        Ok(i)
    }

    /// Loads the CA and keeps it loaded, but neither issues nor publishes until [`admit`]:
    /// the manager first checks that no older signer has the same CA.
    ///
    /// [`admit`]: Instance::admit
    pub async fn start_withheld(
        shared: &AppContext,
        settings: SignerSettings,
    ) -> Result<Self, SourceError> {
        let scope = shared.tasks.child();
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
            tasks: scope.clone(),
        };
        let loaded = ca_backend::start(
            settings.ca.clone(),
            Some(shared.client.clone()),
            ca.clone(),
            rotation,
            Arc::new(move || {
                reload_errors.inc();
            }),
            key_sessions(shared.concurrency),
            &scope,
        )
        .await;
        if let Err(e) = loaded {
            scope.stop(STOP_GRACE).await;
            return Err(e);
        }
        let ctx = controller::Context::new(shared, settings.config.clone(), ca.clone(), &scope);
        let (_, synced) = watch::channel(false);
        Ok(Instance {
            shared: shared.clone(),
            settings,
            ctx: Arc::new(ctx),
            ca,
            synced,
            scope,
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
        let serving = self.scope.child();
        // Its counters exist from now on, at 0 (a withheld signer, one in conflict, has none).
        shared
            .metrics
            .register_signer(signer, controller::ERROR_KINDS);
        if let (Some(tb), Some(ctb)) = (&self.settings.trust_bundle, &shared.ctb) {
            info!(%signer, bundle = %tb.bundle_name(), version = %ctb.api_version, "publishing trust anchors");
            serving.spawn_graceful(trust_bundle::run(
                shared.client.clone(),
                ctb.clone(),
                tb.clone(),
                self.ca.clone(),
                shared.leader.clone(),
                shared
                    .metrics
                    .trust_bundle_errors
                    .get_or_create(&Metrics::signer(signer))
                    .clone(),
                serving.token(),
            ));
        }
        let (synced_tx, synced) = watch::channel(false);
        let opts = RunOptions {
            concurrency: shared.concurrency,
            synced: synced_tx,
        };
        serving.spawn_graceful(controller::run(self.ctx.clone(), opts, serving.token()));
        self.synced = synced;
        self.serving = Some(serving);
    }

    /// Stops issuing and publishing; the CA stays loaded (and watched).
    pub async fn withhold(&mut self) {
        if let Some(s) = self.serving.take() {
            s.stop(STOP_GRACE).await;
        }
    }

    pub fn settings(&self) -> &SignerSettings {
        &self.settings
    }

    pub fn ca(&self) -> &Arc<CaHandle> {
        &self.ca
    }

    /// Spawns `fut` in this signer's scope: it ends when the signer stops.
    pub fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.scope.spawn(fut);
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
        self.scope.stop(STOP_GRACE).await;
    }
}
