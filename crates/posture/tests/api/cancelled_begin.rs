//! A tenant transaction whose caller stops waiting while its `BEGIN` is on
//! the way (a client that hung up, a request past its timeout) leaves nothing
//! open on the pooled connection: the next borrower is in no transaction and
//! under no tenant. sqlx 0.8 alone gave the connection back inside the
//! transaction it never learned had begun; under load that showed as job
//! claims refused in a read-only transaction and, after the first error, every
//! statement on the connection failing until it was recycled.

use crate::support::database;
use crate::support::late_reply_proxy::LateReplyProxy;
use crate::support::TestApp;
use posture::store::{PoolSettings, Store};
use posture_domain::Tier;
use std::time::Duration;

/// What the next statement on the connection finds: the tenant setting,
/// whether the transaction is read-only, and whether the statement runs in a
/// transaction of its own (`now()` is the start of the current transaction:
/// one begun by the cancelled `BEGIN` is older than its delayed reply).
async fn session_state(store: &Store) -> (Option<String>, String, bool) {
    sqlx::query_as(
        "SELECT nullif(current_setting('app.tenant_id', true), ''),
                current_setting('transaction_read_only'),
                clock_timestamp() - now() < interval '50 milliseconds'",
    )
    .fetch_one(store.pool())
    .await
    .expect("the connection answers a plain statement")
}

/// Returns once the pool's one connection is back in it.
async fn idle_in_pool(store: &Store) {
    let back = async {
        while store.pool().num_idle() == 0 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), back)
        .await
        .expect("the connection returns to the pool");
}

#[tokio::test]
async fn a_begin_nobody_waits_for_any_more_leaves_no_transaction_on_the_connection() {
    let app = TestApp::spawn().await;
    let tenant = app.create_tenant(Tier::Free).await;
    let (host, port) = database::server();
    let upstream = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve the database host")
        .next()
        .expect("an address for the database host");
    let proxy = LateReplyProxy::start(upstream).await;
    // One connection, so every statement below meets the one the cancelled
    // begin used.
    let settings = PoolSettings {
        max_connections: 1,
        ..PoolSettings::for_command(&posture::config::Config::default())
    };
    let url = format!(
        "postgres://posture_app:posture_app@127.0.0.1:{}/{}",
        proxy.port(),
        app.database.name
    );
    let store = Store::connect_lazy(&url, &settings).unwrap();
    // Connect first (and recently: a connection idle for a second is pinged
    // before it is handed out, and the begin below must be cut short in its
    // `BEGIN`, not in that ping).
    store
        .begin_tenant_read(tenant.id)
        .await
        .expect("a first transaction")
        .end_read();
    assert_eq!(session_state(&store).await, (None, "off".into(), true));

    // The pool checks a connection given back with a round trip of its own,
    // in the background: let that finish, or its reply is the one delayed and
    // the begin below is cut short still waiting for the connection.
    idle_in_pool(&store).await;
    proxy.delay_replies(Duration::from_millis(400));
    let cut_short = tokio::time::timeout(
        Duration::from_millis(100),
        store.begin_tenant_read(tenant.id),
    )
    .await;
    assert!(
        cut_short.is_err(),
        "the begin should still be waiting for its reply"
    );
    proxy.delay_replies(Duration::ZERO);

    assert_eq!(
        session_state(&store).await,
        (None, "off".into(), true),
        "(tenant setting, read-only, own transaction) of the next statement on the connection"
    );
    // And a write transaction on it writes and commits (inside the
    // read-only transaction left open, the insert was refused).
    let mut tx = store.begin_tenant(tenant.id).await.unwrap();
    sqlx::query(
        "INSERT INTO assets (tenant_id, id, kind, name, criticality)
         VALUES (current_setting('app.tenant_id')::uuid, gen_random_uuid(), 'repository',
                 'github.com/acme/after-a-cancelled-begin', 'low')",
    )
    .execute(tx.conn())
    .await
    .expect("a write after the cancelled begin");
    tx.commit().await.unwrap();
}
