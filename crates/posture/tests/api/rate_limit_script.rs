//! The limit script on its own, against a real Redis: a call's slots are one
//! member of the minute's log, the minute counts slots (not members), and a
//! lease's unused slots come back exactly — from the minute, the day and the
//! month — however often they are given back.

use crate::rate_limits::at;
use crate::support::redis::RedisServer;
use chrono::Duration as ChronoDuration;
use posture::limits::window::{self, GiveBack, Limits, Mode, WindowCall, WindowReply};
use posture_domain::TenantId;
use redis::aio::MultiplexedConnection;

async fn run(connection: &mut MultiplexedConnection, call: &WindowCall) -> WindowReply {
    let raw = match call.evalsha().query_async(connection).await {
        Err(error) if window::is_no_script(&error) => call.eval().query_async(connection).await,
        other => other,
    }
    .unwrap_or_else(|error| panic!("the script failed: {error}"));
    window::parse_reply(raw)
}

/// A connection to the test's own Redis.
async fn connect(redis: &RedisServer) -> MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// (minute, day, month) after the call.
fn counted(reply: &WindowReply) -> (u64, u64, u64) {
    (reply.counts.minute, reply.counts.day, reply.counts.month)
}

#[tokio::test]
async fn a_lease_is_one_member_and_its_unused_slots_come_back_exactly() {
    let redis = RedisServer::start().await;
    let mut connection = connect(&redis).await;
    let tag = window::tenant_tag(TenantId::new_random());
    let limits = Limits {
        minute: 1_000,
        day: Some(5_000),
        month: Some(50_000),
        day_floor: 0,
        month_floor: 0,
    };
    let start = at("2026-11-23T10:00:00Z");
    let ms = |millis: i64| start + ChronoDuration::milliseconds(millis);
    let call = |millis: i64, prefix: &str, mode: Mode| {
        WindowCall::new(&tag, limits, ms(millis), prefix, mode)
    };

    // A lease of 40 slots dated a second ahead: one member.
    let lease = call(0, "lease-a", Mode::Check).lease(40, 1_000);
    let reply = run(&mut connection, &lease).await;
    assert_eq!((reply.granted, counted(&reply)), (40, (40, 40, 40)));
    let members: u64 = redis::cmd("ZCARD")
        .arg(format!("{tag}:rl:slots"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(members, 1, "the lease's 40 slots share one member");
    let single = run(&mut connection, &call(1, "single", Mode::Check)).await;
    assert_eq!((single.granted, counted(&single)), (1, (41, 41, 41)));

    // The lease used 10 of its slots; the next lease gives back the other 30.
    let (day_key, month_key) = lease.period_keys();
    let unused = GiveBack {
        prefix: "lease-a".to_owned(),
        first: 10,
        count: 30,
        day_key: day_key.to_owned(),
        month_key: month_key.to_owned(),
    };
    let next = call(2, "lease-b", Mode::Check)
        .lease(5, 1_000)
        .giving_back(&unused);
    let reply = run(&mut connection, &next).await;
    assert_eq!((reply.granted, counted(&reply)), (5, (16, 16, 16)));
    // Given back twice (a retried call), the slots are taken off once.
    let again = run(
        &mut connection,
        &call(3, "peek", Mode::Peek).giving_back(&unused),
    )
    .await;
    assert_eq!(counted(&again), (16, 16, 16));

    // A call whose reply never came: all it asked for is given back, and
    // what Redis granted of it (here everything) comes off.
    let lost = call(4, "lease-c", Mode::Check).lease(20, 1_000);
    assert_eq!(counted(&run(&mut connection, &lost).await), (36, 36, 36));
    let back = call(5, "peek", Mode::Peek).giving_back(&lost.everything_asked());
    assert_eq!(counted(&run(&mut connection, &back).await), (16, 16, 16));
    // One that Redis never carried out gives back nothing.
    let never_ran = call(6, "lease-d", Mode::Check).lease(20, 1_000);
    let back = call(7, "peek", Mode::Peek).giving_back(&never_ran.everything_asked());
    assert_eq!(counted(&run(&mut connection, &back).await), (16, 16, 16));

    // Each member leaves the window a minute after the time it is dated:
    // the single request's (dated now) before the leases' (a second ahead).
    let later = run(&mut connection, &call(60_500, "peek", Mode::Peek)).await;
    assert_eq!(later.counts.minute, 15, "lease-a's 10 and lease-b's 5");
    let after_all = run(&mut connection, &call(61_100, "peek", Mode::Peek)).await;
    assert_eq!(
        (after_all.counts.minute, after_all.counts.day),
        (0, 16),
        "the minute empties; the day keeps what was served"
    );
}

/// The slots the log's members stand for, counted the slow way (every
/// member's `:<n>`), as the script did on every call before it kept a sum.
async fn recounted(connection: &mut MultiplexedConnection, tag: &str) -> u64 {
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{tag}:rl:slots"))
        .arg(0)
        .arg(-1)
        .query_async(connection)
        .await
        .unwrap();
    members
        .iter()
        .map(|member| member.rsplit(':').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Asserts that the minute a call reported is what the log holds.
async fn assert_adds_up(
    connection: &mut MultiplexedConnection,
    tag: &str,
    reply: &WindowReply,
    what: &str,
) {
    assert_eq!(
        reply.counts.minute,
        recounted(connection, tag).await,
        "{what}: the kept sum against a recount of the log"
    );
}

/// The minute's count is kept beside the log rather than summed on every
/// call: through grants, partial and repeated give-backs, refusals and
/// expiry it stays equal to a recount of the log, and a sum that is lost
/// (or does not add up) is recounted rather than trusted.
#[tokio::test]
async fn the_kept_minute_sum_always_equals_a_recount_of_the_log() {
    let redis = RedisServer::start().await;
    let mut connection = connect(&redis).await;
    let tag = window::tenant_tag(TenantId::new_random());
    let sum_key = format!("{tag}:rl:slots:sum");
    let limits = Limits {
        minute: 100,
        day: None,
        month: None,
        day_floor: 0,
        month_floor: 0,
    };
    let start = at("2026-11-23T10:00:00Z");
    let call = |millis: i64, prefix: &str, mode: Mode| {
        WindowCall::new(
            &tag,
            limits,
            start + ChronoDuration::milliseconds(millis),
            prefix,
            mode,
        )
    };
    // Leases every 5 s for 80 s of a sliding minute; every other one gives
    // back part of the one before it (once more after a retry).
    let mut previous: Option<(String, u64)> = None;
    for step in 0..16_i64 {
        let now = step * 5_000;
        let prefix = format!("lease-{step}");
        let mut lease = call(now, &prefix, Mode::Check).lease(30, 1_000);
        let unused = previous
            .take()
            .filter(|_| step % 2 == 1)
            .map(|(prefix, granted)| GiveBack {
                prefix,
                first: granted / 3,
                count: granted - granted / 3,
                day_key: lease.period_keys().0.to_owned(),
                month_key: lease.period_keys().1.to_owned(),
            });
        if let Some(unused) = &unused {
            lease = lease.giving_back(unused);
        }
        let reply = run(&mut connection, &lease).await;
        assert_adds_up(&mut connection, &tag, &reply, &prefix).await;
        if let Some(unused) = &unused {
            let again = call(now + 1, "retry", Mode::Peek).giving_back(unused);
            let reply = run(&mut connection, &again).await;
            assert_adds_up(&mut connection, &tag, &reply, "a give-back retried").await;
        }
        previous = Some((prefix, reply.granted));
    }
    // The window held 100 at most: some of those leases were cut short or refused.
    let full = run(
        &mut connection,
        &call(80_000, "full", Mode::Check).lease(200, 0),
    )
    .await;
    assert!(full.counts.minute <= 100);
    assert_adds_up(&mut connection, &tag, &full, "a full window").await;

    // A lost sum is recounted from the log; so is one that does not add up.
    let _: () = redis::cmd("DEL")
        .arg(&sum_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    let lost = run(&mut connection, &call(80_001, "peek", Mode::Peek)).await;
    assert_eq!(lost.counts.minute, full.counts.minute);
    assert_adds_up(&mut connection, &tag, &lost, "a lost sum").await;
    let _: () = redis::cmd("SET")
        .arg(&sum_key)
        .arg(-7)
        .query_async(&mut connection)
        .await
        .unwrap();
    let wrong = run(&mut connection, &call(80_002, "peek", Mode::Peek)).await;
    assert_eq!(wrong.counts.minute, full.counts.minute);
    assert_adds_up(&mut connection, &tag, &wrong, "a sum that did not add up").await;

    // Once everything has left the window, log and sum are gone together.
    let empty = run(&mut connection, &call(200_000, "peek", Mode::Peek)).await;
    assert_eq!(empty.counts.minute, 0);
    let sum_exists: bool = redis::cmd("EXISTS")
        .arg(&sum_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!sum_exists, "no sum is left without its log");
}
