//! Beginning a transaction so that a caller who stops waiting cannot leave
//! it open on a pooled connection.
//!
//! sqlx 0.8 counts a transaction as open only once the reply to its `BEGIN`
//! has been read. A future dropped while that reply is on its way — a client
//! that hung up, a request past its timeout — has already sent the `BEGIN`,
//! so the server is in a transaction that sqlx does not know of: nothing
//! rolls it back, and the pool's check of a connection given back (a bare
//! round trip, which does not look at the transaction status) hands it out
//! again. The next borrower's statements then ran inside it — under the
//! first one's tenant setting and access mode (`cannot execute UPDATE in a
//! read-only transaction`), and after its first error every statement on the
//! connection failed (`current transaction is aborted`) until the connection
//! was recycled. Seen under load when wrk closed its connections; reported
//! upstream as sqlx issue 4393.
//!
//! [`Beginning`] polls the `BEGIN` in place, so the usual path costs nothing
//! extra; dropped before it finished, it hands the rest of it to a task of
//! its own, which reads the reply and drops the transaction, whose rollback
//! sqlx then sends before the connection goes back to the pool.

use sqlx::{PgPool, Postgres, Transaction};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What a begin resolves to.
type Begun = Result<Transaction<'static, Postgres>, sqlx::Error>;

/// A begin in flight, owning what it uses.
type BeginFuture = Pin<Box<dyn Future<Output = Begun> + Send>>;

/// A transaction being begun; see the [module](self) for why it is finished
/// even when nobody waits for it any more.
pub(super) struct Beginning {
    /// The begin while it runs; `None` once it finished.
    begin: Option<BeginFuture>,
    /// Whether it was ever polled: one never polled sent nothing, and is
    /// dropped rather than started.
    started: bool,
}

impl Beginning {
    /// Begins a transaction on a connection of `pool`, with `statement` in
    /// place of a plain `BEGIN` if given.
    pub(super) fn on(pool: &PgPool, statement: Option<String>) -> Beginning {
        let pool = pool.clone();
        Beginning {
            begin: Some(Box::pin(async move {
                match statement {
                    Some(statement) => pool.begin_with(statement).await,
                    None => pool.begin().await,
                }
            })),
            started: false,
        }
    }
}

impl Future for Beginning {
    type Output = Begun;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Begun> {
        self.started = true;
        let Some(begin) = self.begin.as_mut() else {
            panic!("Beginning polled after it finished");
        };
        let begun = std::task::ready!(begin.as_mut().poll(cx));
        self.begin = None;
        Poll::Ready(begun)
    }
}

impl Drop for Beginning {
    fn drop(&mut self) {
        let Some(begin) = self.begin.take() else {
            return;
        };
        if !self.started {
            return;
        }
        // Without a runtime (it is shutting down) the connection is dropped
        // with it: the pool is closing, and nothing reuses it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // Dropping the transaction queues its rollback, which sqlx
                // sends with the check of the connection given back.
                drop(begin.await);
            });
        }
    }
}
