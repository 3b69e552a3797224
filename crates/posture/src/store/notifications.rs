//! PostgreSQL LISTEN with reconnection: a dedicated connection receives the
//! notifications of one channel and hands each payload to a callback, until
//! shutdown. A broken connection is replaced after a second (meanwhile the
//! callers' own fallbacks — polling, defaults — apply).

use super::Store;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Calls `on_payload` for every notification on `channel` until `shutdown`.
pub async fn listen(
    store: Store,
    channel: &'static str,
    shutdown: CancellationToken,
    mut on_payload: impl FnMut(&str) + Send,
) {
    loop {
        let session = async {
            let mut listener = PgListener::connect_with(store.pool()).await?;
            listener.listen(channel).await?;
            loop {
                let notification = listener.recv().await?;
                on_payload(notification.payload());
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = session => {
                if let Err(error) = result {
                    tracing::warn!(%error, channel, "notifications interrupted; reconnecting");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
