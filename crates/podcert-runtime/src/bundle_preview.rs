//! Which roots the live trust bundle carries while the preview bundle already has them: a root
//! whose CA does not sign yet (a rotation's next CA, a root an operator added ahead of a
//! switch) goes live only after it has been in preview for the preview time, so a canary
//! fraction of pods (those that mount the `preview` bundle) meets it first, as SPIFFE Filesystem
//! Delivery's canarying intends. The roots of the CA that signs are live at once (their leaves
//! are being issued), and a root that leaves the bundle leaves both at once. Pure: the caller
//! passes the clock.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// One PEM CERTIFICATE block as published, and its DER (the identity of a root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub pem: String,
    pub der: Vec<u8>,
}

/// Splits a bundle into its CERTIFICATE blocks, each kept as written (the published text is
/// compared as is); anything that is not a certificate block is left out.
pub fn roots(bundle: &str) -> Vec<Root> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let mut stop = start + end + END.len();
        if rest[stop..].starts_with('\n') {
            stop += 1;
        }
        let text = &rest[start..stop];
        if let Ok(p) = pem::parse(text) {
            out.push(Root {
                pem: if text.ends_with('\n') {
                    text.to_string()
                } else {
                    format!("{text}\n")
                },
                der: p.into_contents(),
            });
        }
        rest = &rest[stop..];
    }
    out
}

/// Remembers when each root was first to be published, and which are live already.
#[derive(Debug, Default)]
pub struct PreviewTracker {
    first_seen: HashMap<Vec<u8>, Instant>,
    live: HashSet<Vec<u8>>,
    started: bool,
}

/// What to publish now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Every root, in the bundle's order.
    pub preview: String,
    /// The roots that are live, in the same order.
    pub live: String,
    /// When a root waiting in preview goes live (None: none waits).
    pub next_change: Option<Instant>,
}

impl PreviewTracker {
    /// `all`: every root to publish; `signing`: the DER of the signing CA's roots;
    /// `live_before`: on the first call, the roots the live bundle already held (None: there
    /// is no live bundle yet, so everything is published live at once, as on a fresh install);
    /// later calls ignore it.
    pub fn split(
        &mut self,
        all: &[Root],
        signing: &[Vec<u8>],
        live_before: Option<&[Vec<u8>]>,
        preview_for: Duration,
        now: Instant,
    ) -> Split {
        if !self.started {
            self.started = true;
            match live_before {
                None => {
                    for r in all {
                        self.live.insert(r.der.clone());
                    }
                }
                Some(before) => {
                    for der in before {
                        self.live.insert(der.clone());
                    }
                }
            }
        }
        // A root that left the bundle is forgotten: back later, it is previewed again.
        self.first_seen
            .retain(|der, _| all.iter().any(|r| &r.der == der));
        self.live.retain(|der| all.iter().any(|r| &r.der == der));
        let mut next_change: Option<Instant> = None;
        for r in all {
            let seen = *self.first_seen.entry(r.der.clone()).or_insert(now);
            if self.live.contains(&r.der) || signing.contains(&r.der) {
                self.live.insert(r.der.clone());
                continue;
            }
            let due = seen + preview_for;
            if now >= due {
                self.live.insert(r.der.clone());
            } else {
                next_change = Some(next_change.map_or(due, |n| n.min(due)));
            }
        }
        Split {
            preview: all.iter().map(|r| r.pem.as_str()).collect(),
            live: all
                .iter()
                .filter(|r| self.live.contains(&r.der))
                .map(|r| r.pem.as_str())
                .collect(),
            next_change,
        }
    }
}

#[cfg(test)]
// `&[x.clone()]` reads better than `slice::from_ref(&x)` in these tables of cases.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;

    fn root(n: u8) -> Root {
        let der = vec![0x30, 0x03, 0x02, 0x01, n];
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())).replace("\r\n", "\n");
        Root { pem, der }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn roots_keeps_each_certificate_block_as_written() {
        let (a, b) = (root(1), root(2));
        let text = format!("{}junk\n{}", a.pem, b.pem.trim_end());
        let got = roots(&text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], a);
        assert_eq!(got[1].der, b.der);
        assert!(got[1].pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(
            roots("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
                .is_empty()
        );
    }

    #[test]
    fn a_fresh_install_publishes_everything_live() {
        let mut t = PreviewTracker::default();
        let now = Instant::now();
        let s = t.split(&[root(1), root(2)], &[root(1).der], None, MIN, now);
        assert_eq!(s.live, s.preview);
        assert_eq!(s.next_change, None);
    }

    #[test]
    fn a_next_root_is_previewed_then_goes_live() {
        let mut t = PreviewTracker::default();
        let t0 = Instant::now();
        let (active, next) = (root(1), root(2));
        let s = t.split(
            &[active.clone()],
            &[active.der.clone()],
            Some(&[active.der.clone()]),
            MIN,
            t0,
        );
        assert_eq!(s.live, active.pem);
        // The rotation prepares the next CA: its root is in preview only.
        let all = [active.clone(), next.clone()];
        let s = t.split(
            &all,
            &[active.der.clone()],
            None,
            MIN,
            t0 + Duration::from_secs(5),
        );
        assert_eq!(s.preview, format!("{}{}", active.pem, next.pem));
        assert_eq!(s.live, active.pem);
        assert_eq!(s.next_change, Some(t0 + Duration::from_secs(65)));
        let s = t.split(
            &all,
            &[active.der.clone()],
            None,
            MIN,
            t0 + Duration::from_secs(64),
        );
        assert_eq!(s.live, active.pem);
        let s = t.split(
            &all,
            &[active.der.clone()],
            None,
            MIN,
            t0 + Duration::from_secs(65),
        );
        assert_eq!(s.live, s.preview);
        assert_eq!(s.next_change, None);
        // The old root retires: gone from both at once.
        let s = t.split(
            &[next.clone()],
            &[next.der.clone()],
            None,
            MIN,
            t0 + Duration::from_secs(99),
        );
        assert_eq!(
            (s.preview.as_str(), s.live.as_str()),
            (next.pem.as_str(), next.pem.as_str())
        );
    }

    #[test]
    fn the_signing_cas_root_is_live_at_once() {
        // An operator swaps the CA files: the new CA signs now, so its root cannot wait.
        let mut t = PreviewTracker::default();
        let t0 = Instant::now();
        let (old, new) = (root(1), root(2));
        t.split(
            &[old.clone()],
            &[old.der.clone()],
            Some(&[old.der.clone()]),
            MIN,
            t0,
        );
        let s = t.split(
            &[old.clone(), new.clone()],
            &[new.der.clone()],
            None,
            MIN,
            t0,
        );
        assert_eq!(s.live, s.preview);
    }

    #[test]
    fn a_new_leader_keeps_what_was_live_and_restarts_the_wait() {
        let (active, next) = (root(1), root(2));
        let all = [active.clone(), next.clone()];
        let mut t = PreviewTracker::default();
        let t0 = Instant::now();
        // The live bundle it finds has only the active root: the next one waits a whole
        // preview time from now (its earlier preview is not known to this process).
        let s = t.split(
            &all,
            &[active.der.clone()],
            Some(&[active.der.clone()]),
            MIN,
            t0,
        );
        assert_eq!(s.live, active.pem);
        assert_eq!(s.next_change, Some(t0 + MIN));
        // One that finds both live keeps both.
        let mut t = PreviewTracker::default();
        let s = t.split(
            &all,
            &[active.der.clone()],
            Some(&[active.der.clone(), next.der.clone()]),
            MIN,
            t0,
        );
        assert_eq!(s.live, s.preview);
    }

    #[test]
    fn a_root_that_left_and_came_back_is_previewed_again() {
        let (active, next) = (root(1), root(2));
        let mut t = PreviewTracker::default();
        let t0 = Instant::now();
        t.split(&[active.clone()], &[active.der.clone()], None, MIN, t0);
        t.split(
            &[active.clone(), next.clone()],
            &[active.der.clone()],
            None,
            MIN,
            t0,
        );
        t.split(
            &[active.clone(), next.clone()],
            &[active.der.clone()],
            None,
            MIN,
            t0 + MIN,
        );
        t.split(
            &[active.clone()],
            &[active.der.clone()],
            None,
            MIN,
            t0 + 2 * MIN,
        );
        let s = t.split(
            &[active.clone(), next.clone()],
            &[active.der.clone()],
            None,
            MIN,
            t0 + 3 * MIN,
        );
        assert_eq!(s.live, active.pem);
    }
}
