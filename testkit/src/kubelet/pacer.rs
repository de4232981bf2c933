//! Spreads request creations evenly over time (`KubeletConfig::create_rate`), across nodes.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Hands out creation slots `1/rate` apart; without a rate every caller goes at once.
pub(crate) struct Pacer {
    interval: Option<Duration>,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    pub(crate) fn new(rate: Option<f64>) -> Self {
        let interval = rate
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        Pacer {
            interval,
            next: Mutex::new(None),
        }
    }

    /// Waits for this caller's slot.
    pub(crate) async fn wait_turn(&self) {
        if let Some(slot) = self.reserve(Instant::now()) {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// Reserves the next slot for a caller arriving at `now`. Slots are handed out in call
    /// order, and a late caller does not catch up on missed slots (no burst after a pause).
    fn reserve(&self, now: Instant) -> Option<Instant> {
        let interval = self.interval?;
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + interval);
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_one_interval_apart() {
        let p = Pacer::new(Some(10.0));
        let t0 = Instant::now();
        let slots: Vec<_> = (0..3).map(|_| p.reserve(t0).unwrap()).collect();
        assert_eq!(slots[0], t0);
        assert_eq!(slots[1] - slots[0], Duration::from_millis(100));
        assert_eq!(slots[2] - slots[1], Duration::from_millis(100));
    }

    #[test]
    fn a_late_caller_starts_from_now() {
        let p = Pacer::new(Some(10.0));
        let t0 = Instant::now();
        p.reserve(t0);
        let late = t0 + Duration::from_secs(5);
        assert_eq!(p.reserve(late), Some(late));
    }

    #[test]
    fn no_rate_means_no_slot() {
        assert_eq!(Pacer::new(None).reserve(Instant::now()), None);
        assert_eq!(Pacer::new(Some(0.0)).reserve(Instant::now()), None);
    }
}
