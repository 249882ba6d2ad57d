//! The online migration of a running Redis group to Valkey (issue 27), as a
//! Marathon app update does it: the Sentinel app's tasks, then the redis
//! app's, are replaced one at a time by tasks running Valkey, each
//! replacement passing its readiness check (`/ready`) before the next task
//! is stopped. With keys preloaded and a `WAIT 1` writer throughout: no
//! acknowledged write lost, no preloaded key lost, one failover (the
//! master's hand-over, to a synced Valkey replica), and Sentinels of both
//! engines monitoring the group together on the way.
//!
//! The old Redis tasks run at `--replica-priority 50`, the Valkey ones at
//! Redis's default 100: left to itself, Sentinel would hand the master to
//! the old Redis replica, which is stopped next, a second failover. So
//! the test fails whenever the hand-over does not choose the Valkey
//! replacement itself (tried: with the hand-over's preference removed it
//! fails on its failover count and on the new master).
//!
//! Needs `valkey-server` and `valkey-sentinel` on PATH (`scripts/deps.sh`);
//! without them the test fails and says so.

mod common;

use std::time::{Duration, Instant};

use common::engine::*;
use common::group::*;
use common::rolling::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_group_moves_to_valkey_online() {
    let (redis_v, valkey_v) = (REDIS.version(), VALKEY.version());
    let t_all = Instant::now();
    let mut g = Group::new("migrate");
    g.admin = true;
    // The Marathon values: 20 s for the hand-over, 30 s kill grace.
    g.extra.push(("SHUTDOWN_FAILOVER_TIMEOUT_S", "20".into()));
    g.extra.push(("ENGINE", "redis".into()));
    g.redis_args = vec!["--replica-priority".into(), "50".into()];
    let mut g = Group::start_with(g, 3, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let t = Instant::now();
    preload(&master, PRELOAD_KEYS, PRELOAD_VALUE).await;
    let preload_took = t.elapsed();
    wait_preloaded(&g, PRELOAD_KEYS).await;
    let mi = g.master_index().await.unwrap();
    let writer = g.start_writer("migrate", None, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, v0) = g.record_with_version().await.unwrap();

    // The new app version: every task from now on runs Valkey.
    g.extra.push(("ENGINE", "valkey".into()));
    g.redis_args = vec!["--replica-priority".into(), "100".into()];

    // The Sentinel app first, one task at a time, each replacement ready
    // (it monitors the recorded master, CKQUORUM passes) before the next
    // stop. In between the group has Sentinels of both engines.
    let mut mixed_seen = vec![];
    for i in 0..3 {
        replace_sentinel(&mut g, i).await;
        let mut engines = vec![];
        for s in g.live_sentinels() {
            engines.push(engine_of(&s.addr()).await.unwrap().0);
        }
        engines.sort();
        mixed_seen.push(engines);
    }
    assert!(
        mixed_seen
            .iter()
            .any(|e| e.contains(&"redis".to_string()) && e.contains(&"valkey".to_string())),
        "never a group with Sentinels of both engines: {mixed_seen:?}"
    );

    // The redis app, one task at a time, the master second: its hand-over
    // finds the first Valkey replacement synced and ready.
    let replicas: Vec<usize> = (0..3).filter(|i| *i != mi).collect();
    let order = [replicas[0], mi, replicas[1]];
    let steps = rolling_restart(&mut g, &order, Duration::from_secs(30), Gate::Ready).await;
    let master = g.wait_healthy(Duration::from_secs(120)).await;
    let ledger = writer.finish().await;
    let (_, v1) = g.record_with_version().await.unwrap();
    let losses = Losses::on(&master, &ledger).await;
    // The first Valkey replacement (index 3) was the only Valkey replica,
    // synced and ready, when the master was stopped.
    let first_valkey = g.redis[3].addr();
    let old_master_log = g.redis[mi].proc.log();
    let handover = old_master_log
        .lines()
        .find(|l| l.contains("hand-over done"))
        .unwrap_or("no hand-over line")
        .to_string();
    eprintln!(
        "MEASURE migration redis {redis_v} -> valkey {valkey_v}: preload {PRELOAD_KEYS} keys in {preload_took:?}; Sentinels seen {mixed_seen:?}; \
         steps {steps:?}; record version {v0} -> {v1}; master now {master} (first Valkey replica {first_valkey}); \
         {}; total {:?}",
        losses.summary(&ledger),
        t_all.elapsed()
    );
    for m in g.live_redis().chain(g.live_sentinels()) {
        assert_eq!(
            engine_of(&m.addr()).await,
            Ok(("valkey".to_string(), valkey_v.clone())),
            "{} after the migration",
            m.addr()
        );
    }
    for (k, s) in steps.iter().enumerate() {
        assert!(
            s.saw_unpromotable
                .as_deref()
                .is_some_and(|w| w.contains("replica-priority 0")),
            "step {k}: the syncing Valkey replacement was never seen unpromotable: {s:?}"
        );
    }
    losses.assert_none(&ledger, &master);
    assert_eq!(
        v1 - v0,
        1,
        "{} failovers (record version {v0} -> {v1}); exactly 1 expected\n{}",
        v1 - v0,
        g.diagnose().await
    );
    assert_eq!(
        master, first_valkey,
        "the master was handed to {master}, not to the synced Valkey replica {first_valkey}: {handover}"
    );
    assert!(handover.contains(&first_valkey), "{handover}");
}
