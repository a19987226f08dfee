//! Facts about this machine and this process, via `sysinfo` and, where it lacks them, /proc.

use serde::Serialize;
use sysinfo::System;

/// What the machine is, for headers of reports and `coordinator info`.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub logical_cores: usize,
    pub physical_cores: Option<usize>,
    pub cpu: String,
    pub memory_total_mib: u64,
    pub os: String,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Machine {
        // sysinfo 0.40 reports an unsupported platform as an error: facts become "unknown".
        let sys = System::new().ok().map(|mut sys| {
            sys.refresh_cpu_all();
            sys.refresh_memory();
            sys
        });
        let cpu = sys
            .as_ref()
            .and_then(|sys| sys.cpus().first().map(|c| c.brand().trim().to_string()))
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            physical_cores: System::physical_core_count().ok(),
            cpu,
            memory_total_mib: sys.as_ref().map_or(0, |s| s.total_memory() / (1024 * 1024)),
            os: System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
            kernel: System::kernel_version().unwrap_or_else(|_| "unknown".into()),
        }
    }
}

/// The default worker count: the logical cores this process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// This process's peak resident set (VmHWM), in KiB; Linux only.
pub fn peak_rss_kib() -> Option<u64> {
    proc_field_kib("/proc/self/status", "VmHWM:")
}

/// Resident memory of process `pid` (VmRSS), in KiB; Linux only.
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_field_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Proportional set size of `pid` (shared pages divided among their users), in KiB:
/// what a process really adds. sysinfo does not report it; /proc/PID/smaps_rollup does.
pub fn pss_kib(pid: u32) -> Option<u64> {
    proc_field_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

fn proc_field_kib(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
