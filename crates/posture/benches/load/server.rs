//! The processes the harness measures: the release `posture serve` and the
//! bare axum "hello" (this same binary re-run with `--hello`), with their
//! readiness checks and a graceful stop.

use crate::database;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the release `posture serve` on `port` against `database`.
pub fn start_posture(database: &str, port: u16) -> anyhow::Result<Child> {
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

/// Stops a child the harness started: SIGTERM (the server flushes usage on a
/// graceful stop), up to 15 s to exit, then SIGKILL.
pub fn stop(child: &mut Child) {
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
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `url` until it answers 2xx (30 s at most).
pub async fn wait_for(url: &str) -> anyhow::Result<()> {
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
pub fn hello(port: u16) -> anyhow::Result<()> {
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
