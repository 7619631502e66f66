//! Process and machine counters for the benchmark stats: wall time, this process's user and
//! system CPU time (`/proc/self/stat`), the machine's total and idle CPU ticks (`/proc/stat`,
//! which the driver turns into `server_cpu_usage`), and resident memory (`/proc/self/status`).
//! Linux only; elsewhere the counters read as zero.

use std::time::Instant;

/// Clock ticks per second of `/proc` CPU counters (`USER_HZ`, 100 on every Linux we target).
const TICKS_PER_SEC: f64 = 100.0;

/// This process's (user, system) CPU seconds.
pub fn process_cpu() -> (f64, f64) {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
    let Some(rest) = s.rfind(')').map(|i| &s[i + 1..]) else {
        return (0.0, 0.0);
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick =
        |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / TICKS_PER_SEC;
    (tick(11), tick(12))
}

/// The machine's (total, idle) CPU ticks since boot.
pub fn machine_cpu() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = s.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total, idle)
}

/// Resident set size of this process, in bytes.
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A point from which elapsed wall and CPU time are measured (reset by a `Mark`).
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    /// Wall clock.
    pub wall: Instant,
    /// Process user CPU seconds.
    pub user: f64,
    /// Process system CPU seconds.
    pub system: f64,
    /// Machine total CPU ticks.
    pub total_ticks: u64,
    /// Machine idle CPU ticks.
    pub idle_ticks: u64,
}

impl Snapshot {
    /// The counters now.
    pub fn now() -> Snapshot {
        let (user, system) = process_cpu();
        let (total_ticks, idle_ticks) = machine_cpu();
        Snapshot {
            wall: Instant::now(),
            user,
            system,
            total_ticks,
            idle_ticks,
        }
    }
}
