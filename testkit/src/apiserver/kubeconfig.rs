//! Kubeconfig files and clients for the emulator.

use anyhow::Context as _;
use std::io::Write as _;

/// A kube::Client for `url` with a bearer token.
pub fn client(url: &str, token: &str) -> kube::Client {
    let uri = url.parse().unwrap_or_default();
    let mut cfg = kube::Config::new(uri);
    cfg.auth_info.token = Some(token.to_string().into());
    cfg.default_namespace = "default".into();
    // Building a client from a plain-HTTP config with a token only fails on bad TLS setup,
    // which this config has none of.
    match kube::Client::try_from(cfg) {
        Ok(c) => c,
        Err(e) => panic!("building a kube client for {url}: {e}"),
    }
}

/// Writes a kubeconfig for `url` (trusting `ca_pem`), user `username` with `token`, mode 0600.
pub fn write(
    path: &std::path::Path,
    url: &str,
    ca_pem: &str,
    username: &str,
    token: &str,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "podcert-testkit", "cluster": {"server": url, "certificate-authority-data": ca}}],
        "users": [{"name": username, "user": {"token": token}}],
        "contexts": [{"name": "podcert-testkit", "context": {"cluster": "podcert-testkit", "user": username, "namespace": "default"}}],
        "current-context": "podcert-testkit",
        "preferences": {},
    });
    let text = serde_saphyr::to_string(&doc).context("serialising the kubeconfig")?;
    // Written aside and renamed, so a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating the kubeconfig {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing the kubeconfig {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("moving the kubeconfig to {}", path.display()))?;
    Ok(())
}
