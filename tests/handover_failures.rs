//! The SIGTERM hand-over's failure paths (docs/contract.md 6.2, planned
//! hand-over) against real servers: a master whose only replica is still
//! in its first full sync stops WITHOUT a failover, and nothing empty is
//! promoted after it; a hand-over that cannot finish stops the server at
//! `SHUTDOWN_FAILOVER_TIMEOUT_S` all the same.
//!
//! Each scenario stops a group's master, so they take `SERIAL` and never
//! run beside each other.
//!
//! Once the hand-over has given up and forwarded SIGTERM, `redis-server`
//! itself would wait up to its `shutdown-timeout` (10 s by default) for
//! replicas whose offset lags (here: the syncing one, the frozen one); the
//! launcher sets it to what is left of the budget first (measured before
//! that: stops 12.1 s and 14.1 s after SIGTERM with a budget of 4 s).

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `SHUTDOWN_FAILOVER_TIMEOUT_S` of these groups: small, since what is
/// tested is what happens when the hand-over runs out of it, but not too
/// small for a loaded machine. A frozen replica costs each of the
/// hand-over's looks its 1 s probe timeout, and with 4 s, on a machine
/// whose two cores three busy loops shared, the deadline came once in 8
/// runs before the second look, so before the pause the test checks for.
const BUDGET_S: u64 = 8;
/// What the launcher may take beyond its budget to stop: forwarding
/// SIGTERM, and a server with no persistence exiting (a few ms here), with
/// room for a loaded machine; the shipped apps give 10 s more (a 20 s
/// budget in a 30 s kill grace period).
const EXIT_MARGIN: Duration = Duration::from_secs(2);
/// The hand-over keeps this much of the budget (`RESERVE` in
/// src/policy/switchover.rs, at most half the budget) for the steps after a
/// synced replica was found: without one it gives up when only that is left.
const RESERVE: Duration = Duration::from_secs(2);
/// How long after the budget a launcher still running is waited for, so
/// that a late exit is measured rather than cut off: Redis's own
/// `shutdown-timeout` (10 s by default) and a margin.
const LATE: Duration = Duration::from_secs(15);

/// SIGTERMs the master's task `m` and waits for it to exit with status 0
/// within the budget; returns how long it took and its log.
fn sigterm_exits_within_budget(m: &Member) -> (Duration, String) {
    let t0 = Instant::now();
    m.proc.signal(libc::SIGTERM);
    let status = m
        .proc
        .wait_exit(Duration::from_secs(BUDGET_S) + LATE)
        .unwrap_or_else(|| {
            panic!(
                "the launcher still runs {:?} after SIGTERM:\n{}",
                Duration::from_secs(BUDGET_S) + LATE,
                m.proc.log()
            )
        });
    let took = t0.elapsed();
    let log = m.proc.log();
    assert_eq!(status.code(), Some(0), "{status:?}\n{log}");
    assert!(
        took <= Duration::from_secs(BUDGET_S) + EXIT_MARGIN,
        "exited {took:?} after SIGTERM, budget {BUDGET_S} s:\n{}",
        stop_lines(&log)
    );
    (took, log)
}

/// The lines of `log` that tell how the server was stopped: the
/// hand-over's and the server's own about its shutdown.
fn stop_lines(log: &str) -> String {
    log.lines()
        .filter(|l| {
            l.contains("hand-over")
                || l.contains("signal")
                || l.contains("shutdown")
                || l.contains("shutting down")
                || l.contains("replicas")
                || l.contains("exit")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The lines of `log` that the hand-over wrote, for failure messages.
fn hand_over_lines(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("hand-over") || l.contains("failover") || l.contains("paused"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The master's only replica is in its first full sync (stretched to about
/// 50 s) when the master is asked to stop. The hand-over waits for it with
/// writes flowing, gives up when only `RESERVE` of the budget is left, and
/// stops the server without asking any Sentinel for a failover. After it,
/// the Sentinels try a failover of their own and find no replica they may
/// promote: the empty replica never becomes master, neither through them
/// nor through its own launcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_no_synced_replica_stops_without_a_failover_and_promotes_nothing() {
    let _serial = SERIAL.lock().await;
    const KEYS: usize = 10_000;
    let mut g = Group::new("ho-unsynced");
    g.extra.push(("SHUTDOWN_FAILOVER_TIMEOUT_S", BUDGET_S.to_string()));
    let mut g = Group::start_with(g, 1, 3, 0).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    preload(&master, KEYS, 1000).await;
    // 5 ms per key in the master's RDB stream (a Redis debug setting): the
    // replica's first sync takes about 50 s, far longer than this test
    // needs it to last.
    redis_cmd(&master, None, &["CONFIG", "SET", "rdb-key-save-delay", "5000"])
        .await
        .unwrap();
    let i = g.start_redis();
    let replica = g.redis[i].addr();
    // The Sentinels learn of a replica from the master's INFO, every 10 s,
    // and show it at priority 100 until their first INFO of the replica
    // itself: wait until every one has its real priority, 0, so that the
    // check below is about Sentinels that know the replica.
    let priorities = wait_for(
        "every Sentinel to know the syncing replica at its priority",
        Duration::from_secs(25),
        || async {
            let syncing = info_field(&replica, "replication", "master_sync_in_progress").await?;
            if syncing != "1" {
                return Err(format!(
                    "the replica is not syncing (master_sync_in_progress {syncing})"
                ));
            }
            let p = sentinel_priorities(&g, &replica).await?;
            if p.iter().all(|p| p == "0") {
                Ok(p)
            } else {
                Err(format!("the Sentinels' view of it: {p:?}"))
            }
        },
    )
    .await;
    let keys_before = dbsize(&replica).await.unwrap();
    assert_eq!(keys_before, 0, "the syncing replica already holds keys");

    let m = &g.redis[0];
    let master_pid = server_pid(&master).await;
    let (took, log) = sigterm_exits_within_budget(m);
    // It waited for the replica until only the reserve was left; it did
    // not skip the hand-over at once.
    assert!(
        took >= Duration::from_secs(BUDGET_S) - RESERVE - Duration::from_millis(300),
        "exited {took:?} after SIGTERM: it did not wait for the replica:\n{}",
        hand_over_lines(&log)
    );
    assert!(!pid_alive(master_pid), "the old master's server still runs");
    let gave_up = log
        .lines()
        .find(|l| l.contains("no safe hand-over"))
        .unwrap_or_else(|| panic!("no 'no safe hand-over' error:\n{}", hand_over_lines(&log)));
    // It names the replica and why it may not take over: its sync.
    assert!(
        gave_up.contains(&replica) && gave_up.contains("sync"),
        "the error does not name the syncing replica {replica} and its sync: {gave_up}"
    );
    for never in ["writes paused", "failover requested", "hand-over done"] {
        assert!(
            !log.contains(never),
            "'{never}' with no synced replica:\n{}",
            hand_over_lines(&log)
        );
    }

    // The Sentinels now see the master down and try a failover of their
    // own: it must end in -failover-abort-no-good-slave, the replica never
    // a master. Watched for at least 8 s after the exit too: the replica's
    // launcher re-points a replica whose master is gone for 5 s (its role
    // guard), and must not promote it then either.
    let exited = Instant::now();
    let mut samples = 0;
    let mut abort = None;
    loop {
        samples += 1;
        let r = role(&replica).await;
        assert_ne!(
            r.as_deref(),
            Ok("master"),
            "the empty replica was promoted {:?} after the old master stopped",
            exited.elapsed()
        );
        if abort.is_none() {
            let logs: String = g.live_sentinels().map(|s| s.proc.log()).collect();
            abort = logs
                .lines()
                .find(|l| l.contains("-failover-abort-no-good-slave"))
                .map(str::to_string);
        }
        if abort.is_some() && exited.elapsed() >= Duration::from_secs(8) {
            break;
        }
        // down-after, the vote, the attempt: 3-5 s here.
        assert!(
            exited.elapsed() < Duration::from_millis(DOWN_AFTER_MS + 20_000),
            "no Sentinel reported -failover-abort-no-good-slave within {:?}\n{}",
            exited.elapsed(),
            g.diagnose().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys_after = dbsize(&replica).await.unwrap();
    assert!(
        keys_after < KEYS as i64,
        "the replica finished its sync after all ({keys_after} keys): the scenario did not hold"
    );
    eprintln!(
        "MEASURE hand-over with no synced replica: exit 0 after {took:?} (budget {BUDGET_S} s); \
         the Sentinels had the replica at priority {priorities:?}; it held {keys_after} of {KEYS} keys and \
         was never master in {samples} samples; Sentinel: {}",
        abort.unwrap_or_default().trim()
    );
}

/// A hand-over that cannot finish: its only replica is synced and every
/// Sentinel sees it promotable, but it is frozen (SIGSTOP) and a write the
/// master took since has not reached it, so it can never catch up with
/// the paused master. The hand-over runs into `SHUTDOWN_FAILOVER_TIMEOUT_S`
/// and the server stops then, without a failover. The Sentinels'
/// down-after is long, so that none of them marks the frozen replica down
/// (which would end the hand-over early, as unsafe) or fails over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_that_cannot_finish_stops_the_server_at_the_budget() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("ho-timeout");
    g.extra.push(("SHUTDOWN_FAILOVER_TIMEOUT_S", BUDGET_S.to_string()));
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", "60000".into()));
    let g = Group::start_with(g, 2, 3, 0).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let mi = g.master_index().await.unwrap();
    let replica = g.redis[1 - mi].addr();
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    // The hand-over needs a Sentinel that has seen the replica's restored
    // priority (its INFO poll, every 10 s).
    wait_sentinels_know(
        &sentinels,
        std::slice::from_ref(&replica),
        None,
        Duration::from_secs(25),
    )
    .await;

    let replica_pid = server_pid(&replica).await;
    signal_pid(replica_pid, libc::SIGSTOP);
    let cont = Thaw {
        pids: vec![replica_pid],
        zk: false,
    };
    redis_cmd(&master, None, &["SET", "after-the-freeze", "1"])
        .await
        .unwrap();
    let lag = async {
        let info = redis_cmd(&master, None, &["INFO", "replication"]).await?;
        let text = value_text(&info).unwrap_or_default();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.trim_end().strip_prefix(k)?.strip_prefix(':').map(str::to_string))
        };
        let offset: i64 = field("master_repl_offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let line = field("slave0").unwrap_or_default();
        let acked: i64 = line
            .split(',')
            .find_map(|kv| kv.strip_prefix("offset="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MAX);
        Ok::<_, String>((offset - acked, line))
    }
    .await
    .unwrap();
    assert!(lag.0 > 0, "the frozen replica is not behind the master: {lag:?}");

    let m = &g.redis[mi];
    let master_pid = server_pid(&master).await;
    let (took, log) = sigterm_exits_within_budget(m);
    // The whole budget was spent trying.
    assert!(
        took >= Duration::from_secs(BUDGET_S) - Duration::from_millis(300),
        "exited {took:?} after SIGTERM, before the budget of {BUDGET_S} s ran out:\n{}",
        hand_over_lines(&log)
    );
    assert!(!pid_alive(master_pid), "the old master's server still runs");
    assert!(
        log.contains("writes paused for the hand-over")
            && log.contains("hand-over did not finish within SHUTDOWN_FAILOVER_TIMEOUT_S"),
        "not the timeout path:\n{}",
        hand_over_lines(&log)
    );
    for never in ["failover requested", "hand-over done", "no safe hand-over"] {
        assert!(!log.contains(never), "'{never}':\n{}", hand_over_lines(&log));
    }
    // No failover happened: every Sentinel still names the old master, and
    // the replica, thawed, is still a replica.
    drop(cont);
    for s in &sentinels {
        assert_eq!(
            sentinel_master(s).await.unwrap(),
            master,
            "sentinel {s} names another master"
        );
    }
    assert_eq!(role(&replica).await.unwrap(), "slave");
    eprintln!(
        "MEASURE hand-over that cannot finish: exit 0 after {took:?} (budget {BUDGET_S} s); the frozen replica was {} bytes behind",
        lag.0
    );
}
