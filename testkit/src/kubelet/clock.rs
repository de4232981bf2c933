//! The emulated kubelet's clock: system time plus an adjustable offset, so tests can move it
//! past `beginRefreshAt` without waiting (lifetimes are at least an hour).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

/// Cheap to clone; clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Sets the offset from system time (positive: the kubelet lives in the future).
    pub fn set_offset(&self, offset: Duration) {
        let ms = i64::try_from(offset.whole_milliseconds()).unwrap_or(i64::MAX);
        self.offset_ms.store(ms, Ordering::Relaxed);
    }

    pub fn offset(&self) -> Duration {
        Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_moves_now_and_is_shared_by_clones() {
        let c = Clock::system();
        let c2 = c.clone();
        c.set_offset(Duration::hours(2));
        assert_eq!(c2.offset(), Duration::hours(2));
        assert!(c2.now() - OffsetDateTime::now_utc() > Duration::minutes(119));
    }
}
