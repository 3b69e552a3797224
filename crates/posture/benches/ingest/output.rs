//! Where a benchmark's JSON report goes (shared by the benchmarks): next to
//! the build, `<target>/bench/<file name>`, unless `POSTURE_BENCH_OUT` names a
//! path.

use serde::Serialize;
use std::path::PathBuf;

/// `<target>/bench`: the benchmark binary is `<target>/release/deps/<name>`.
pub fn bench_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("bench")
}

/// Writes `report` as pretty JSON and returns where.
pub fn write_report(file_name: &str, report: &impl Serialize) -> anyhow::Result<PathBuf> {
    let out = match std::env::var_os("POSTURE_BENCH_OUT") {
        Some(path) => PathBuf::from(path),
        None => bench_dir().join(file_name),
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(report)?)?;
    Ok(out)
}
