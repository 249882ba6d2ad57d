//! Failovers end to end: real ZooKeeper, rzk-redis, rzk-sentinel and
//! rzk-watcher processes, and Sentinel's own failovers.
//!
//! The scenarios run one at a time (a shared lock): each runs a 7-process
//! group with a 2 s down-after, and two of them at once on a 2-core machine
//! would measure the machine rather than the product.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::group::*;
use common::*;
use redis::Value;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes `n` keys on the master and waits until 2 replicas acknowledged them.
async fn write_acknowledged(master: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut keys = vec![];
    for i in 0..n {
        let k = format!("{prefix}:{i}");
        redis_cmd(master, None, &["SET", &k, &i.to_string()]).await.unwrap();
        keys.push(k);
    }
    match redis_cmd(master, None, &["WAIT", "2", "2000"]).await.unwrap() {
        Value::Int(acks) => assert!(acks >= 2, "WAIT 2 got only {acks} acknowledgements"),
        other => panic!("WAIT replied {other:?}"),
    }
    keys
}

/// SIGKILLs the master's launcher and waits until the record names another
/// server that answers ROLE master. Returns (new master, time taken).
async fn kill_master_and_wait(g: &Group) -> (String, Duration) {
    let mi = g.master_index().await.expect("a master before the failover");
    let old = g.redis[mi].addr();
    let t0 = Instant::now();
    g.redis[mi].proc.signal(libc::SIGKILL);
    let new = wait_for("the record to name the promoted replica", failover_budget(), || async {
        let rec = g.record().await;
        match rec {
            Some(r) if r != old && role(&r).await.as_deref() == Ok("master") => Ok(r),
            other => Err(format!("record {other:?} (old master {old})")),
        }
    })
    .await;
    (new, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_reaches_the_record_and_keeps_acknowledged_writes() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::start("failover", 3, 3, 1).await;
    assert_eq!(g.registered("sentinels").await.len(), 3);
    let mut times = vec![];
    let mut keys = vec![];
    for round in 1..=5 {
        let master = g.wait_healthy(Duration::from_secs(60)).await;
        keys.extend(write_acknowledged(&master, &format!("r{round}"), 50).await);
        let (new, took) = kill_master_and_wait(&g).await;
        eprintln!("MEASURE failover round {round}: SIGKILL of {master} -> record {new} in {took:?}");
        times.push(took);
        for k in &keys {
            let v = redis_cmd(&new, None, &["EXISTS", k]).await.unwrap();
            assert_eq!(
                v,
                Value::Int(1),
                "round {round}: acknowledged key {k} lost after failover to {new}"
            );
        }
        // A replacement task joins the new master.
        let i = g.start_redis();
        let joined = g.wait_healthy(Duration::from_secs(60)).await;
        assert_eq!(joined, new, "the master changed again while a replica joined");
        assert_eq!(role(&g.redis[i].addr()).await.as_deref(), Ok("slave"));
    }
    times.sort();
    eprintln!(
        "MEASURE failover median of {} runs: {:?} (all: {times:?})",
        times.len(),
        times[times.len() / 2]
    );
    let log = g.watchers[0].proc.log();
    assert!(
        log.contains("+switch-master"),
        "the watcher never saw +switch-master:\n{log}"
    );
}

/// The Sentinels the watcher has subscribed to so far, from its log.
fn subscribed_sentinels(watcher: &Member) -> BTreeSet<String> {
    watcher
        .proc
        .log()
        .lines()
        .filter(|l| l.contains(" subscribed"))
        .filter_map(|l| {
            let i = l.find("sentinel=")? + "sentinel=".len();
            let mut parts = l[i..].split(' ');
            Some(format!("{} {}", parts.next()?, parts.next()?))
        })
        .collect()
}

/// How many lines of `watcher`'s log contain every one of `words`.
fn log_lines(watcher: &Member, words: &[&str]) -> usize {
    let log = watcher.proc.log();
    log.lines().filter(|l| words.iter().all(|w| l.contains(w))).count()
}

/// The watcher listens to every Sentinel. One that hangs (SIGSTOP) stops
/// answering the ping on its subscribed connection: the subscription ends,
/// and is made again once it answers. When one dies, its subscription ends
/// and is retried, the others carry the next failover to the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_follows_after_a_subscribed_sentinel_dies() {
    let _serial = SERIAL.lock().await;
    let g = Group::start("subdeath", 3, 3, 1).await;
    let watcher = &g.watchers[0];
    let all: BTreeSet<String> = g.sentinels.iter().map(|s| s.addr()).collect();
    wait_for(
        "the watcher to subscribe to every sentinel",
        Duration::from_secs(10),
        || async {
            let subs = subscribed_sentinels(watcher);
            if subs == all {
                Ok(())
            } else {
                Err(format!("subscribed to {subs:?} of {all:?}"))
            }
        },
    )
    .await;
    let victim = &g.sentinels[0];
    let gone = victim.addr();
    let frozen = Frozen::pids(&[server_pid(&gone).await]);
    wait_for(
        "the watcher to leave the hung sentinel's subscription",
        Duration::from_secs(5),
        || async {
            match log_lines(
                watcher,
                &["subscribed sentinel stopped answering", &gone, "no reply to PING"],
            ) {
                0 => Err(watcher.proc.log()),
                _ => Ok(()),
            }
        },
    )
    .await;
    frozen.resume();
    wait_for(
        "the watcher to subscribe again to the sentinel that answers again",
        Duration::from_secs(10),
        || async {
            match log_lines(watcher, &[" subscribed sentinel=", &gone]) {
                n if n >= 2 => Ok(()),
                n => Err(format!("{n} subscription(s) to {gone}")),
            }
        },
    )
    .await;
    let ended = log_lines(watcher, &["subscription ended", &gone]);
    victim.proc.signal(libc::SIGKILL);
    let t0 = Instant::now();
    wait_for(
        "the watcher to notice the dead sentinel",
        Duration::from_secs(3),
        || async {
            match log_lines(watcher, &["subscription ended", &gone]) {
                n if n > ended => Ok(()),
                _ => Err("no new 'subscription ended' line for it yet".to_string()),
            }
        },
    )
    .await;
    eprintln!(
        "MEASURE watcher noticed a dead sentinel {:?} after SIGKILL",
        t0.elapsed()
    );
    let (new, took) = kill_master_and_wait(&g).await;
    eprintln!("MEASURE failover with a dead sentinel: record {new} after {took:?}");
}

/// Two watchers, as shipped: SIGKILL one just before SIGKILLing the master.
/// The other moves the record to the new master within 2 s of the first
/// `+switch-master` any Sentinel publishes, with exactly one version bump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_survives_losing_a_watcher() {
    let _serial = SERIAL.lock().await;
    let g = Group::start("losewatch", 3, 3, 2).await;
    for w in &g.watchers {
        w.proc
            .wait_log("reconciled after subscribing", Duration::from_secs(15))
            .await;
    }
    // The test's own ears on every Sentinel, to time the first event, and a
    // data watch on the record, to time its change: both timestamps come
    // from events, not from polls.
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    let mut events = SentinelEvents::listen(&sentinels, None, &["+switch-master"]).await;
    let mut record = DataWatch::new(&format!("{}/master", g.root)).await;
    let (old, v0) = g.record_with_version().await.unwrap();
    g.watchers[0].proc.signal(libc::SIGKILL);
    let mi = g.master_index().await.unwrap();
    g.redis[mi].proc.signal(libc::SIGKILL);
    let first = events
        .first("+switch-master", failover_budget())
        .await
        .unwrap_or_else(|e| panic!("no +switch-master within the failover budget: {e}"));
    let (by, at) = (first.sentinel, first.at);
    // The surviving watcher acts on the first +switch-master it hears (it
    // listens to every Sentinel): it confirms the new master with ROLE, for
    // up to 10 x 200 ms (src/launch/watcher.rs, on_event; contract 6.4 step
    // 2: "up to about 2 s"), then writes. Should it miss the event, its
    // reconcile every RECONCILE_S (2 s here) writes the record instead. So
    // 2 s after the event, plus a margin of 1 s for the compare-and-set and
    // a busy machine.
    let bound = Duration::from_secs(RECONCILE_S.max(2) + 1);
    let (new, v, seen) = record
        .until_not(&old, failover_budget())
        .await
        .unwrap_or_else(|e| panic!("the surviving watcher never moved the record: {e}"));
    let lag = seen.saturating_duration_since(at);
    assert!(
        lag <= bound,
        "the record moved {lag:?} after the first +switch-master (from {by}), over {bound:?}"
    );
    assert_eq!(role(&new).await.as_deref(), Ok("master"), "{new}");
    assert_eq!(v, v0 + 1, "one failover, one version bump");
    // And it stays: no second write over a few reconcile intervals.
    let quiet = Duration::from_secs(2 * RECONCILE_S + 1);
    if let Ok(at) = record.next_change(quiet).await {
        panic!(
            "the record changed again {:?} after the failover: {:?}",
            at.saturating_duration_since(seen),
            record.last
        );
    }
    eprintln!("MEASURE record moved {lag:?} after the first +switch-master (by {by}), with one watcher SIGKILLed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_watcher_corrects_a_stale_record() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::start("stalewatch", 3, 3, 1).await;
    g.watchers[0].proc.signal(libc::SIGTERM);
    let status = g.watchers[0]
        .proc
        .wait_exit(Duration::from_secs(5))
        .expect("watcher did not stop");
    assert_eq!(status.code(), Some(0));
    let mi = g.master_index().await.unwrap();
    let old = g.redis[mi].addr();
    g.redis[mi].proc.signal(libc::SIGKILL);
    let sentinel = g.sentinels[0].addr();
    let new = wait_for("the sentinels to fail over", failover_budget(), || async {
        match sentinel_master(&sentinel).await {
            Ok(m) if m != old && role(&m).await.as_deref() == Ok("master") => Ok(m),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        g.record().await.as_deref(),
        Some(old.as_str()),
        "nothing should have moved the record without a watcher"
    );
    let t0 = Instant::now();
    g.start_watcher();
    wait_for(
        "the restarted watcher to correct the record",
        Duration::from_secs(RECONCILE_S + 2),
        || async {
            match g.record().await {
                Some(r) if r == new => Ok(()),
                other => Err(format!("record {other:?}, sentinels say {new}")),
            }
        },
    )
    .await;
    eprintln!("MEASURE restarted watcher corrected the record in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_watchers_bump_the_version_once_per_failover() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::start("twowatch", 3, 3, 1).await;
    let w = g.start_watcher();
    g.watchers[w]
        .proc
        .wait_log("reconciled after subscribing", Duration::from_secs(15))
        .await;
    let (_, v0) = g.record_with_version().await.unwrap();
    let (new, _) = kill_master_and_wait(&g).await;
    // Watch for flapping over several reconcile intervals.
    let until = Instant::now() + Duration::from_secs(3 * RECONCILE_S + 2);
    while Instant::now() < until {
        let (rec, v) = g.record_with_version().await.unwrap();
        assert_eq!(rec, new, "the record moved away from the new master");
        assert_eq!(v, v0 + 1, "version went from {v0} to {v} for one failover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_sentinels_are_forgotten_and_failover_still_works() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::start("ghosts", 3, 3, 1).await;
    for round in 0..3 {
        g.sentinels[round].proc.signal(libc::SIGKILL);
        g.sentinels[round]
            .proc
            .wait_exit(Duration::from_secs(5))
            .expect("sentinel launcher killed");
        g.start_sentinel();
        g.wait_healthy(Duration::from_secs(60)).await;
    }
    let t0 = Instant::now();
    let live: Vec<String> = g.live_sentinels().map(Member::addr).collect();
    assert_eq!(live.len(), 3);
    wait_for(
        "every live sentinel to count exactly the live peers",
        Duration::from_secs(90),
        || async {
            let mut seen = vec![];
            for s in &live {
                seen.push(sentinel_master_field(s, "num-other-sentinels").await?);
            }
            if seen.iter().all(|n| n == "2") {
                Ok(())
            } else {
                Err(format!("num-other-sentinels: {seen:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "MEASURE ghost sentinels forgotten {:?} after the third replacement",
        t0.elapsed()
    );
    let (new, took) = kill_master_and_wait(&g).await;
    eprintln!("MEASURE failover after sentinel replacements: record {new} after {took:?}");
}

/// Every registered Sentinel's `num-other-sentinels`.
async fn peer_counts(sentinels: &[String]) -> Result<Vec<String>, String> {
    let mut seen = vec![];
    for s in sentinels {
        seen.push(sentinel_master_field(s, "num-other-sentinels").await?);
    }
    Ok(seen)
}

/// A live Sentinel that is not registered (an operator's own, say) raises
/// every Sentinel's peer count just as a ghost does, but a reset would only
/// make them relearn it: the watcher must leave them alone, and still clean
/// up the ghost of a registered Sentinel that dies meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_unregistered_sentinel_is_not_reset_over_and_over() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::start("unregistered", 3, 3, 1).await;
    let master = g.record().await.expect("a record");
    let (mip, mport) = master.split_once(' ').unwrap();
    let t = task();
    let conf = t.dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {}\nbind {ip}\nsentinel announce-ip {ip}\ndir {}\nsentinel monitor mymaster {mip} {mport} 2\n\
             sentinel down-after-milliseconds mymaster {DOWN_AFTER_MS}\n",
            t.port,
            t.dir.display(),
            ip = t.ip
        ),
    )
    .unwrap();
    let _unregistered = Proc::spawn(
        "redis-sentinel",
        &[conf.to_str().unwrap()],
        &[],
        t.dir.join("sentinel.log"),
    );
    let registered: Vec<String> = g.live_sentinels().map(Member::addr).collect();
    wait_for(
        "every registered sentinel to count the unregistered one",
        Duration::from_secs(30),
        || async {
            let seen = peer_counts(&registered).await?;
            if seen.iter().all(|n| n == "3") {
                Ok(())
            } else {
                Err(format!("num-other-sentinels: {seen:?}"))
            }
        },
    )
    .await;
    // The watcher looks every RECONCILE_S and resets after two looks agree:
    // the old gate reset a Sentinel about 2 looks after this point, and again
    // every 6 s. Three times that long, nothing may be reset.
    let resets = |g: &Group| g.watchers[0].proc.log().matches("reset a sentinel").count();
    let window = Duration::from_secs(3 * 2 * RECONCILE_S);
    let t0 = Instant::now();
    while t0.elapsed() < window {
        assert_eq!(
            resets(&g),
            0,
            "the watcher reset a sentinel over a live peer:\n{}",
            g.watchers[0].proc.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A registered Sentinel dies and is replaced: its ghost is cleaned up
    // while the unregistered one is still counted.
    g.sentinels[0].proc.signal(libc::SIGKILL);
    g.sentinels[0]
        .proc
        .wait_exit(Duration::from_secs(5))
        .expect("sentinel launcher killed");
    g.start_sentinel();
    let live: Vec<String> = g.live_sentinels().map(Member::addr).collect();
    wait_for(
        "every registered sentinel to count its two live registered peers and the unregistered one, not the dead one",
        Duration::from_secs(90),
        || async {
            let seen = peer_counts(&live).await?;
            if seen.iter().all(|n| n == "3") && resets(&g) > 0 {
                Ok(())
            } else {
                Err(format!("num-other-sentinels: {seen:?}, {} resets", resets(&g)))
            }
        },
    )
    .await;
    let after_cleanup = resets(&g);
    eprintln!(
        "MEASURE ghost of a dead sentinel cleaned with {after_cleanup} reset(s) while an unregistered live one runs"
    );
    assert!(
        after_cleanup <= 2,
        "{after_cleanup} resets to forget one dead sentinel (two sentinels remembered it)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_loss_is_taken_over_and_sentinels_follow() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::start("totalloss", 1, 3, 1).await;
    let old = g.redis[0].addr();
    g.redis[0].proc.signal(libc::SIGKILL);
    g.redis[0]
        .proc
        .wait_exit(Duration::from_secs(5))
        .expect("launcher killed");
    let t0 = Instant::now();
    let i = g.start_redis();
    let new = g.redis[i].addr();
    wait_for("the new launcher to take over", Duration::from_secs(30), || async {
        match g.record().await {
            Some(r) if r == new && role(&new).await.as_deref() == Ok("master") => Ok(()),
            other => Err(format!("record {other:?}")),
        }
    })
    .await;
    assert!(g.redis[i].proc.log().contains("TAKEOVER"), "no takeover warning");
    let sentinels: Vec<String> = g.live_sentinels().map(Member::addr).collect();
    wait_for(
        "every sentinel to report the new master",
        Duration::from_secs(30),
        || async {
            let mut seen = vec![];
            for s in &sentinels {
                seen.push(sentinel_master(s).await?);
            }
            if seen.iter().all(|m| *m == new) {
                Ok(())
            } else {
                Err(format!("sentinels say {seen:?} (old {old})"))
            }
        },
    )
    .await;
    eprintln!(
        "MEASURE total loss: sentinels follow the takeover {:?} after the new launcher started",
        t0.elapsed()
    );
    g.wait_healthy(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_sentinels_never_saw_is_re_pointed_after_a_failover() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::start("stranded", 2, 3, 1).await;
    // Sentinels learn of replicas only from their INFO of the master. When
    // no Sentinel ever knows a replica, only its launcher can re-point it.
    let sentinels: Vec<String> = g.live_sentinels().map(Member::addr).collect();
    // rzk-sentinel makes its Sentinel read the replicas' INFO every second,
    // so a replica joins the Sentinels' view within about a second. To
    // make one they never saw, as a replica that links a moment before the
    // master dies is, the test stretches the Sentinels' INFO period to a
    // minute first: the master's INFO, where they learn of replicas, is
    // then not read again before the failover.
    for s in &sentinels {
        redis_cmd(s, None, &["SENTINEL", "DEBUG", "info-period", "60000"])
            .await
            .unwrap_or_else(|e| panic!("{s}: SENTINEL DEBUG info-period: {e}"));
    }
    let t0 = Instant::now();
    let i = g.start_redis();
    let late = g.redis[i].addr();
    wait_for("the late replica to link", Duration::from_secs(20), || async {
        match info_field(&late, "replication", "master_link_status").await {
            Ok(s) if s == "up" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let linked_after = t0.elapsed();
    let mut knew = vec![];
    for s in &sentinels {
        if sentinel_replicas(s).await.unwrap().contains(&late) {
            knew.push(s.clone());
        }
    }
    assert!(
        knew.is_empty(),
        "set-up failed: Sentinels {knew:?} learned of the late replica {late}, which linked {linked_after:?} after it was started"
    );
    let (new, _) = kill_master_and_wait(&g).await;
    // Back to rzk-sentinel's period, so that the group's health (every
    // Sentinel knows every replica) is not a minute away.
    for s in &sentinels {
        redis_cmd(s, None, &["SENTINEL", "DEBUG", "info-period", "1000"])
            .await
            .unwrap_or_else(|e| panic!("{s}: SENTINEL DEBUG info-period: {e}"));
    }
    wait_for(
        "the late replica to follow the new master",
        Duration::from_secs(30),
        || async {
            let host = info_field(&late, "replication", "master_host").await?;
            let port = info_field(&late, "replication", "master_port").await?;
            let link = info_field(&late, "replication", "master_link_status").await?;
            if format!("{host} {port}") == new && link == "up" {
                Ok(())
            } else {
                Err(format!("{host} {port} link {link}"))
            }
        },
    )
    .await;
    // The sentinels did not know the replica, so the launcher must have
    // re-pointed it (it logs after its REPLICAOF).
    g.redis[i].proc.wait_log("re-pointed it", Duration::from_secs(5)).await;
    eprintln!("MEASURE stranded replica: linked {linked_after:?} after its start; re-pointed by its launcher");
    g.wait_healthy(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_hand_over_loses_no_acknowledged_write() {
    let _serial = SERIAL.lock().await;
    let budget = 10u64;
    let mut g = Group::new("handover");
    g.extra.push(("SHUTDOWN_FAILOVER_TIMEOUT_S", budget.to_string()));
    let g = Group::start_with(g, 3, 3, 1).await;
    let writer = g.start_writer("ho", None, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mi = g.master_index().await.unwrap();
    let old = g.redis[mi].addr();
    let t0 = Instant::now();
    g.redis[mi].proc.signal(libc::SIGTERM);
    let status = g.redis[mi]
        .proc
        .wait_exit(Duration::from_secs(budget + 5))
        .expect("launcher did not exit");
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(0), "{}", g.redis[mi].proc.log());
    assert!(
        took <= Duration::from_secs(budget + 1),
        "exited after {took:?}, budget {budget} s"
    );
    let log = g.redis[mi].proc.log();
    assert!(log.contains("hand-over done"), "no hand-over:\n{log}");
    let new = wait_for("the record to name the new master", Duration::from_secs(10), || async {
        match g.record().await {
            Some(r) if r != old && role(&r).await.as_deref() == Ok("master") => Ok(r),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ledger = writer.finish().await;
    let missing = missing_keys(&new, None, &ledger.acked).await;
    eprintln!(
        "MEASURE planned hand-over: launcher exited 0 after {took:?}; {} writes acknowledged, {} lost, {} failed, longest write pause {:?}",
        ledger.acked.len(),
        missing.len(),
        ledger.failed,
        ledger.longest_gap
    );
    assert!(ledger.acked.len() > 100, "the writer barely wrote: {ledger:?}");
    assert!(
        missing.is_empty(),
        "acknowledged writes lost in a planned hand-over: {:?}",
        &missing[..missing.len().min(10)]
    );
}
