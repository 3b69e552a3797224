//! What the harness was asked for: its command line.

use serde::Serialize;
use std::path::PathBuf;

/// Where the reference stack lives unless `--reference-dir` says otherwise.
const DEFAULT_REFERENCE_DIR: &str = "/work/shared/reference-stack";

/// The harness's settings, with the sizes as defaults.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Enterprise load tenants (each with a read key).
    pub tenants: usize,
    /// Findings of an ordinary load tenant.
    pub findings: usize,
    /// Tenants with `big_findings` findings each.
    pub big_tenants: usize,
    pub big_findings: usize,
    /// Tenants of the other tiers (free, basic, premium in turn) that no
    /// scenario loads: the tenant table is mixed, as in production.
    pub other_tenants: usize,
    pub seconds: u64,
    pub warm_up: u64,
    pub connections: u32,
    pub threads: u32,
    /// Keep the seeded database (for profiling by hand); its name is printed.
    pub keep_database: bool,
    /// The scan spike ([`crate::spike`]); `spike_scans == 0` skips it.
    pub spike_scans: usize,
    /// Tenants the scans come from (the last load tenants, so the big ones
    /// are spared when there are enough others); each gets a write key.
    pub spike_tenants: usize,
    pub spike_findings: usize,
    /// Cached reads per second sent, on a fixed schedule, during the spike.
    pub spike_read_rate: u32,
    /// Submissions in flight at once.
    pub spike_concurrency: usize,
    /// Run the reference stack ([`crate::reference`]) first, from this
    /// directory; `None` with `--no-reference`.
    pub reference_dir: Option<PathBuf>,
    /// An `ingest.json` whose rows join the report ([`crate::ingest_rows`]).
    pub ingest_json: Option<PathBuf>,
}

impl Settings {
    /// Parses the arguments after the program name.
    pub fn parse(args: &[String]) -> anyhow::Result<Settings> {
        let mut settings = Settings {
            tenants: 1_000,
            findings: 1_700,
            big_tenants: 3,
            big_findings: 100_000,
            other_tenants: 30,
            seconds: 10,
            warm_up: 2,
            connections: 64,
            threads: 2,
            keep_database: false,
            spike_scans: 1_000,
            spike_tenants: 50,
            spike_findings: 100,
            spike_read_rate: 1_000,
            spike_concurrency: 64,
            reference_dir: Some(
                std::env::var_os("POSTURE_REFERENCE_STACK")
                    .map_or_else(|| PathBuf::from(DEFAULT_REFERENCE_DIR), PathBuf::from),
            ),
            ingest_json: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--tenants" => settings.tenants = value()?.parse()?,
                "--findings" => settings.findings = value()?.parse()?,
                "--big-tenants" => settings.big_tenants = value()?.parse()?,
                "--big-findings" => settings.big_findings = value()?.parse()?,
                "--other-tenants" => settings.other_tenants = value()?.parse()?,
                "--seconds" => settings.seconds = value()?.parse()?,
                "--warm-up" => settings.warm_up = value()?.parse()?,
                "--connections" => settings.connections = value()?.parse()?,
                "--threads" => settings.threads = value()?.parse()?,
                "--keep-database" => settings.keep_database = true,
                "--spike-scans" => settings.spike_scans = value()?.parse()?,
                "--spike-tenants" => settings.spike_tenants = value()?.parse()?,
                "--spike-findings" => settings.spike_findings = value()?.parse()?,
                "--spike-read-rate" => settings.spike_read_rate = value()?.parse()?,
                "--spike-concurrency" => settings.spike_concurrency = value()?.parse()?,
                "--no-reference" => settings.reference_dir = None,
                "--reference-dir" => settings.reference_dir = Some(value()?.into()),
                "--ingest-json" => settings.ingest_json = Some(value()?.into()),
                // `cargo bench` passes `--bench`; anything else unknown is refused.
                "--bench" => {}
                other => anyhow::bail!("unknown argument {other}"),
            }
        }
        anyhow::ensure!(
            settings.tenants >= 1 && settings.seconds >= 3,
            "at least 1 tenant and 3 s"
        );
        anyhow::ensure!(
            settings.big_tenants <= settings.tenants,
            "--big-tenants exceeds --tenants"
        );
        if settings.spike_scans > 0 {
            anyhow::ensure!(
                (1..=settings.tenants).contains(&settings.spike_tenants),
                "--spike-tenants must be 1 to --tenants"
            );
            anyhow::ensure!(
                settings.spike_findings >= 1
                    && settings.spike_read_rate >= 1
                    && settings.spike_concurrency >= 1,
                "--spike-findings, --spike-read-rate and --spike-concurrency must be at least 1"
            );
        }
        Ok(settings)
    }
}
