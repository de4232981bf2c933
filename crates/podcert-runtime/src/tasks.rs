//! Structured concurrency: every task of the runtime is spawned in a [`Tasks`] scope, which
//! cancels it (through a `CancellationToken`) and waits for it (through a `TaskTracker`).
//! Scopes nest: the process, each signer, each signer's serving half; stopping a scope stops
//! everything below it, and nothing runs detached past shutdown.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// A cancellation scope and the tasks spawned in it.
#[derive(Clone, Default)]
pub struct Tasks {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    /// A root scope (the process; tests).
    pub fn new() -> Self {
        Self::default()
    }

    /// A root scope ended by `token` (the caller's shutdown signal).
    pub fn with_token(token: CancellationToken) -> Self {
        Tasks {
            cancel: token,
            tracker: TaskTracker::new(),
        }
    }

    /// A scope cancelled with this one (or on its own), whose tasks are waited for separately.
    pub fn child(&self) -> Tasks {
        Tasks {
            cancel: self.cancel.child_token(),
            tracker: TaskTracker::new(),
        }
    }

    /// The scope's token, for work that winds down by itself when it fires (releasing the
    /// Lease, draining the HTTP server).
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves once the scope is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Spawns `fut`; it is dropped at its next await once the scope is cancelled.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            cancel.run_until_cancelled(fut).await;
        });
    }

    /// Spawns `fut`, which watches [`Tasks::token`] itself and ends on its own.
    pub fn spawn_graceful<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(fut);
    }

    /// Cancels the scope and waits up to `grace` for its tasks; false if some did not end.
    pub async fn stop(&self, grace: Duration) -> bool {
        self.cancel.cancel();
        self.wait(grace).await
    }

    /// Waits up to `grace` for the scope's tasks without cancelling it (after the token fired
    /// elsewhere); false if some did not end.
    pub async fn wait(&self, grace: Duration) -> bool {
        self.tracker.close();
        let done = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        if !done {
            warn!(
                tasks = self.tracker.len(),
                grace_ms = grace.as_millis() as u64,
                "tasks still running after shutdown"
            );
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn stopping_a_parent_stops_and_waits_for_its_children() {
        let root = Tasks::new();
        let child = root.child();
        let graceful_done = Arc::new(AtomicBool::new(false));
        child.spawn(std::future::pending());
        let (token, done) = (child.token(), graceful_done.clone());
        child.spawn_graceful(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            done.store(true, Ordering::SeqCst);
        });
        assert!(!child.is_cancelled());
        assert!(root.stop(Duration::from_secs(5)).await);
        assert!(child.is_cancelled());
        assert!(child.wait(Duration::from_secs(5)).await);
        assert!(graceful_done.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_child_stops_without_its_parent() {
        let root = Tasks::new();
        let child = root.child();
        child.spawn(std::future::pending());
        assert!(child.stop(Duration::from_secs(5)).await);
        assert!(!root.is_cancelled());
    }

    #[tokio::test]
    async fn wait_reports_a_task_that_ignores_cancellation() {
        let t = Tasks::new();
        t.spawn_graceful(tokio::time::sleep(Duration::from_secs(60)));
        assert!(!t.stop(Duration::from_millis(20)).await);
    }
}
