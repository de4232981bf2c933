//! Fault injection: delays, stalls, error answers and conflicts, drawn from a seeded
//! generator so a run with the same seed and request order injects the same faults.

use super::config::Faults;
use crate::api_status::ApiError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;
use std::time::Duration;

pub struct FaultState {
    inner: Mutex<(Faults, StdRng)>,
}

/// What to do to one request.
#[derive(Debug, Default)]
pub struct Decision {
    pub wait: Duration,
    pub error: Option<ApiError>,
}

impl FaultState {
    pub fn new(f: Faults) -> Self {
        let rng = StdRng::seed_from_u64(f.seed);
        FaultState {
            inner: Mutex::new((f, rng)),
        }
    }

    pub fn set(&self, f: Faults) {
        let rng = StdRng::seed_from_u64(f.seed);
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = (f, rng);
    }

    pub fn get(&self) -> Faults {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Draws the faults for one resource request (`write`: create/update/patch/delete).
    pub fn decide(&self, write: bool, group: &str, resource: &str, name: &str) -> Decision {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (f, rng) = &mut *g;
        let mut d = Decision::default();
        if f.stall_rate > 0.0 && rng.gen_bool(f.stall_rate.clamp(0.0, 1.0)) {
            d.wait += f.stall_for;
        }
        d.wait += f.delay;
        if !f.delay_jitter.is_zero() {
            d.wait += Duration::from_nanos(rng.gen_range(0..=f.delay_jitter.as_nanos() as u64));
        }
        if f.error_rate > 0.0 && rng.gen_bool(f.error_rate.clamp(0.0, 1.0)) {
            d.error = Some(match f.error_code {
                429 => ApiError::too_many_requests(
                    "Too many requests, please try again later.",
                    f.retry_after_seconds,
                ),
                500 => ApiError::internal("injected fault"),
                _ => ApiError::service_unavailable(
                    "injected fault: the server is currently unable to handle the request",
                ),
            });
        } else if write && f.conflict_rate > 0.0 && rng.gen_bool(f.conflict_rate.clamp(0.0, 1.0)) {
            d.error = Some(ApiError::conflict(
                group,
                resource,
                name,
                ApiError::STALE_RV,
            ));
        }
        d
    }
}
