//! A TCP proxy in front of PostgreSQL that a test can stop and start, to
//! simulate the database going away without touching the shared server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards `127.0.0.1:<port>` to the real server while running.
pub struct DbProxy {
    port: u16,
    upstream: SocketAddr,
    running: Mutex<Option<Running>>,
}

struct Running {
    acceptor: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl DbProxy {
    /// Starts a proxy to the test PostgreSQL server, and points `config` at
    /// `database` through it (as the application role).
    pub async fn in_front_of(
        database: &super::database::TestDatabase,
        config: &mut posture::config::Config,
    ) -> DbProxy {
        use std::net::ToSocketAddrs;
        let (host, port) = super::database::server();
        let upstream = (host.as_str(), port)
            .to_socket_addrs()
            .expect("resolving the database server")
            .next()
            .expect("an address for the database server");
        let proxy = DbProxy::start(upstream).await;
        config.database_url = posture::config::SecretUrl::new(format!(
            "postgres://posture_app:posture_app@127.0.0.1:{}/{}",
            proxy.port(),
            database.name
        ));
        proxy
    }

    /// Starts a proxy on a free port.
    pub async fn start(upstream: SocketAddr) -> DbProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let proxy = DbProxy {
            port,
            upstream,
            running: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Refuses new connections and cuts every open one, as a stopped server would.
    pub fn stop(&self) {
        if let Some(running) = self.running.lock().unwrap().take() {
            running.acceptor.abort();
            for connection in running.connections.lock().unwrap().drain(..) {
                connection.abort();
            }
        }
    }

    /// Accepts connections again on the same port.
    pub async fn resume(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind proxy port");
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = connections.clone();
        let upstream = self.upstream;
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tracked.lock().unwrap().push(task);
            }
        });
        *self.running.lock().unwrap() = Some(Running {
            acceptor,
            connections,
        });
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.stop();
    }
}
