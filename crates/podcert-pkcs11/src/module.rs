//! Loaded PKCS#11 modules, one per path for the whole process: C_Initialize may be called
//! once per process, so every key on one module shares its context.
//!
//! A removed token may not come back in the module's slot list until the module is
//! re-initialised (SoftHSM2 scans its token directory only at C_Initialize; a network HSM
//! client may have dropped its connection), so a module can be finalised and initialised
//! again. Every call into the module holds the [`Module::gate`] for reading and the
//! re-initialisation holds it for writing (C_Finalize must not race other calls); sessions
//! remember the generation they were opened in and older ones are discarded, never closed
//! (C_Finalize closed them, and their handles may be reused).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};

use crate::error::Pkcs11Error;

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();

/// At most one re-initialisation per module in this interval: a token that stays away is
/// retried on every signature, and a network HSM client should not reconnect in a loop.
const REINIT_INTERVAL: Duration = Duration::from_secs(2);

pub(crate) struct Module {
    pub(crate) path: PathBuf,
    pub(crate) ctx: Pkcs11,
    /// The generation: bumped by every re-initialisation.
    gate: RwLock<u64>,
    /// False after a failed C_Initialize (SoftHSM2 refuses while its token directory is
    /// gone): the next attempt need not wait for [`REINIT_INTERVAL`].
    initialized: std::sync::atomic::AtomicBool,
    last_reinit: Mutex<Option<Instant>>,
}

fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

impl Module {
    /// Holds off re-initialisation while a call is made; the value is the generation.
    pub(crate) fn enter(&self) -> RwLockReadGuard<'_, u64> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Finalises and initialises the module again, unless that was done less than
    /// [`REINIT_INTERVAL`] ago or by another caller since `seen` (the generation the caller
    /// failed in). Returns whether the generation is now newer than `seen`.
    pub(crate) fn reinitialize(&self, seen: u64) -> Result<bool, Pkcs11Error> {
        use std::sync::atomic::Ordering;
        let initialized = self.initialized.load(Ordering::Acquire);
        {
            let mut last = self.last_reinit.lock().unwrap_or_else(|p| p.into_inner());
            if initialized && last.is_some_and(|t| t.elapsed() < REINIT_INTERVAL) {
                return Ok(*self.enter() != seen);
            }
            *last = Some(Instant::now());
        }
        let mut generation = self.gate.write().unwrap_or_else(|p| p.into_inner());
        if *generation != seen {
            return Ok(true);
        }
        if self.initialized.load(Ordering::Acquire) {
            // An error here (not initialised) is fine: the goal is a fresh C_Initialize.
            let _ = self.ctx.clone().finalize();
            self.initialized.store(false, Ordering::Release);
        }
        *generation += 1;
        self.ctx.initialize(init_args()).map_err(|e| {
            Pkcs11Error::Module(format!(
                "C_Initialize of {} again: {e}",
                self.path.display()
            ))
        })?;
        self.initialized.store(true, Ordering::Release);
        Ok(true)
    }
}

pub(crate) fn load(path: &Path) -> Result<Arc<Module>, Pkcs11Error> {
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(m) = modules.get(path) {
        return Ok(m.clone());
    }
    if !path.exists() {
        return Err(Pkcs11Error::Module(format!(
            "{} does not exist (install the vendor's PKCS#11 module, e.g. Debian's libsofthsm2)",
            path.display()
        )));
    }
    let ctx = Pkcs11::new(path)
        .map_err(|e| Pkcs11Error::Module(format!("loading {}: {e}", path.display())))?;
    ctx.initialize(init_args())
        .map_err(|e| Pkcs11Error::Module(format!("C_Initialize of {}: {e}", path.display())))?;
    let m = Arc::new(Module {
        path: path.to_path_buf(),
        ctx,
        gate: RwLock::new(0),
        initialized: std::sync::atomic::AtomicBool::new(true),
        last_reinit: Mutex::new(None),
    });
    modules.insert(path.to_path_buf(), m.clone());
    Ok(m)
}
