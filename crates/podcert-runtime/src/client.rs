//! The Kubernetes client: from a kubeconfig file, else inferred ($KUBECONFIG, ~/.kube/config,
//! in-cluster), with socket timeouts.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

/// Builds the client from `kubeconfig`, or the inferred configuration when None.
pub async fn connect(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("using kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("finding a kubeconfig or in-cluster configuration")?,
    };
    kube::Client::try_from(with_timeouts(config)).context("building the Kubernetes client")
}

/// A watch may sit silent until the apiserver ends it (kube-runtime asks for 290 s and gives
/// up itself after 295 s); the read timeout must not cut it short.
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Socket timeouts, so a dead connection fails a call instead of hanging it. They are a
/// backstop: leadership does not depend on them (the election bounds its own calls and ends
/// leadership on a local timer, see `leader`). TCP keepalive is not set: kube 5 builds its
/// connector internally and offers no knob for it; the read timeout covers a half-open peer.
fn with_timeouts(mut config: kube::Config) -> kube::Config {
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(READ_TIMEOUT);
    // Count the read timeout from when a request is sent, not from when its pooled connection
    // went idle.
    config.reset_reader_on_write = true;
    config.write_timeout = Some(Duration::from_secs(30));
    config
}
