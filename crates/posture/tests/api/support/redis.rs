//! A Redis server of a test's own, on a free port, that the test can kill,
//! pause (SIGSTOP: the port stays open, nothing answers — a hung Redis),
//! resume and restart, without touching the shared one on 6379.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server binary; tests never skip, so a missing one is a loud failure.
const REDIS_SERVER: &str = "redis-server";
/// Longest wait for a started server to answer PING.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// A `redis-server` process owned by the test; killed on drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// Its output (stdout and stderr), for the panic message when it fails.
    log: PathBuf,
    /// Arguments beyond the defaults (e.g. cluster mode).
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(&[]).await
    }

    /// Starts a cluster-enabled node (slots unassigned: see `redis-cli
    /// --cluster create`), its node file in the temporary directory.
    pub async fn start_cluster_node() -> RedisServer {
        let nodes_file = format!(
            "posture-test-cluster-{}.conf",
            uuid::Uuid::new_v4().simple()
        );
        RedisServer::start_with(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &nodes_file,
        ])
        .await
    }

    /// Starts a server with `extra_args` on a free port.
    pub async fn start_with(extra_args: &[&str]) -> RedisServer {
        // The port is free when probed, but another process may take it before
        // the server binds it: then try another.
        let mut last_failure = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                port,
                child: None,
                log: std::env::temp_dir().join(format!(
                    "posture-test-redis-{port}-{}.log",
                    uuid::Uuid::new_v4().simple()
                )),
                extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            };
            match server.launch().await {
                Ok(()) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("could not start {REDIS_SERVER} on a free port: {last_failure}");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL, no shutdown: everything it held is lost) and
    /// reaps it. The port refuses connections afterwards.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL, which also ends a stopped process.
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and new ones are
    /// accepted by the kernel, but no command gets an answer.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Starts the server again on the same port (killing it first if it still
    /// runs) and waits until it answers PING. It starts empty.
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(failure) = self.launch().await {
            panic!(
                "could not restart {REDIS_SERVER} on port {}: {failure}",
                self.port
            );
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{signal}: the Redis server is not running"));
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap_or_else(|error| panic!("running `kill {signal} {pid}`: {error}"));
        assert!(status.success(), "`kill {signal} {pid}` failed: {status}");
    }

    /// Starts the process on `self.port` and waits for PONG.
    async fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(&self.log)
            .map_err(|error| format!("creating {}: {error}", self.log.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("cloning the log handle: {error}"))?;
        let child = Command::new(REDIS_SERVER)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                &std::env::temp_dir().to_string_lossy(),
            ])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run `{REDIS_SERVER}` ({error}). The caching tests need a Redis \
                     server binary on PATH: install it (e.g. `apt-get install redis-server`) \
                     or run `bash scripts/setup.sh`."
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if ping(self.port).await {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!(
                    "{REDIS_SERVER} exited ({status}) on port {}: {}",
                    self.port,
                    self.log_tail()
                ));
            }
            if started.elapsed() > READY_DEADLINE {
                self.kill();
                return Err(format!(
                    "{REDIS_SERVER} did not answer PING on port {} within {READY_DEADLINE:?}: {}",
                    self.port,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("binding port 0 to find a free port")
}

/// Whether a server on `port` answers PING within 200 ms.
async fn ping(port: u16) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(200), exchange).await,
        Ok(Some(true))
    )
}
