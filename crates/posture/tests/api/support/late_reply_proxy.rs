//! A TCP proxy in front of a server (Redis, PostgreSQL) whose replies can be
//! made late: every command is forwarded at once, so the server carries it
//! out, but while a delay is set each reply reaches the client only that long
//! after the server sent it — past the client's timeout, a call the server
//! did that the client gave up on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Forwards `127.0.0.1:<port>` to `upstream`, replies delayed on demand.
pub struct LateReplyProxy {
    port: u16,
    delay_ms: Arc<AtomicU64>,
    queue: Arc<Queue>,
}

/// Replies read from the server and not yet written to the client.
#[derive(Default)]
struct Queue {
    pending: AtomicUsize,
    emptied: Notify,
}

impl LateReplyProxy {
    /// Starts forwarding to `upstream` on a free port.
    pub async fn start(upstream: SocketAddr) -> LateReplyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let queue = Arc::new(Queue::default());
        let (delay_in_task, queue_in_task) = (delay_ms.clone(), queue.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let forwarding =
                    forward(client, server, delay_in_task.clone(), queue_in_task.clone());
                tokio::spawn(forwarding);
            }
        });
        LateReplyProxy {
            port,
            delay_ms,
            queue,
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Replies the server sends from now on reach the client `delay` late.
    pub fn delay_replies(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// Returns once every reply the server has sent so far reached the client.
    pub async fn delivered(&self) {
        loop {
            let emptied = self.queue.emptied.notified();
            if self.queue.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            emptied.await;
        }
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    delay_ms: Arc<AtomicU64>,
    queue: Arc<Queue>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let commands = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    // Each reply is dated when the server sent it and written at that time plus
    // the delay, in order: late, never lost or reordered.
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let written = queue.clone();
    let replies = tokio::spawn(async move {
        while let Some((due, bytes)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            let result = client_write.write_all(&bytes).await;
            if written.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                written.emptied.notify_waiters();
            }
            if result.is_err() {
                break;
            }
        }
    });
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(read @ 1..) = server_read.read(&mut buffer).await {
        let due = Instant::now() + Duration::from_millis(delay_ms.load(Ordering::SeqCst));
        queue.pending.fetch_add(1, Ordering::SeqCst);
        if sender.send((due, buffer[..read].to_vec())).is_err() {
            break;
        }
    }
    drop(sender);
    let _ = replies.await;
    commands.abort();
}
