//! `podcert-signer ca rotate`: asks the leader to rotate a bootstrapped CA by annotating its
//! Secret, and says what will happen (in emergency mode, what breaks).

use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::RotateArgs;
use podcert_core::request::wire::format_time;
use podcert_core::rotation::{
    RotationState, ROTATE_ANNOTATION, ROTATE_FINGERPRINT_ANNOTATION, ROTATE_MODE_ANNOTATION,
};
use podcert_k8s::ca_secret::{self, SecretCa};

/// Annotates the Secret (or, in files mode, the trust bundle) and returns the explanation
/// to print.
pub(super) async fn rotate(args: RotateArgs) -> anyhow::Result<String> {
    if let Some(bundle) = &args.trust_bundle {
        return rotate_bundle(&args, bundle).await;
    }
    let secret_arg = args.secret.clone().unwrap_or_default();
    let Some((ns, name)) = secret_arg
        .split_once('/')
        .filter(|(n, m)| !n.is_empty() && !m.is_empty())
    else {
        bail!("--secret must be NAMESPACE/NAME, got {secret_arg:?}");
    };
    let client = podcert_runtime::client::connect(args.kubeconfig.as_deref()).await?;
    let api: Api<Secret> = Api::namespaced(client, ns);
    let secret = api
        .get(name)
        .await
        .with_context(|| format!("reading Secret {ns}/{name}"))?;
    let origin = format!("Secret {ns}/{name}");
    let requested_at = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .context("formatting the request time")?;
    let state = match ca_secret::read(&secret, &origin)? {
        SecretCa::State(s) => *s,
        SecretCa::Material(m) => {
            // An externally managed CA: only an earlier root can be dropped.
            let mut current = certificate_fingerprints(&m.cert);
            current.extend(
                m.anchors
                    .as_deref()
                    .map(certificate_fingerprints)
                    .unwrap_or_default(),
            );
            let fp = external_drop_target(&args, &origin, &current)?;
            let patch = request_patch(&requested_at, Some(&fp));
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("annotating {origin}"))?;
            return Ok(format!(
                "requested an emergency drop on {origin} ({ROTATE_ANNOTATION}={requested_at}).\n{}\nFollow it with: kubectl get events -n {ns} --field-selector involvedObject.name={name}",
                explain_external_drop(&fp)
            ));
        }
    };
    let fingerprint = if args.emergency {
        let fp = args
            .fingerprint
            .clone()
            .unwrap_or_else(|| state.active.fingerprint_sha256.clone());
        if !state.records().any(|r| r.matches(&fp)) {
            bail!(
                "no CA in {origin} has the SHA-256 fingerprint {fp}; known: {}",
                state
                    .records()
                    .map(|r| r.fingerprint_sha256.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Some(fp)
    } else {
        None
    };
    let patch = request_patch(
        &requested_at,
        fingerprint.as_deref().filter(|_| args.emergency),
    );
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("annotating {origin}"))?;
    let head = format!("requested a CA rotation of {origin} ({ROTATE_ANNOTATION}={requested_at}).");
    let body = match &fingerprint {
        Some(fp) => explain_emergency(&state, fp),
        None => explain_normal(&state),
    };
    Ok(format!(
        "{head}\n{body}\nFollow it with: kubectl get events -n {ns} --field-selector involvedObject.name={name}"
    ))
}

/// The annotations of a request; an emergency one names the CA to drop.
fn request_patch(requested_at: &str, emergency_fingerprint: Option<&str>) -> serde_json::Value {
    json!({ "metadata": { "annotations": {
        ROTATE_ANNOTATION: requested_at,
        ROTATE_MODE_ANNOTATION: if emergency_fingerprint.is_some() { "emergency" } else { "normal" },
        ROTATE_FINGERPRINT_ANNOTATION: emergency_fingerprint,
    }}})
}

/// SHA-256 of every CERTIFICATE block in `pem_text`, lowercase hex.
fn certificate_fingerprints(pem_text: &str) -> Vec<String> {
    pem::parse_many(pem_text)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .filter_map(|b| podcert_core::rotation::anchor_sha256(&pem::encode(&b)))
        .collect()
}

fn normalise(fp: &str) -> String {
    fp.trim()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The earlier root an emergency request for an externally managed CA drops: it must be
/// named, and not be the CA that signs now (`in_use`).
fn external_drop_target(
    args: &RotateArgs,
    origin: &str,
    in_use: &[String],
) -> anyhow::Result<String> {
    if !args.emergency {
        bail!(
            "{origin} holds no rotation state ({}): the signer rotates only a CA it bootstrapped \
             (run --ca-bootstrap), and adopts an older Secret within seconds of starting. For an \
             externally managed CA, replace its material instead: the new CA signs at once and \
             the old root stays published until its certificates expire; to drop that old root \
             at once, run with --emergency --fingerprint SHA256",
            podcert_core::rotation::STATE_KEY
        );
    }
    let Some(fp) = args.fingerprint.as_deref().map(normalise) else {
        bail!(
            "an externally managed CA needs --fingerprint: the SHA-256 of the earlier root to drop \
             (the CA that signs now cannot be dropped by the signer; replace its material first)"
        );
    };
    if in_use.contains(&fp) {
        bail!(
            "{fp} is the CA that {origin} signs with now; the signer cannot replace an externally \
             managed CA: replace its material first (the new CA signs at once), then drop this root"
        );
    }
    Ok(fp)
}

/// Files mode: annotates the signer's ClusterTrustBundle (the signer reads the request there).
async fn rotate_bundle(args: &RotateArgs, bundle: &str) -> anyhow::Result<String> {
    use kube::api::DynamicObject;
    use podcert_core::rotation::{parse_retained, RETAINED_ROOTS_ANNOTATION};
    let origin = format!("ClusterTrustBundle {bundle}");
    let client = podcert_runtime::client::connect(args.kubeconfig.as_deref()).await?;
    let resource = podcert_runtime::discovery::cluster_trust_bundles(&client)
        .await
        .context("finding the ClusterTrustBundle API")?;
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let obj = api
        .get(bundle)
        .await
        .with_context(|| format!("reading {origin}"))?;
    let roots = certificate_fingerprints(obj.data["spec"]["trustBundle"].as_str().unwrap_or(""));
    let (record, _) = obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RETAINED_ROOTS_ANNOTATION))
        .map(|t| parse_retained(t))
        .unwrap_or_default();
    let in_use: Vec<String> = record
        .iter()
        .filter(|r| r.retain_until.is_none())
        .map(|r| r.sha256.clone())
        .collect();
    let fp = external_drop_target(args, &origin, &in_use)?;
    if !roots.contains(&fp) {
        bail!(
            "{origin} holds no root with the SHA-256 fingerprint {fp}; it holds: {}",
            roots.join(", ")
        );
    }
    let requested_at = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .context("formatting the request time")?;
    let patch = request_patch(&requested_at, Some(&fp));
    api.patch(bundle, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("annotating {origin}"))?;
    Ok(format!(
        "requested an emergency drop on {origin} ({ROTATE_ANNOTATION}={requested_at}).\n{}",
        explain_external_drop(&fp)
    ))
}

/// What an emergency request for an externally managed CA will do.
pub fn explain_external_drop(fingerprint: &str) -> String {
    format!(
        "EMERGENCY: every signer replica will remove the earlier root {fingerprint} from the trust bundle at once (signing is unaffected).\n\
         CONSEQUENCE: every unexpired certificate that root's CA signed stops verifying now; pods holding one fail mTLS with their peers \
         until the kubelet refreshes their certificate (at its beginRefreshAt); restart them to refresh at once. \
         If {fingerprint} is not an earlier root of this signer, the request is refused (see the signer's log and Events)."
    )
}

/// What a normal rotation request will do.
pub fn explain_normal(state: &RotationState) -> String {
    if let Some(next) = &state.next {
        return format!(
            "A rotation is already in progress: CA {} is prepared and signs from {}; this request changes nothing.",
            next.fingerprint_sha256,
            next.activate_at.map(format_time).unwrap_or_else(|| "its activation".into())
        );
    }
    format!(
        "The signer's leader will now:\n\
         - generate a new CA and publish its root in the trust bundle at once, next to the active CA {active};\n\
         - switch signing to the new CA after the propagation delay (--ca-propagation-delay, default 1h), when every projected trust bundle holds its root;\n\
         - keep the root of {active} published until every certificate it signed has expired.\n\
         No connection breaks.",
        active = state.active.fingerprint_sha256
    )
}

/// What an emergency request will do, and what breaks.
pub fn explain_emergency(state: &RotationState, fingerprint: &str) -> String {
    let active = state.active.matches(fingerprint);
    let next = state.next.as_ref().is_some_and(|n| n.matches(fingerprint));
    if next && !active {
        return format!(
            "EMERGENCY: the signer's leader will discard the prepared CA {fingerprint} and remove its root from the trust bundle at once. \
             It has signed nothing, so no certificate is affected; a new CA is prepared at the next scheduled step."
        );
    }
    let what = if active {
        "remove the active CA {fp} (and any prepared CA) from the trust bundle at once and sign with a freshly generated CA immediately, without a propagation delay"
    } else {
        "remove the retired CA {fp} from the trust bundle at once (signing is unaffected)"
    }
    .replace("{fp}", fingerprint);
    let mut text = format!(
        "EMERGENCY: the signer's leader will {what}.\n\
         CONSEQUENCE: every unexpired certificate CA {fingerprint} signed stops verifying now. Pods holding one fail mTLS with their peers \
         until the kubelet refreshes their certificate (at its beginRefreshAt); restart them to refresh at once."
    );
    if active {
        text.push_str(
            "\nPeers whose projected trust bundle does not yet hold the new root also reject the new certificates until the kubelet updates it (about a minute).",
        );
    }
    text
}
