//! CPU time and peak resident memory of a child process, from /proc.

use std::path::PathBuf;

/// What a process has used so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcUsage {
    /// User plus system CPU time, seconds.
    pub cpu_s: f64,
    /// Peak resident set size (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} has no {what} field where Linux puts it", .path.display())]
    Format { path: PathBuf, what: &'static str },
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (the process must not be reaped yet).
pub fn read(pid: u32) -> Result<ProcUsage, ProcError> {
    let stat_path = PathBuf::from(format!("/proc/{pid}/stat"));
    let status_path = PathBuf::from(format!("/proc/{pid}/status"));
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|source| ProcError::Read {
            path: p.clone(),
            source,
        })
    };
    let ticks = parse_cpu_ticks(&read(&stat_path)?).ok_or(ProcError::Format {
        path: stat_path,
        what: "utime/stime",
    })?;
    let hwm_kib = parse_vm_hwm_kib(&read(&status_path)?).ok_or(ProcError::Format {
        path: status_path,
        what: "VmHWM",
    })?;
    Ok(ProcUsage {
        cpu_s: ticks as f64 / clock_ticks_per_second(),
        peak_rss_mib: hwm_kib as f64 / 1024.0,
    })
}

/// utime + stime (fields 14 and 15) in clock ticks. The command name (field 2) may contain
/// spaces and parentheses, so fields are counted after its closing parenthesis.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th field here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM:   12345 kB` -> 12345.
fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `sysconf(_SC_CLK_TCK)` through getconf; 100 (the Linux value on every common architecture)
/// when getconf is missing.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_name_with_spaces() {
        let stat = "4242 (pod cert) signer) S 1 4242 4242 0 -1 4194560 500 0 0 0 731 69 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(800));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn vm_hwm_in_kib() {
        let status =
            "Name:\tpodcert-signer\nVmPeak:\t 99999 kB\nVmHWM:\t   40960 kB\nVmRSS:\t 30000 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(40960));
        assert_eq!(parse_vm_hwm_kib("Name: x\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let u = read(std::process::id()).unwrap();
        assert!(u.peak_rss_mib > 0.0);
        assert!(u.cpu_s >= 0.0);
    }
}
