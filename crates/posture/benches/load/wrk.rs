//! Running `wrk` (Debian's package; `bench/run.sh` installs it) with
//! `bench/wrk/rotate-keys.lua`, and reading the summary line the script prints.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::Command;

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub duration_s: f64,
    pub requests_per_second: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers with a status other than 2xx/3xx (wrk's "status" errors).
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
}

/// One wrk invocation.
pub struct Run {
    pub url: String,
    /// One API key per line, rotated over; `None` sends no key.
    pub keys: Option<PathBuf>,
    pub seconds: u64,
    pub connections: u32,
    pub threads: u32,
}

/// The script, from the repository.
fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/wrk/rotate-keys.lua")
}

/// `wrk`'s version line; an error telling how to install it if it is missing.
pub fn version() -> anyhow::Result<String> {
    let output = Command::new("wrk").arg("-v").output().map_err(|_| {
        anyhow::anyhow!("wrk is not installed: `apt-get install -y wrk` (bench/run.sh does)")
    })?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    Ok(text.lines().next().unwrap_or("wrk").trim().to_owned())
}

impl Run {
    /// Runs wrk to the end and returns its summary.
    pub fn execute(&self) -> anyhow::Result<Summary> {
        let output = Command::new("wrk")
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.seconds))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(script())
            .arg(&self.url)
            .env(
                "KEYS_FILE",
                self.keys
                    .as_ref()
                    .map(|p| p.as_os_str().to_owned())
                    .unwrap_or_default(),
            )
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "wrk printed no result ({}): {stdout}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
        Ok(serde_json::from_str(line)?)
    }
}
