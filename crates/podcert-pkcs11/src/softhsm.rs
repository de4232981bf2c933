//! SoftHSM2 for tests and walk-throughs: finds the module and initialises tokens in a
//! directory of their own (SOFTHSM2_CONF), with `softhsm2-util` as an operator would.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian and others install the module.
pub const MODULE_PATHS: [&str; 3] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The user PIN of every token [`init_tokens`] creates.
pub const USER_PIN: &str = "1234";

/// The SoftHSM2 module, if installed. With PODCERT_REQUIRE_SOFTHSM=1 (CI) its absence panics
/// instead: tests that need it must not silently skip there.
pub fn module() -> Option<PathBuf> {
    let found = MODULE_PATHS.iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        if std::env::var("PODCERT_REQUIRE_SOFTHSM").as_deref() == Ok("1") {
            panic!("PODCERT_REQUIRE_SOFTHSM=1 but libsofthsm2.so is not installed (apt-get install softhsm2)");
        }
        eprintln!("SKIPPED: libsofthsm2.so is not installed (apt-get install softhsm2 opensc); the PKCS#11 tests did not run");
    }
    found
}

/// Writes `dir/softhsm2.conf` (tokens in `dir/tokens`) and initialises one token per label,
/// each with SO PIN 5678 and user PIN [`USER_PIN`]; returns the config file for
/// SOFTHSM2_CONF. `dir/pin` holds the user PIN (mode 0600) for `pin-source=file:`.
pub fn init_tokens(dir: &Path, labels: &[&str]) -> std::io::Result<PathBuf> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = true\n",
            tokens.display()
        ),
    )?;
    for label in labels {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                "5678",
                "--pin",
                USER_PIN,
            ])
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "softhsm2-util --init-token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
    }
    write_private(&dir.join("pin"), USER_PIN)?;
    Ok(conf)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// A URI for `object` in token `token` of this module, PIN from `dir/pin`.
pub fn uri(module: &Path, dir: &Path, token: &str, object: &str) -> String {
    format!(
        "pkcs11:token={token};object={object}?module-path={}&pin-source=file:{}",
        module.display(),
        dir.join("pin").display()
    )
}
