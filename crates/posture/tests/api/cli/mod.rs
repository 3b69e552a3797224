//! The real `posture` binary's operator commands (`admin tenant …`, `admin key …`,
//! `demo`) against a test database, with their effects checked through a running
//! server on the same database and, as the owner, in the tables themselves.
//!
//! The server and the CLI are separate processes, so the CLI cannot clear the
//! server's auth cache: changes to keys and tenants must reach the API within the
//! cache TTL (at most 5 s). Those checks poll with a bounded deadline.

mod keys;
mod tenants;

use crate::support::database::TestDatabase;
use crate::support::{assert_problem, test_config, TestApp};
use posture::config::Config;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished `posture` process left behind.
#[derive(Debug)]
pub(super) struct Run {
    pub(super) success: bool,
    pub(super) code: Option<i32>,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Run {
    /// Asserts the command succeeded and returns its stdout.
    fn ok(self) -> String {
        assert!(
            self.success,
            "posture failed ({:?}):\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts the command failed readably and returns its stderr.
    fn failed(self) -> String {
        assert!(
            !self.success,
            "posture should have failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        let stderr = self.stderr.trim().to_owned();
        assert!(!stderr.is_empty(), "a failure must say why on stderr");
        assert!(
            !stderr.contains("panicked"),
            "a failure must not be a panic: {stderr}"
        );
        assert!(
            !stderr.contains("posture_owner:posture_owner"),
            "stderr leaks a password: {stderr}"
        );
        stderr
    }
}

/// Runs the `posture` binary with `args` against `database` (owner and app URLs),
/// with a 30 s watchdog.
pub(super) async fn posture(database: &TestDatabase, args: &[&str]) -> Run {
    posture_with(database, args, &[]).await
}

/// [`posture`] with extra environment variables (which override the defaults).
pub(super) async fn posture_with(
    database: &TestDatabase,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_posture"));
    command
        .args(args)
        .env("POSTURE_ADMIN_DATABASE_URL", database.owner_url())
        .env("DATABASE_URL", database.app_url())
        .env("POSTURE_DB_CONNECT_DEADLINE_SECS", "5")
        .env("POSTURE_LOG", "warn")
        .env_remove("POSTURE_CONFIG")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let label = args.join(" ");
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("starting the posture binary");
        // Drain both pipes on their own threads so a chatty child never blocks.
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for posture") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`posture {label}` did not finish within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            success: status.success(),
            code: status.code(),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    })
    .await
    .expect("the CLI task")
}

/// A server on a fresh database, after `adjust` edits its configuration.
pub(super) async fn spawn(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let database = TestDatabase::create().await;
    let mut config = test_config(&database);
    adjust(&mut config);
    TestApp::spawn_on(database, config).await
}

/// The token printed on the line starting with `marker`.
pub(super) fn token_after(stdout: &str, marker: &str) -> String {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(marker))
        .unwrap_or_else(|| panic!("no line starting with {marker:?} in:\n{stdout}"));
    let token = line.rsplit(' ').next().unwrap().trim().to_owned();
    assert!(token.starts_with("sp_live_") && token.len() == 80, "{line}");
    token
}

/// Creates tenant `slug` (basic) and a key with `scopes` through the CLI; returns the key.
pub(super) async fn tenant_with_key(database: &TestDatabase, slug: &str, scopes: &str) -> String {
    posture(
        database,
        &[
            "admin", "tenant", "create", "--slug", slug, "--name", "Acme", "--tier", "basic",
        ],
    )
    .await
    .ok();
    let stdout = posture(
        database,
        &["admin", "key", "create", slug, "--scopes", scopes],
    )
    .await
    .ok();
    token_after(&stdout, "key (shown only once):")
}

/// Polls `GET path` with `key` until `done` holds for (status, body), for at most
/// `within`; returns how long it took. No fixed sleeps: 100 ms between attempts.
pub(super) async fn poll_until(
    app: &TestApp,
    path: &str,
    key: &str,
    within: Duration,
    what: &str,
    done: impl Fn(u16, &Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let response = app.get(path, key).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if done(status, &body) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; last answer {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) async fn owner_connection(database: &TestDatabase) -> PgConnection {
    PgConnection::connect(&database.owner_url())
        .await
        .expect("owner connection")
}
