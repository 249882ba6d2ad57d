//! The chaos suite: one group (3 rzk-redis, 3 rzk-sentinel, 2 rzk-watcher)
//! goes through the failures production brings, one after another, while
//! writers keep a ledger of acknowledged writes. After each scenario the
//! group must have exactly one master, a record equal to the Sentinels'
//! view and every live replica linked; the lost-write count is measured.
//!
//! CI runs one round. For a longer run, or only some scenarios:
//!   CHAOS_ROUNDS=3 cargo test --test chaos -- --nocapture
//!   CHAOS_SCENARIOS=HangMaster,KillSentinel cargo test --test chaos
//! This binary has its own ZooKeeper (two scenarios pause or restart it).

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

const SESSION_MS: u64 = 2000;

/// Writes a hung master with `min-replicas-to-write` may lose: those in
/// flight when it froze, one per writer (two writers).
const MIN_REPLICAS_IN_FLIGHT: usize = 2;

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
}

struct Outcome {
    scenario: Scenario,
    acked: usize,
    lost: usize,
    /// Hang scenarios: writes of the sticky client that the old master
    /// acknowledged after it woke up.
    woken_acks: usize,
    /// Lost writes other than those.
    lost_elsewhere: usize,
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
    // Writes before the fault too, so that the ledger spans it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let budget = failover_budget();
    let t0 = Instant::now();
    // Hang scenarios: the old master and when it woke up.
    let mut woken: Option<(String, Instant)> = None;
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
            let frozen = Frozen::pids(&[pid]);
            wait_record_moves(g, &old, budget).await;
            // The scenario's own timing: the old master stays frozen a moment
            // after the failover, as a long GC-like hang would.
            tokio::time::sleep(Duration::from_secs(1)).await;
            frozen.resume();
            woken = Some((old.clone(), Instant::now()));
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
            let addr = g.sentinels[i].addr();
            let child: i32 = info_field(&addr, "server", "process_id")
                .await
                .unwrap()
                .parse()
                .unwrap();
            g.sentinels[i].proc.signal(libc::SIGKILL);
            g.sentinels[i]
                .proc
                .wait_exit(Duration::from_secs(5))
                .expect("the killed sentinel launcher to exit");
            // Its redis-sentinel dies with it (PDEATHSIG), and its ephemeral
            // registration goes when the ZooKeeper session expires.
            wait_for(
                "the killed launcher's redis-sentinel to die",
                Duration::from_secs(5),
                || async {
                    if pid_alive(child) {
                        Err(format!("redis-sentinel pid {child} still alive"))
                    } else {
                        Ok(())
                    }
                },
            )
            .await;
            wait_for(
                "the killed sentinel's registration to disappear",
                Duration::from_millis(3 * SESSION_MS),
                || async {
                    let reg = g.registered("sentinels").await;
                    if reg.iter().any(|(_, a)| *a == addr) {
                        Err(format!("still registered: {reg:?}"))
                    } else {
                        Ok(())
                    }
                },
            )
            .await;
        }
        Scenario::KillWatcherDuringFailover => {
            let (i, old) = master(g).await;
            let sentinels: Vec<String> = g.live_sentinels().map(Member::addr).collect();
            let mut events = SentinelEvents::listen(&sentinels, None, &["+try-failover", "+switch-master"]).await;
            g.redis[i].proc.signal(libc::SIGKILL);
            // Kill a watcher as soon as a Sentinel starts the failover.
            let started = events
                .first("+try-failover", budget)
                .await
                .unwrap_or_else(|e| panic!("no Sentinel started a failover: {e}"));
            let w = g.watchers.iter().position(|m| m.proc.is_running()).unwrap();
            g.watchers[w].proc.signal(libc::SIGKILL);
            let killed = Instant::now();
            // The premise: the failover was under way at the kill, begun
            // and not yet ended by a +switch-master.
            let ended = events
                .first("+switch-master", budget)
                .await
                .unwrap_or_else(|e| panic!("the failover never ended: {e}"));
            assert!(
                ended.at > killed,
                "the watcher was killed {:?} after the failover had ended (+switch-master from {}), not during it",
                killed - ended.at,
                ended.sentinel
            );
            eprintln!(
                "MEASURE watcher killed {:?} after +try-failover ({}), {:?} before +switch-master ({})",
                killed - started.at,
                started.sentinel,
                ended.at - killed,
                ended.sentinel
            );
            wait_record_moves(g, &old, budget).await;
        }
        Scenario::ZkPause => {
            let frozen = zk().paused();
            // The scenario's own timing: an outage of three session timeouts.
            tokio::time::sleep(Duration::from_millis(3 * SESSION_MS)).await;
            frozen.resume();
        }
        Scenario::ZkRestart => zk().restart(Duration::from_millis(500)),
    }
    // The writers keep writing a moment after the fault, so that writes to
    // the recovered group are in the ledger too.
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
    let lost = missing_keys(&master, None, &acked).await;
    // The sticky client's writes that the old master took after it woke.
    let woken_keys: Vec<&String> = match &woken {
        Some((old, at)) => b
            .acked
            .iter()
            .zip(&b.acked_by)
            .filter(|(_, (by, when))| by == old && when > at)
            .map(|(k, _)| k)
            .collect(),
        None => vec![],
    };
    let lost_elsewhere = lost.iter().filter(|k| !woken_keys.contains(k)).count();
    Outcome {
        scenario: s,
        acked: acked.len(),
        lost: lost.len(),
        woken_acks: woken_keys.len(),
        lost_elsewhere,
        failed: a.failed + b.failed,
        longest_gap: a.longest_gap,
        recovered_in,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_suite() {
    let rounds = env_count("CHAOS_ROUNDS", 1) as u32;
    // CHAOS_SCENARIOS=HangMaster,KillSentinel runs only those (by name).
    let only: Option<Vec<String>> = std::env::var("CHAOS_SCENARIOS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.contains(&format!("{s:?}"))))
        .collect();
    if let Some(names) = &only {
        for n in names {
            assert!(
                Scenario::ALL.iter().any(|s| format!("{s:?}") == *n),
                "CHAOS_SCENARIOS: no scenario {n:?}; the scenarios are {:?}",
                Scenario::ALL
            );
        }
    }
    assert!(!scenarios.is_empty(), "CHAOS_SCENARIOS={only:?} names no scenario");
    let mut g = Group::new("chaos");
    g.extra.push(("ZK_SESSION_TIMEOUT_MS", SESSION_MS.to_string()));
    g.extra.push(("SHUTDOWN_FAILOVER_TIMEOUT_S", "10".into()));
    let mut g = Group::start_with(g, 3, 3, 2).await;
    let mut outcomes = vec![];
    for round in 1..=rounds {
        for &s in &scenarios {
            let o = run(&mut g, s, round).await;
            eprintln!(
                "MEASURE chaos round {round} {:?}: {} acknowledged, {} lost ({} acknowledged by the woken old master), {} failed, longest pause {:?}, healthy again after {:?}",
                o.scenario, o.acked, o.lost, o.woken_acks, o.failed, o.longest_gap, o.recovered_in
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
    for (round, o) in &outcomes {
        assert!(o.acked > 0, "round {round} {:?}: nothing was acknowledged", o.scenario);
        match o.scenario {
            // The hazard the min-replicas variant exists for: without it the
            // woken old master acknowledges the sticky client's writes until
            // it is demoted, and those are at risk. The premise, checked
            // directly: the sticky client did write to the woken old master
            // (else the scenario proved nothing). Any other loss is at most
            // the writes in flight at the SIGSTOP.
            Scenario::HangMaster => {
                assert!(
                    o.woken_acks > 0,
                    "round {round} HangMaster: the sticky client never wrote to the woken old master; the scenario proved nothing"
                );
                assert!(
                    o.lost_elsewhere <= MIN_REPLICAS_IN_FLIGHT,
                    "round {round} HangMaster: {} lost writes were not taken by the woken old master (at most {MIN_REPLICAS_IN_FLIGHT} in flight at the SIGSTOP)",
                    o.lost_elsewhere
                );
            }
            // min-replicas-to-write makes the woken master refuse writes at
            // once. What is left is the write in flight at the SIGSTOP, which
            // asynchronous replication can always lose (measured: 0, now and
            // then 1).
            Scenario::HangMasterWithMinReplicas => assert!(
                o.lost <= MIN_REPLICAS_IN_FLIGHT,
                "round {round}: with min-replicas-to-write {} acknowledged writes were lost (at most {MIN_REPLICAS_IN_FLIGHT} allowed)",
                o.lost
            ),
            _ => assert_eq!(o.lost, 0, "round {round} {:?}: acknowledged writes lost", o.scenario),
        }
    }
}
