//! Loaded PKCS#11 modules, one per path for the whole process: C_Initialize may be called
//! once per process, so every key on one module shares its context.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};

use crate::key::Pkcs11Error;

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();

pub(crate) fn load(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    if !path.exists() {
        return Err(Pkcs11Error::Module(format!(
            "{} does not exist (install the vendor's PKCS#11 module, e.g. Debian's libsofthsm2)",
            path.display()
        )));
    }
    let ctx = Pkcs11::new(path)
        .map_err(|e| Pkcs11Error::Module(format!("loading {}: {e}", path.display())))?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| Pkcs11Error::Module(format!("C_Initialize of {}: {e}", path.display())))?;
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}
