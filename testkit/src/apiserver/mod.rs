//! The API server emulator: an in-memory kube-apiserver on 127.0.0.1 for tests.
//!
//! One port answers plain HTTP (`TestServer::url`, for kube::Client) and HTTPS
//! (`write_kubeconfig`, whose CA it embeds): kubectl's clientcmd sends credentials only over
//! TLS. Every request is authenticated (bearer token, optional impersonation), authorized by
//! `rules::rbac`, then passed through the fault injector before it reaches the store.
//!
//! Simplifications (documented, deliberate): HTTP/1.1 only; server-side apply is a merge of
//! the applied fields (no managedFields, no conflicts between managers); list continue tokens
//! page over the current state rather than a snapshot; pods are deleted immediately (no
//! graceful termination); core and events.k8s.io Events are stored separately; CRD schemas
//! prune unknown fields and check `required` but not types or CEL rules; OpenAPI v3 lists
//! operations but no schemas, and `fieldValidation=Strict` does not detect unknown fields of
//! built-in kinds; `dryRun` is served on create only (other writes with it get 501, never a
//! silent write); protobuf request bodies (kubectl's typed generators such as `kubectl create
//! configmap` or `kubectl auth can-i`) get 415; `resourceVersionMatch` on lists is ignored.

// Handlers return `ApiError` (the Status body to send) by value; it is built once per refused
// request, so boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod admission;
mod admission_policy;
mod auth;
pub mod config;
mod convert;
mod crd;
mod discovery;
mod faults;
mod http;
mod kubeconfig;
mod meta;
mod openapi;
mod ops;
mod patch;
mod protobuf;
mod registry;
mod selectors;
pub mod store;
mod table;
mod tls;
mod watch;

pub use config::{Faults, KubeVersion, ServerConfig};
pub use store::{StoreView, WriteRecord};

use crate::rules::UserInfo;
use anyhow::Context as _;
use registry::Registry;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{lock, State};
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch as twatch};
use tokio::task::JoinHandle;

/// State shared by every request handler.
pub(crate) struct Shared {
    pub state: Arc<Mutex<State>>,
    pub tokens: auth::Tokens,
    pub faults: faults::FaultState,
    clock_offset: Mutex<time::Duration>,
    pub version: KubeVersion,
    pub bookmark_interval: Duration,
    /// Bumped to end every open watch (fault injection, shutdown).
    pub drop_watches: twatch::Sender<u64>,
    pub addr: SocketAddr,
}

impl Shared {
    /// The server clock, shifted by the injected offset.
    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + *self.clock_offset.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn drop_all_watches(&self) {
        self.drop_watches.send_modify(|n| *n += 1);
    }
}

/// A running API server.
pub struct TestServer {
    shared: Arc<Shared>,
    ca_pem: String,
    admin_token: String,
    shutdown_tx: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// Namespaces every cluster has.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

impl TestServer {
    pub async fn start(cfg: ServerConfig) -> anyhow::Result<TestServer> {
        let pcr = cfg
            .pcr_versions
            .clone()
            .unwrap_or_else(|| cfg.version.default_pcr_versions());
        let ctb = cfg
            .ctb_versions
            .clone()
            .unwrap_or_else(|| cfg.version.default_ctb_versions());
        for v in &pcr {
            anyhow::ensure!(
                matches!(v.as_str(), "v1alpha1" | "v1beta1" | "v1"),
                "unknown PodCertificateRequest version {v:?} (expected v1alpha1, v1beta1 or v1)"
            );
        }
        for v in &ctb {
            anyhow::ensure!(
                matches!(v.as_str(), "v1alpha1" | "v1beta1" | "v1"),
                "unknown ClusterTrustBundle version {v:?} (expected v1alpha1, v1beta1 or v1)"
            );
        }
        anyhow::ensure!(
            !cfg.pod_certificate_mldsa || cfg.version >= KubeVersion::V1_38,
            "unrecognized feature gate: PodCertificateMLDSA (it exists from Kubernetes 1.38)"
        );
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding the API server to {}", cfg.listen))?;
        let addr = listener
            .local_addr()
            .context("reading the API server's address")?;
        let mut state = State::new(Registry::new(cfg.version, pcr, ctb), cfg.watch_history);
        state.cluster_trust_bundle_projection = cfg.cluster_trust_bundle_projection;
        state.pod_certificate_mldsa = cfg.pod_certificate_mldsa;
        let state = Arc::new(Mutex::new(state));
        let (drop_tx, _) = twatch::channel(0u64);
        let shared = Arc::new(Shared {
            state,
            tokens: auth::Tokens::default(),
            faults: faults::FaultState::new(cfg.faults.clone()),
            clock_offset: Mutex::new(time::Duration::ZERO),
            version: cfg.version,
            bookmark_interval: cfg.bookmark_interval.max(Duration::from_millis(10)),
            drop_watches: drop_tx,
            addr,
        });
        let admin_token = shared.tokens.mint(&UserInfo::admin());
        bootstrap(&shared)?;
        let cert = tls::serving_cert()?;
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(tls::serve(listener, app, cert.config.clone(), shutdown_rx));
        let background = vec![
            tokio::spawn(cleaner(
                shared.clone(),
                cfg.cleaner_interval,
                cfg.cleaner_max_age,
            )),
            tokio::spawn(watch_dropper(shared.clone())),
        ];
        tracing::info!(%addr, version = %cfg.version.git_version(), "API server emulator listening");
        Ok(TestServer {
            shared,
            ca_pem: cert.ca_pem,
            admin_token,
            shutdown_tx: Some(shutdown_tx),
            server,
            background,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// `https://127.0.0.1:PORT`: the same server over TLS (see `ca_pem`).
    pub fn https_url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    /// The PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    pub fn admin_client(&self) -> kube::Client {
        self.client_with_token(&self.admin_token)
    }

    /// A client authenticating as `user` (a freshly minted token).
    pub fn client_for(&self, user: &UserInfo) -> kube::Client {
        let token = self.token_for(user);
        self.client_with_token(&token)
    }

    /// Mints a bearer token for `user`.
    pub fn token_for(&self, user: &UserInfo) -> String {
        self.shared.tokens.mint(user)
    }

    /// The administrator's token.
    pub fn admin_token(&self) -> String {
        self.admin_token.clone()
    }

    fn client_with_token(&self, token: &str) -> kube::Client {
        kubeconfig::client(&self.url(), token)
    }

    /// Writes a kubeconfig (0600) that authenticates as `user`, over https (kubectl sends
    /// credentials only over TLS).
    pub fn write_kubeconfig(&self, path: &std::path::Path, user: &UserInfo) -> anyhow::Result<()> {
        let token = if *user == UserInfo::admin() {
            self.admin_token.clone()
        } else {
            self.token_for(user)
        };
        kubeconfig::write(
            path,
            &self.https_url(),
            &self.ca_pem,
            &user.username,
            &token,
        )
    }

    /// Creates (or replaces) every object of a multi-document YAML, as the administrator.
    pub fn load_yaml(&self, yaml: &str) -> anyhow::Result<()> {
        load_yaml(&self.shared, yaml)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.set(faults);
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.get()
    }

    /// Shifts the server clock (validation windows, timestamps, the cleaner).
    pub fn set_clock_offset(&self, offset: time::Duration) {
        *self
            .shared
            .clock_offset
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = offset;
    }

    pub fn store(&self) -> StoreView {
        StoreView {
            state: self.shared.state.clone(),
        }
    }

    /// Ends every open watch now (as a dropped connection would).
    pub fn drop_watches(&self) {
        self.shared.drop_all_watches();
    }

    /// Stops serving; open watches are ended first.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        for b in &self.background {
            b.abort();
        }
        self.shared.drop_all_watches();
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        // Keep-alive connections can hold graceful shutdown open; do not wait for ever.
        if tokio::time::timeout(Duration::from_secs(2), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for b in &self.background {
            b.abort();
        }
        self.server.abort();
    }
}

fn admin_ctx(now: OffsetDateTime) -> (UserInfo, OffsetDateTime) {
    (UserInfo::admin(), now)
}

/// Objects every cluster starts with: system namespaces, `cluster-admin` and
/// `system:basic-user`.
fn bootstrap(sh: &Shared) -> anyhow::Result<()> {
    let mut docs = String::new();
    for ns in SYSTEM_NAMESPACES {
        docs.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
        ));
    }
    docs.push_str(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: cluster-admin\nrules:\n- apiGroups: ['*']\n  resources: ['*']\n  verbs: ['*']\n- nonResourceURLs: ['*']\n  verbs: ['*']\n",
    );
    docs.push_str(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: cluster-admin\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: system:masters\n",
    );
    // The bootstrap policy's system:basic-user: every authenticated user may review its own
    // access (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go).
    docs.push_str(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: system:basic-user\nrules:\n- apiGroups: [authorization.k8s.io]\n  resources: [selfsubjectaccessreviews, selfsubjectrulesreviews]\n  verbs: [create]\n- apiGroups: [authentication.k8s.io]\n  resources: [selfsubjectreviews]\n  verbs: [create]\n",
    );
    docs.push_str(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: system:basic-user\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: system:basic-user\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: Group\n  name: system:authenticated\n",
    );
    load_yaml(sh, &docs)
}

fn load_yaml(sh: &Shared, yaml: &str) -> anyhow::Result<()> {
    let (user, now) = admin_ctx(sh.now());
    let ctx = ops::Ctx { user: &user, now };
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).context("parsing a YAML document")?;
    for v in docs {
        if v.is_null() {
            continue;
        }
        let api_version = v
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut st = lock(&sh.state);
        let (def, version) = st
            .registry
            .find_kind(&api_version, &kind)
            .map(|(d, v)| (d.clone(), v))
            .with_context(|| format!("the server does not serve {kind} in {api_version}"))?;
        let ns = if def.namespaced {
            match meta::namespace_of(&v) {
                "" => "default".to_string(),
                n => n.to_string(),
            }
        } else {
            String::new()
        };
        let name = meta::name_of(&v).to_string();
        let exists =
            !name.is_empty() && st.get_obj(&def.group, &def.resource, &ns, &name).is_some();
        let res = if exists {
            let mut body = v;
            let rv = st
                .get_obj(&def.group, &def.resource, &ns, &name)
                .map(|o| meta::rv_of(o).to_string());
            meta::meta_mut(&mut body).insert("resourceVersion".into(), json!(rv));
            ops::update(
                &mut st,
                &ctx,
                &def,
                &version,
                &ns,
                &name,
                body,
                ops::Sub::Main,
                "update",
            )
            .map(|_| ())
        } else {
            ops::create(&mut st, &ctx, &def, &version, &ns, v).map(|_| ())
        };
        res.map_err(|e| anyhow::anyhow!("loading {kind} {name:?}: {e}"))?;
    }
    Ok(())
}

/// Deletes PodCertificateRequests the cleaner's rule says are done with.
async fn cleaner(sh: Arc<Shared>, interval: Duration, max_age: Duration) {
    let max_age = time::Duration::try_from(max_age).unwrap_or(time::Duration::minutes(15));
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.tick().await;
    loop {
        tick.tick().await;
        clean_once(&sh, max_age);
    }
}

fn clean_once(sh: &Shared, max_age: time::Duration) {
    let now = sh.now();
    let mut st = lock(&sh.state);
    let Some(def) = st
        .registry
        .find("certificates.k8s.io", "podcertificaterequests")
        .cloned()
    else {
        return;
    };
    let victims: Vec<(String, String)> = st
        .objects(&def.group, &def.resource)
        .into_iter()
        .filter(|(_, o)| crate::rules::pcr::should_clean(o, now, max_age))
        .map(|(k, _)| k.clone())
        .collect();
    let cleaner = UserInfo {
        username: "system:kube-controller-manager".into(),
        uid: String::new(),
        groups: vec!["system:authenticated".into()],
    };
    let ctx = ops::Ctx {
        user: &cleaner,
        now,
    };
    for (ns, name) in victims {
        let _ = ops::delete(&mut st, &ctx, &def, &ns, &name, &json!({}));
    }
}

/// Ends every watch every `drop_watch_every`, re-reading the faults each round.
async fn watch_dropper(sh: Arc<Shared>) {
    loop {
        match sh.faults.get().drop_watch_every {
            Some(every) if !every.is_zero() => {
                tokio::time::sleep(every).await;
                if sh.faults.get().drop_watch_every.is_some() {
                    sh.drop_all_watches();
                }
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
