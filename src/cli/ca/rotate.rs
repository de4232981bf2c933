//! `podcert-signer ca rotate`: asks the leader to rotate a bootstrapped CA by annotating its
//! Secret, and says what will happen (in emergency mode, what breaks).

use anyhow::{bail, Context as _};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::RotateArgs;
use crate::api::wire::format_time;
use crate::ca_secret::{self, SecretCa};
use crate::rotation::{
    RotationState, ROTATE_ANNOTATION, ROTATE_FINGERPRINT_ANNOTATION, ROTATE_MODE_ANNOTATION,
};

/// Annotates the Secret and returns the explanation to print.
pub(super) async fn rotate(args: RotateArgs) -> anyhow::Result<String> {
    let Some((ns, name)) = args
        .secret
        .split_once('/')
        .filter(|(n, m)| !n.is_empty() && !m.is_empty())
    else {
        bail!("--secret must be NAMESPACE/NAME, got {:?}", args.secret);
    };
    let client = crate::cli::run::client(args.kubeconfig.as_ref()).await?;
    let api: Api<Secret> = Api::namespaced(client, ns);
    let secret = api
        .get(name)
        .await
        .with_context(|| format!("reading Secret {ns}/{name}"))?;
    let origin = format!("Secret {ns}/{name}");
    let state = match ca_secret::read(&secret, &origin)? {
        SecretCa::State(s) => *s,
        SecretCa::Material(_) => bail!(
            "{origin} holds no rotation state ({}): the signer rotates only a CA it bootstrapped \
             (run --ca-bootstrap), and adopts an older Secret within seconds of starting. For an \
             externally managed CA, replace its material instead: the new CA signs at once and \
             the old root stays published until its certificates expire",
            crate::rotation::STATE_KEY
        ),
    };
    let requested_at = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .context("formatting the request time")?;
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
    let patch = json!({ "metadata": { "annotations": {
        ROTATE_ANNOTATION: requested_at,
        ROTATE_MODE_ANNOTATION: if args.emergency { "emergency" } else { "normal" },
        ROTATE_FINGERPRINT_ANNOTATION: fingerprint,
    }}});
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
