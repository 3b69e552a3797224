//! CPU use of the server, PostgreSQL and Redis, the time the hypervisor took
//! from the machine (steal), and the server's peak RSS, read from `/proc`
//! (Linux only, like the machine this runs on).

use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`;
/// 100 on every Linux this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// Cores used over an interval (1.0 = one core busy throughout).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    pub server: f64,
    pub postgres: f64,
    pub redis: f64,
    /// Cores' worth of time the hypervisor gave to other guests while this
    /// machine's processes were ready to run (`steal` in `/proc/stat`): on
    /// a shared host it can be a third of the machine, and a run measured so
    /// says little about the code.
    pub steal: f64,
}

/// CPU ticks used so far, per process group.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    server: u64,
    /// Per PostgreSQL or Redis process: backends come and go during a run.
    postgres: HashMap<u32, u64>,
    redis: HashMap<u32, u64>,
    /// The whole machine's steal ticks.
    steal: u64,
}

/// utime + stime of a process, and its command name.
fn ticks(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces; fields follow the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based), so
    // indexes 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// The machine's steal ticks so far: the eighth number of `/proc/stat`'s
/// `cpu` line (user, nice, system, idle, iowait, irq, softirq, steal).
fn steal_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().find(|line| line.starts_with("cpu "))?;
            line.split_ascii_whitespace().nth(8)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Samples the server (`server_pid`) and every postgres and redis-server process.
pub fn sample(server_pid: u32) -> Sample {
    let mut sample = Sample {
        server: ticks(server_pid).map_or(0, |(_, t)| t),
        steal: steal_ticks(),
        ..Sample::default()
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return sample;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((name, used)) = ticks(pid) {
            if name == "postgres" || name.starts_with("postgres:") {
                sample.postgres.insert(pid, used);
            } else if name.starts_with("redis-server") {
                sample.redis.insert(pid, used);
            }
        }
    }
    sample
}

impl Sample {
    /// Cores used between `before` and this sample, `elapsed` apart. A process
    /// that started in between counts from zero.
    pub fn since(&self, before: &Sample, elapsed: Duration) -> CpuUse {
        let seconds = elapsed.as_secs_f64().max(0.001);
        let cores = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / seconds;
        let group = |now: &HashMap<u32, u64>, then: &HashMap<u32, u64>| {
            now.iter()
                .map(|(pid, used)| used.saturating_sub(then.get(pid).copied().unwrap_or(0)))
                .sum::<u64>()
        };
        CpuUse {
            server: cores(self.server.saturating_sub(before.server)),
            postgres: cores(group(&self.postgres, &before.postgres)),
            redis: cores(group(&self.redis, &before.redis)),
            steal: cores(self.steal.saturating_sub(before.steal)),
        }
    }
}

/// The process's peak resident set (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
