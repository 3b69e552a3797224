//! PostgreSQL LISTEN with reconnection: a dedicated connection receives the
//! notifications of one channel and hands each payload to a callback, until
//! shutdown. A broken connection is replaced after a second (meanwhile the
//! callers' own fallbacks — polling, defaults — apply).

use super::Store;
use posture_domain::TenantId;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgConnection;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The channel of control messages to every running server (operator commands,
/// account changes).
pub const CONTROL_CHANNEL: &str = "posture_control";

/// The start of the control message saying a tenant's account changed; the
/// tenant's id follows.
pub const ACCOUNT_CHANGED: &str = "account-changed:";

/// Tells every server, when the transaction on `connection` commits, that the
/// tenant's tier, status or keys changed, so they drop what they cached about
/// its credentials and organization (PostgreSQL delivers notifications on
/// commit only, and not at all on rollback).
pub async fn account_changed(
    connection: &mut PgConnection,
    tenant_id: TenantId,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CONTROL_CHANNEL)
        .bind(format!("{ACCOUNT_CHANGED}{tenant_id}"))
        .execute(connection)
        .await
        .map(|_| ())
}

/// Calls `on_payload` for every notification on `channel` until `shutdown`.
pub async fn listen(
    store: Store,
    channel: &'static str,
    shutdown: CancellationToken,
    mut on_payload: impl FnMut(&str) + Send,
) {
    loop {
        let session = async {
            // Its own connection, outside the pool: a listener holds its
            // connection for good, and requests must not lose a slot to it.
            let own = PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with((*store.pool().connect_options()).clone());
            let mut listener = PgListener::connect_with(&own).await?;
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
