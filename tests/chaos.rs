//! The chaos suite: one group (3 rzk-redis, 3 rzk-sentinel, 2 rzk-watcher)
//! goes through the failures production brings, one after another, while
//! writers keep a ledger of acknowledged writes. After each scenario the
//! group must have exactly one master, a record equal to the Sentinels'
//! view and every live replica linked; the lost-write count is measured.
//!
//! CI runs one round. For a longer run:
//!   CHAOS_ROUNDS=3 cargo test --test chaos -- --nocapture
//! This binary has its own ZooKeeper (two scenarios pause or restart it).

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

const SESSION_MS: u64 = 2000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    KillMaster,
    HangMaster,
    HangMasterWithMinReplicas,
    TermMaster,
    KillSentinel,
    KillWatcherDuringFailover,
    ZkPause,
    ZkRestart,
}

impl Scenario {
    const ALL: [Scenario; 8] = [
        Scenario::KillMaster,
        Scenario::HangMaster,
        Scenario::HangMasterWithMinReplicas,
        Scenario::TermMaster,
        Scenario::KillSentinel,
        Scenario::KillWatcherDuringFailover,
        Scenario::ZkPause,
        Scenario::ZkRestart,
    ];

    /// `WAIT 1` makes a write count only once a replica has it; scenarios
    /// that show what happens to plain acknowledged writes do without.
    fn wait_replicas(self) -> usize {
        match self {
            Scenario::KillMaster | Scenario::KillWatcherDuringFailover => 1,
            _ => 0,
        }
    }

    /// Whether losing an acknowledged write is a failure here. After a hang,
    /// the old master wakes up believing it is master and a client with a
    /// stale view can write to it until it is demoted: with asynchronous
    /// replication that is measured, not forbidden (min-replicas-to-write
    /// narrows it to the instant before the old master notices its replicas
    /// are gone).
    fn must_not_lose(self) -> bool {
        !matches!(self, Scenario::HangMaster | Scenario::HangMasterWithMinReplicas)
    }
}

struct Outcome {
    scenario: Scenario,
    acked: usize,
    lost: usize,
    failed: usize,
    longest_gap: Duration,
    recovered_in: Duration,
}

/// The index of the live master's launcher and the master's address.
async fn master(g: &Group) -> (usize, String) {
    let i = g.master_index().await.expect("a master");
    (i, g.redis[i].addr())
}

async fn wait_record_moves(g: &Group, old: &str, within: Duration) {
    wait_for("the record to name a new master", within, || async {
        match g.record().await {
            Some(r) if r != old && role(&r).await.as_deref() == Ok("master") => Ok(()),
            other => Err(format!("record {other:?}, old {old}")),
        }
    })
    .await;
}

async fn config_set_all(g: &Group, pairs: &[(&str, &str)]) {
    for m in g.live_redis() {
        for (k, v) in pairs {
            redis_cmd(&m.addr(), None, &["CONFIG", "SET", k, v]).await.unwrap();
        }
    }
}

/// Starts replacements until the group is 3 + 3 + 2 again.
fn restore(g: &mut Group) {
    while g.live_redis().count() < 3 {
        g.start_redis();
    }
    while g.live_sentinels().count() < 3 {
        g.start_sentinel();
    }
    while g.watchers.iter().filter(|w| w.proc.is_running()).count() < 2 {
        g.start_watcher();
    }
}

async fn run(g: &mut Group, s: Scenario, round: u32) -> Outcome {
    g.wait_healthy(Duration::from_secs(90)).await;
    let tag = format!("r{round}-{s:?}");
    let writer = g.start_writer(&tag, None, s.wait_replicas());
    // A client with a stale view: it keeps using the master it first found.
    let sticky = g.start_writer_with(&format!("{tag}-sticky"), None, s.wait_replicas(), true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let budget = Duration::from_millis(DOWN_AFTER_MS + FAILOVER_TIMEOUT_MS + 2000);
    let t0 = Instant::now();
    match s {
        Scenario::KillMaster => {
            let (i, old) = master(g).await;
            g.redis[i].proc.signal(libc::SIGKILL);
            wait_record_moves(g, &old, budget).await;
        }
        Scenario::HangMaster | Scenario::HangMasterWithMinReplicas => {
            if s == Scenario::HangMasterWithMinReplicas {
                config_set_all(g, &[("min-replicas-to-write", "1"), ("min-replicas-max-lag", "2")]).await;
            }
            let (_, old) = master(g).await;
            let pid: i32 = info_field(&old, "server", "process_id").await.unwrap().parse().unwrap();
            // SAFETY: plain kill(2) on a test process.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            wait_record_moves(g, &old, budget).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
            // The old master wakes up believing it is master, until the
            // Sentinels demote it.
            wait_for("the old master to be demoted", Duration::from_secs(15), || async {
                match role(&old).await {
                    Ok(r) if r == "slave" => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
        Scenario::TermMaster => {
            let (i, old) = master(g).await;
            g.redis[i].proc.signal(libc::SIGTERM);
            let status = g.redis[i]
                .proc
                .wait_exit(Duration::from_secs(30))
                .expect("launcher exit");
            assert_eq!(status.code(), Some(0), "{}", g.redis[i].proc.log());
            wait_record_moves(g, &old, budget).await;
        }
        Scenario::KillSentinel => {
            let i = g.sentinels.iter().position(|m| m.proc.is_running()).unwrap();
            g.sentinels[i].proc.signal(libc::SIGKILL);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Scenario::KillWatcherDuringFailover => {
            let (i, old) = master(g).await;
            g.redis[i].proc.signal(libc::SIGKILL);
            tokio::time::sleep(Duration::from_millis(DOWN_AFTER_MS)).await;
            let w = g.watchers.iter().position(|m| m.proc.is_running()).unwrap();
            g.watchers[w].proc.signal(libc::SIGKILL);
            wait_record_moves(g, &old, budget).await;
        }
        Scenario::ZkPause => {
            zk().pause();
            tokio::time::sleep(Duration::from_millis(3 * SESSION_MS)).await;
            zk().resume();
        }
        Scenario::ZkRestart => zk().restart(Duration::from_millis(500)),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a, b) = (writer.finish().await, sticky.finish().await);
    // The scenario's own outcome, before any replacement starts: exactly one
    // master, the record equal to every Sentinel's answer, every live
    // replica linked.
    g.wait_healthy(Duration::from_secs(60)).await;
    if s == Scenario::HangMasterWithMinReplicas {
        config_set_all(g, &[("min-replicas-to-write", "0")]).await;
    }
    restore(g);
    let master = g.wait_healthy(Duration::from_secs(90)).await;
    let recovered_in = t0.elapsed();
    let acked: Vec<String> = a.acked.iter().chain(&b.acked).cloned().collect();
    let lost = missing_keys(&master, None, &acked).await.len();
    Outcome {
        scenario: s,
        acked: acked.len(),
        lost,
        failed: a.failed + b.failed,
        longest_gap: a.longest_gap,
        recovered_in,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_suite() {
    let rounds: u32 = std::env::var("CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut g = Group::new("chaos");
    g.extra.push(("ZK_SESSION_TIMEOUT_MS", SESSION_MS.to_string()));
    g.extra.push(("SHUTDOWN_FAILOVER_TIMEOUT_S", "10".into()));
    let mut g = Group::start_with(g, 3, 3, 2).await;
    let mut outcomes = vec![];
    for round in 1..=rounds {
        for s in Scenario::ALL {
            let o = run(&mut g, s, round).await;
            eprintln!(
                "MEASURE chaos round {round} {:?}: {} acknowledged, {} lost, {} failed, longest pause {:?}, healthy again after {:?}",
                o.scenario, o.acked, o.lost, o.failed, o.longest_gap, o.recovered_in
            );
            outcomes.push((round, o));
        }
    }
    eprintln!("\n| round | scenario | acknowledged | lost | failed writes | longest pause (s) | healthy after (s) |");
    eprintln!("|---|---|---|---|---|---|---|");
    for (round, o) in &outcomes {
        eprintln!(
            "| {round} | {:?} | {} | {} | {} | {:.1} | {:.1} |",
            o.scenario,
            o.acked,
            o.lost,
            o.failed,
            o.longest_gap.as_secs_f64(),
            o.recovered_in.as_secs_f64()
        );
    }
    for pair in outcomes.windows(2) {
        let ((r, a), (_, b)) = (&pair[0], &pair[1]);
        if a.scenario == Scenario::HangMaster && b.scenario == Scenario::HangMasterWithMinReplicas {
            assert!(
                b.lost <= a.lost,
                "round {r}: min-replicas-to-write lost more ({}) than without ({})",
                b.lost,
                a.lost
            );
        }
    }
    for (round, o) in &outcomes {
        assert!(o.acked > 0, "round {round} {:?}: nothing was acknowledged", o.scenario);
        if o.scenario.must_not_lose() {
            assert_eq!(o.lost, 0, "round {round} {:?}: acknowledged writes lost", o.scenario);
        }
    }
}
