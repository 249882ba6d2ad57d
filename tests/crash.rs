//! Faster than Sentinel when the server process dies: a master's launcher
//! that sees its `redis-server` exit on its own (the OOM killer, a crash)
//! knows the master is gone and asks the Sentinels for a failover at once,
//! when its last look showed a replica they would promote, no failover
//! running and no fence. Groups run with the contract's default
//! `SENTINEL_DOWN_AFTER_MS=5000`, so anything faster than that is the
//! launcher's doing.

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The contract's default down-after: Sentinel on its own fails a dead
/// master over no sooner than this.
const DOWN_AFTER_MS: u64 = 5000;

/// The bound the test holds the crash failover to: below the down-after,
/// so Sentinel on its own could not have done it (it still needs the odown
/// and a vote after it), and loose enough for a loaded CI machine. The
/// benchmark (P2c) has the tight figure (p99 2.3 s).
const CRASH_BOUND: Duration = Duration::from_millis(DOWN_AFTER_MS - 500);

async fn group(tag: &str, redis: usize) -> Group {
    let mut g = Group::new(tag);
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", DOWN_AFTER_MS.to_string()));
    g.extra.push(("SHUTDOWN_FAILOVER_TIMEOUT_S", "10".into()));
    Group::start_with(g, redis, 3, 1).await
}

/// Waits until every Sentinel knows every replica of `g` as promotable.
async fn sentinels_know_the_replicas(g: &Group, master: &str) {
    let replicas: Vec<String> = g.live_redis().map(Member::addr).filter(|a| a != master).collect();
    let sentinels: Vec<String> = g.live_sentinels().map(Member::addr).collect();
    wait_sentinels_know(&sentinels, &replicas, None, Duration::from_secs(30)).await;
}

/// Waits for the launcher `m` to exit (its server is gone) and returns its
/// exit code and log.
fn launcher_exit(m: &Member, within: Duration) -> (Option<i32>, String) {
    let status = m.proc.wait_exit(within).unwrap_or_else(|| {
        panic!(
            "the launcher still runs {within:?} after its server died:\n{}",
            m.proc.log()
        )
    });
    (status.code(), m.proc.log())
}

/// A replica's server dies: nothing is failed over. Then the master's
/// server is SIGKILLed under a `WAIT 1` writer: the record names a
/// writable master well before the Sentinels' down-after, nothing
/// acknowledged is lost, and the launcher exits with its server's status
/// once the new master is named. Last, SIGTERM of the new master's task
/// hands over as before, without the crash path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_master_server_is_failed_over_at_once() {
    let _serial = SERIAL.lock().await;
    let mut g = group("crash", 4).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    sentinels_know_the_replicas(&g, &master).await;

    // A replica's server dies: its launcher exits; no failover is asked for.
    let (_, v0) = g.record_with_version().await.unwrap();
    let ri = g.redis.iter().position(|m| m.addr() != master).unwrap();
    signal_pid(server_pid(&g.redis[ri].addr()).await, libc::SIGKILL);
    let (code, log) = launcher_exit(&g.redis[ri], Duration::from_secs(10));
    assert_eq!(code, Some(137), "the launcher exits with its server's status:\n{log}");
    assert!(
        !log.contains("CRASH") && !log.contains("failover requested"),
        "a replica's crash asked for a failover:\n{log}"
    );
    assert_eq!(
        g.record_with_version().await,
        Some((master.clone(), v0)),
        "the record changed after a replica's crash"
    );
    assert_eq!(role(&master).await.as_deref(), Ok("master"));

    // The master's server dies.
    let writer = g.start_writer("crash", None, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mi = g.master_index().await.unwrap();
    let c = zk_client().await;
    let (_, _, watch) = c
        .get_and_watch_data(&format!("{}/master", g.root))
        .await
        .expect("watch the record");
    let t0 = Instant::now();
    signal_pid(server_pid(&master).await, libc::SIGKILL);
    if tokio::time::timeout(Duration::from_secs(30), watch.changed())
        .await
        .is_err()
    {
        panic!("the record did not move within 30 s\n{}", g.diagnose().await);
    }
    let record_moved = t0.elapsed();
    let new = g.record().await.unwrap();
    assert_ne!(new, master);
    let writable = wait_for("the new master to take writes", Duration::from_secs(10), || async {
        match redis_cmd(&new, None, &["SET", "crash:probe", "1"]).await {
            Ok(redis::Value::Okay) => Ok(t0.elapsed()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (code, log) = launcher_exit(&g.redis[mi], Duration::from_secs(15));
    assert_eq!(code, Some(137), "the launcher exits with its server's status:\n{log}");
    assert!(
        log.contains("CRASH") && log.contains("crash failover done"),
        "the launcher did not ask for the failover, or did not see it done:\n{log}"
    );
    let ledger = writer.finish().await;
    let lost = missing_keys(&new, None, &ledger.acked).await;
    eprintln!(
        "MEASURE server SIGKILLed as master: record moved {record_moved:?}, writable {writable:?} after the kill (down-after {DOWN_AFTER_MS} ms); WAIT 1 writer: {} acknowledged, {} lost",
        ledger.acked.len(),
        lost.len()
    );
    assert!(
        record_moved <= CRASH_BOUND,
        "the record moved {record_moved:?} after the kill: that is Sentinel's own down-after, not the launcher's failover\n{log}"
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // The group goes on: a replacement joins, and SIGTERM of the new
    // master's task is the hand-over, not a crash.
    g.start_redis();
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    assert_eq!(master, new);
    sentinels_know_the_replicas(&g, &master).await;
    let mi = g.master_index().await.unwrap();
    g.redis[mi].proc.signal(libc::SIGTERM);
    let status = g.redis[mi]
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("the hand-over ends");
    let log = g.redis[mi].proc.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("hand-over done"), "no hand-over:\n{log}");
    assert!(!log.contains("CRASH"), "SIGTERM took the crash path:\n{log}");
}

/// The master's server dies while its only replica is in its first full
/// sync: nothing is asked of the Sentinels (that replica holds no data),
/// the launcher says why and exits at once, and Sentinel's own rule
/// decides: it never promotes the empty replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failover_is_asked_for_while_the_only_replica_syncs() {
    let _serial = SERIAL.lock().await;
    let mut g = group("crash-sync", 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    preload(&master, 5000, 1000).await;
    // Each key takes 2 ms to save: the full sync lasts about 10 s.
    redis_cmd(&master, None, &["CONFIG", "SET", "rdb-key-save-delay", "2000"])
        .await
        .unwrap();
    let i = g.start_redis();
    let replica = g.redis[i].addr();
    wait_for("the replica's first sync to start", Duration::from_secs(20), || async {
        match info_field(&replica, "replication", "master_sync_in_progress")
            .await?
            .as_str()
        {
            "1" => Ok(()),
            other => Err(format!("master_sync_in_progress {other}")),
        }
    })
    .await;
    // The Sentinels know the replica, at priority 0.
    wait_for(
        "every Sentinel to know the replica at priority 0",
        Duration::from_secs(25),
        || async {
            let p = sentinel_priorities(&g, &replica).await?;
            if p.iter().all(|p| p == "0") {
                Ok(())
            } else {
                Err(format!("{p:?}"))
            }
        },
    )
    .await;
    let t0 = Instant::now();
    signal_pid(server_pid(&master).await, libc::SIGKILL);
    let (code, log) = launcher_exit(&g.redis[0], Duration::from_secs(10));
    let took = t0.elapsed();
    assert_eq!(code, Some(137), "{log}");
    assert!(
        log.contains("no failover asked for") && !log.contains("failover requested"),
        "the launcher asked for a failover with no synced replica:\n{log}"
    );
    let why = log
        .lines()
        .find(|l| l.contains("no failover asked for"))
        .unwrap_or_default();
    assert!(why.contains(&replica), "the reason does not name the replica: {why}");
    eprintln!("MEASURE crash with the only replica syncing: launcher exited {took:?} after the kill: {why}");
    // Sentinel's own rule: it finds no good replica.
    wait_for(
        "a Sentinel to give the failover up",
        Duration::from_millis(DOWN_AFTER_MS) + Duration::from_secs(20),
        || async {
            let aborted = g
                .sentinels
                .iter()
                .any(|s| s.proc.log().contains("-failover-abort-no-good-slave"));
            if aborted {
                Ok(())
            } else {
                Err("no -failover-abort-no-good-slave yet".to_string())
            }
        },
    )
    .await;
    assert_eq!(
        role(&replica).await.as_deref(),
        Ok("slave"),
        "the empty replica was promoted"
    );
}

/// A fenced master's server dies: the Sentinels may be failing it over
/// already, so nothing is asked of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_master_crash_asks_for_nothing() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("crash-fenced");
    g.extra.push(("FENCE_AFTER_MS", "1000".into()));
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", "60000".into()));
    let g = Group::start_with(g, 2, 3, 0).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    sentinels_know_the_replicas(&g, &master).await;
    let mi = g.master_index().await.unwrap();
    let pids: Vec<i32> = g.sentinels.iter().map(|s| s.proc.pid()).collect();
    let mut sentinel_pids = vec![];
    for s in &g.sentinels {
        sentinel_pids.push(server_pid(&s.addr()).await);
    }
    let _thaw = Thaw {
        pids: pids.iter().chain(&sentinel_pids).copied().collect(),
        zk: false,
    };
    for p in pids.iter().chain(&sentinel_pids) {
        signal_pid(*p, libc::SIGSTOP);
    }
    g.redis[mi].proc.wait_log("FENCED", Duration::from_secs(10)).await;
    signal_pid(server_pid(&master).await, libc::SIGKILL);
    let (code, log) = launcher_exit(&g.redis[mi], Duration::from_secs(10));
    assert_eq!(code, Some(137), "{log}");
    let why = log
        .lines()
        .find(|l| l.contains("no failover asked for"))
        .unwrap_or_else(|| panic!("no 'no failover asked for' line:\n{log}"));
    assert!(why.contains("fenced"), "not refused for the fence: {why}");
    assert!(!log.contains("failover requested"), "{log}");
}
