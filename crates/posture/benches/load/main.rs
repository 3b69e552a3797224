//! The load harness (issue 8; `bash bench/run.sh`): the release `posture`
//! binary as its own process against a seeded database, the local PostgreSQL
//! and Redis, measured by `wrk` over real HTTP with the same settings a bare
//! axum "hello" (the limit on this machine) is measured with in the same run.
//!
//! 1. Creates and migrates a database of its own (dropped at the end).
//! 2. Seeds tenants ([`seed`]): enterprise load tenants with about 2,000
//!    findings each on average (a few with 100,000), and a free tenant for
//!    the 429 path; one read key each.
//! 3. Starts `posture serve` (workers on, rate limits on), waits until every
//!    tenant's posture view is computed.
//! 4. Runs each scenario with `wrk` ([`wrk`]), sampling the CPU of the server,
//!    PostgreSQL and Redis over the run and the server's peak RSS ([`procstat`]).
//! 5. Prints a Markdown table and writes the JSON next to the build
//!    (`$CARGO_TARGET_DIR/bench/load.json`, or `$POSTURE_BENCH_OUT`).
//!
//! Not yet here (issue 8 continues): the scan spike, the ingestion rows, the
//! reference stack's run, and profiling.

#[path = "../ingest/database.rs"]
mod database;
#[path = "../ingest/machine.rs"]
mod machine;
#[path = "../ingest/output.rs"]
mod output;
mod procstat;
mod seed;
mod wrk;

use serde::Serialize;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the harness was asked for.
#[derive(Debug, Clone, Serialize)]
struct Settings {
    tenants: usize,
    /// Findings of an ordinary load tenant.
    findings: usize,
    /// Tenants with `big_findings` findings each.
    big_tenants: usize,
    big_findings: usize,
    seconds: u64,
    warm_up: u64,
    connections: u32,
    threads: u32,
    /// Keep the seeded database (for profiling by hand); its name is printed.
    keep_database: bool,
}

impl Settings {
    fn parse(args: &[String]) -> anyhow::Result<Settings> {
        let mut settings = Settings {
            tenants: 1_000,
            findings: 1_700,
            big_tenants: 3,
            big_findings: 100_000,
            seconds: 15,
            warm_up: 3,
            connections: 64,
            threads: 2,
            keep_database: false,
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
                "--seconds" => settings.seconds = value()?.parse()?,
                "--warm-up" => settings.warm_up = value()?.parse()?,
                "--connections" => settings.connections = value()?.parse()?,
                "--threads" => settings.threads = value()?.parse()?,
                "--keep-database" => settings.keep_database = true,
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
        Ok(settings)
    }
}

/// One measured scenario.
#[derive(Debug, Clone, Serialize)]
struct ScenarioResult {
    name: String,
    path: String,
    /// What wrk measured.
    load: wrk::Summary,
    /// Cores used over the measured run.
    cpu: procstat::CpuUse,
    /// requests/s as a share of the bare axum hello's.
    of_hello: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: Option<String>,
    memory_mib: Option<u64>,
    postgres: String,
    wrk: String,
}

#[derive(Debug, Serialize)]
struct Report {
    date: String,
    machine: Machine,
    settings: Settings,
    seeded: seed::Seeded,
    /// The posture server's peak resident memory over every scenario.
    server_peak_rss_mib: Option<f64>,
    scenarios: Vec<ScenarioResult>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The same binary serves the bare hello when re-run with `--hello`.
    if let Some(port) = args.iter().position(|a| a == "--hello") {
        let port: u16 = args
            .get(port + 1)
            .ok_or_else(|| anyhow::anyhow!("--hello needs a port"))?
            .parse()?;
        return hello(port);
    }
    let settings = Settings::parse(&args)?;
    let wrk_version = wrk::version()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let database = runtime.block_on(database::create())?;
    eprintln!("bench: database {database} created and migrated");
    let outcome = runtime.block_on(run(&settings, &database));
    if settings.keep_database {
        eprintln!("bench: database {database} kept (drop it by hand)");
    } else {
        runtime.block_on(database::drop(&database))?;
        eprintln!("bench: database {database} dropped");
    }
    let (postgres, seeded, rss, scenarios) = outcome?;
    let report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: machine::cpu_model(),
            memory_mib: machine::memory_mib(),
            postgres,
            wrk: wrk_version,
        },
        settings,
        seeded,
        server_peak_rss_mib: rss,
        scenarios,
    };
    print_markdown(&report);
    let out = output::write_report("load.json", &report)?;
    println!("\nJSON: {}", out.display());
    Ok(())
}

type Outcome = (String, seed::Seeded, Option<f64>, Vec<ScenarioResult>);

async fn run(settings: &Settings, database: &str) -> anyhow::Result<Outcome> {
    let postgres = database::server_version(database).await?;
    let started = Instant::now();
    let seeded = seed::seed(database, settings).await?;
    eprintln!(
        "bench: seeded {} tenants, {} findings in {:.1?}",
        seeded.tenants,
        seeded.findings,
        started.elapsed()
    );
    let dir = std::env::temp_dir().join(format!("posture-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let load_keys = dir.join("load-keys.txt");
    std::fs::write(&load_keys, seeded.load_keys.join("\n"))?;
    let free_key = dir.join("free-key.txt");
    std::fs::write(&free_key, &seeded.free_key)?;

    // The bare hello first, alone on the machine.
    let hello_port = free_port()?;
    let mut hello = Command::new(std::env::current_exe()?)
        .args(["--hello", &hello_port.to_string()])
        .stdout(Stdio::null())
        .spawn()?;
    wait_for(&format!("http://127.0.0.1:{hello_port}/hello")).await?;
    let mut scenarios = Vec::new();
    let hello_result = scenario(
        settings,
        "bare axum hello (the limit)",
        &format!("http://127.0.0.1:{hello_port}"),
        "/hello",
        None,
        hello.id(),
    )?;
    stop(&mut hello);
    let hello_rps = hello_result.load.requests_per_second;
    scenarios.push(hello_result);

    let port = free_port()?;
    let mut server = start_posture(database, port)?;
    let base = format!("http://127.0.0.1:{port}");
    let ready = async {
        wait_for(&format!("{base}/health/live")).await?;
        seed::wait_for_posture(database, seeded.tenants, Duration::from_secs(600)).await
    };
    if let Err(error) = ready.await {
        stop(&mut server);
        return Err(error);
    }
    let plan: [(&str, &str, &PathBuf); 3] = [
        ("cached read: GET /v1/posture", "/v1/posture", &load_keys),
        (
            "database read: GET /v1/findings?limit=50",
            "/v1/findings?limit=50",
            &load_keys,
        ),
        (
            "429 path: one free tenant over its limit",
            "/v1/posture",
            &free_key,
        ),
    ];
    for (name, path, keys) in plan {
        match scenario(settings, name, &base, path, Some(keys), server.id()) {
            Ok(mut result) => {
                result.of_hello =
                    (hello_rps > 0.0).then(|| result.load.requests_per_second / hello_rps);
                scenarios.push(result);
            }
            Err(error) => {
                stop(&mut server);
                return Err(error);
            }
        }
    }
    let rss = procstat::peak_rss_mib(server.id());
    stop(&mut server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((postgres, seeded, rss, scenarios))
}

/// Warms up, then measures one scenario while sampling CPU.
fn scenario(
    settings: &Settings,
    name: &str,
    base: &str,
    path: &str,
    keys: Option<&PathBuf>,
    server_pid: u32,
) -> anyhow::Result<ScenarioResult> {
    eprintln!("bench: {name}");
    let run = |seconds: u64| wrk::Run {
        url: format!("{base}{path}"),
        keys: keys.cloned(),
        seconds,
        connections: settings.connections,
        threads: settings.threads,
    };
    run(settings.warm_up).execute()?;
    let before = procstat::sample(server_pid);
    let started = Instant::now();
    let load = run(settings.seconds).execute()?;
    let cpu = procstat::sample(server_pid).since(&before, started.elapsed());
    Ok(ScenarioResult {
        name: name.to_owned(),
        path: path.to_owned(),
        load,
        cpu,
        of_hello: None,
    })
}

/// Starts the release `posture serve` on `port` against `database`.
fn start_posture(database: &str, port: u16) -> anyhow::Result<Child> {
    let binary = std::env::var("POSTURE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            PathBuf::from(target).join("release").join("posture")
        });
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build it with `cargo build --release --bin posture` (bench/run.sh does)",
        binary.display()
    );
    let redis_host = std::env::var("POSTURE_REDIS_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let redis_port = std::env::var("POSTURE_REDIS_PORT").unwrap_or_else(|_| "6379".into());
    let child = Command::new(binary)
        .arg("serve")
        .env("DATABASE_URL", database::url("posture_app", database))
        .env(
            "POSTURE_ADMIN_DATABASE_URL",
            database::url("posture_owner", database),
        )
        .env("POSTURE_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", format!("redis://{redis_host}:{redis_port}"))
        .env("POSTURE_LOG", "warn")
        .env("POSTURE_CACHE_WARM_TENANTS", "0")
        // The free tenant's 429 scenario needs them; enterprise tenants have
        // 1,000 a minute each.
        .env("POSTURE_RATE_LIMITS_ENABLED", "true")
        .stdout(Stdio::null())
        .spawn()?;
    Ok(child)
}

fn stop(child: &mut Child) {
    // SIGTERM for a graceful stop (the server flushes usage); then wait.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A port nothing listens on now (bound, then released for the child).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `url` until it answers 2xx (30 s at most).
async fn wait_for(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{url} did not answer within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bare axum "hello": what this machine allows an HTTP server at all.
fn hello(port: u16) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}

fn print_markdown(report: &Report) {
    println!(
        "\n{} on {} CPUs ({}), {} MiB, PostgreSQL {}, {}; wrk -t{} -c{} -d{}s (warm-up {} s)\n",
        report.date,
        report.machine.cpus,
        report.machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        report.machine.memory_mib.unwrap_or(0),
        report.machine.postgres,
        report.machine.wrk,
        report.settings.threads,
        report.settings.connections,
        report.settings.seconds,
        report.settings.warm_up,
    );
    println!("| scenario | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | errors | of hello | CPU server | CPU postgres | CPU redis |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for result in &report.scenarios {
        let load = &result.load;
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
            result.name,
            load.requests,
            load.requests_per_second,
            load.p50_ms,
            load.p90_ms,
            load.p99_ms,
            load.max_ms,
            load.non_2xx,
            load.socket_errors,
            result
                .of_hello
                .map_or("—".to_owned(), |share| format!("{:.0} %", share * 100.0)),
            result.cpu.server,
            result.cpu.postgres,
            result.cpu.redis,
        );
    }
    println!(
        "\nSeeded: {} tenants, {} findings. Server peak RSS: {}. CPU in cores (2 = the whole machine); the hello row's \"server\" is the hello process.",
        report.seeded.tenants,
        report.seeded.findings,
        report
            .server_peak_rss_mib
            .map_or("unknown".to_owned(), |mib| format!("{mib:.0} MiB")),
    );
}
