//! A replica that has not finished its first full sync is never promoted:
//! not by Sentinel after the master dies, not by a hand-over that could not
//! wait, not by a takeover. Safe even when the orchestrator moves on as soon
//! as a replacement answers PING, as a TCP health check does.
//!
//! The scenarios run one at a time (a shared lock): each runs a group whose
//! servers hold hundreds of megabytes.

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::rolling::*;
use common::*;
use redis::Value;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn replica_priority(addr: &str) -> Result<String, String> {
    match redis_cmd(addr, None, &["CONFIG", "GET", "replica-priority"]).await? {
        Value::Array(v) if v.len() == 2 => match &v[1] {
            Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
            other => Err(format!("{other:?}")),
        },
        Value::Map(m) if m.len() == 1 => Ok(format!("{:?}", m[0].1)),
        other => Err(format!("CONFIG GET replica-priority gave {other:?}")),
    }
}

/// The rolling restart that lost every key before: 3 redis tasks with a
/// dataset whose full sync takes seconds, restarted one after the other in
/// an order that puts the master in the middle, moving on as soon as the
/// replacement answers PING. The replacements are still syncing when the
/// next task is killed; a hand-over or a Sentinel failover to one of them
/// would make an empty server the master. Three runs in a row, each with a
/// writer whose writes count only when `WAIT 1` confirms them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gated_rolling_restart_loses_nothing() {
    let _serial = SERIAL.lock().await;
    const KEYS: usize = 20_000;
    const VALUE: usize = 10_000;
    let runs = env_count("ROLLING_RUNS", 3);
    for run in 1..=runs {
        let mut g = Group::new("rolling");
        // The Marathon values: 20 s for the hand-over, 30 s kill grace.
        g.extra.push(("SHUTDOWN_FAILOVER_TIMEOUT_S", "20".into()));
        // 200 MB sync in about a second here. A delay per key in the
        // master's RDB stream (a Redis debug setting) stretches that to a
        // few seconds, so that the next task is always killed while the
        // replacement before it still syncs, as on a slow network.
        g.redis_args = vec!["--rdb-key-save-delay".into(), "100".into()];
        let mut g = Group::start_with(g, 3, 3, 1).await;
        let master = g.wait_healthy(Duration::from_secs(60)).await;
        let t = Instant::now();
        preload(&master, KEYS, VALUE).await;
        let preload_took = t.elapsed();
        let mi = g.master_index().await.unwrap();
        // Let the replicas receive the preload before the first kill.
        let synced = wait_for("the replicas to have the preload", Duration::from_secs(60), || async {
            let mut sizes = vec![];
            for m in g.live_redis() {
                sizes.push(dbsize(&m.addr()).await?);
            }
            if sizes.iter().all(|n| *n >= KEYS as i64) {
                Ok(sizes)
            } else {
                Err(format!("DBSIZE {sizes:?}"))
            }
        })
        .await;
        let replicas: Vec<usize> = (0..3).filter(|i| *i != mi).collect();
        let order = [replicas[0], mi, replicas[1]];
        let writer = g.start_writer(&format!("roll{run}"), None, 1);
        // Writes before the first kill, so the ledger spans the restart.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, v0) = g.record_with_version().await.unwrap();
        let steps = rolling_restart(&mut g, &order, Duration::from_secs(30), Gate::Ping).await;
        let master = g.wait_healthy(Duration::from_secs(120)).await;
        let ledger = writer.finish().await;
        let (_, v1) = g.record_with_version().await.unwrap();
        let present = preloaded_present(&master, KEYS).await.unwrap();
        let lost = missing_keys(&master, None, &ledger.acked).await;
        let logs: String = g.redis.iter().map(|m| m.proc.log()).collect();
        eprintln!(
            "MEASURE rolling restart (PING gate) run {run}: preload {KEYS} keys x {VALUE} B in {preload_took:?} (replica sizes {synced:?}); \
             steps {steps:?}; record version {v0} -> {v1}; {} of {KEYS} preloaded keys present; {} acknowledged, {} lost, {} failed, longest pause {:?}; \
             hand-overs that waited for a sync: {}",
            present,
            ledger.acked.len(),
            lost.len(),
            ledger.failed,
            ledger.longest_gap,
            logs.matches("hand-over waits for a replica to finish its sync").count()
        );
        // The premise: every kill after the first landed while the
        // replacement started before it was still in its first sync, so
        // that a hand-over or failover to it would have lost data.
        for (k, s) in steps.iter().enumerate().skip(1) {
            match &s.previous_at_kill {
                Some(Ok((true, _))) => {}
                other => panic!(
                    "run {run} step {k}: the kill did not land while the previous replacement synced ({other:?}); \
                     the scenario proved nothing (steps {steps:?})"
                ),
            }
        }
        assert_eq!(present, KEYS, "run {run}: preloaded keys lost (master {master})");
        assert!(
            ledger.acked.len() > 50,
            "run {run}: the writer barely wrote: {ledger:?}"
        );
        assert!(
            lost.is_empty(),
            "run {run}: {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        assert!(
            !logs.contains("no safe hand-over"),
            "run {run}: a hand-over gave up:\n{}",
            logs.lines()
                .filter(|l| l.contains("hand-over"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The rolling restart Marathon does with the readiness checks of the app
/// definition: each replacement must answer 200 on `/ready` before the next
/// task is killed, and a replica's `/ready` waits until a majority of the
/// Sentinels would promote it. With 500,000 keys preloaded and the master
/// replaced second of three, it makes exactly one failover (the master's
/// hand-over, to the replacement that started before it: the youngest),
/// loses nothing, and shows `/ready` 503 on every replacement while it
/// syncs. Several runs in a row (`READY_RUNS`, default 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_gated_rolling_restart_makes_exactly_one_failover() {
    let _serial = SERIAL.lock().await;
    const KEYS: usize = 500_000;
    const VALUE: usize = 16;
    let runs: usize = match std::env::var("READY_RUNS") {
        Err(_) => 3,
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .unwrap_or_else(|| panic!("READY_RUNS={v:?}: expected a whole number of runs, at least 1")),
    };
    for run in 1..=runs {
        let mut g = Group::new("rolling-ready");
        g.admin = true;
        g.extra.push(("SHUTDOWN_FAILOVER_TIMEOUT_S", "20".into()));
        // No delay in the master's RDB stream: a full sync of the 500,000
        // keys (and the writer's) takes a second or two here, long enough
        // to be seen at a readiness check's pace.
        let mut g = Group::start_with(g, 3, 3, 1).await;
        let master = g.wait_healthy(Duration::from_secs(60)).await;
        preload(&master, KEYS, VALUE).await;
        let mi = g.master_index().await.unwrap();
        wait_preloaded(&g, KEYS).await;
        let replicas: Vec<usize> = (0..3).filter(|i| *i != mi).collect();
        let order = [replicas[0], mi, replicas[1]];
        let writer = g.start_writer(&format!("ready{run}"), None, 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, v0) = g.record_with_version().await.unwrap();
        let steps = rolling_restart(&mut g, &order, Duration::from_secs(30), Gate::Ready).await;
        let master = g.wait_healthy(Duration::from_secs(120)).await;
        let ledger = writer.finish().await;
        let (_, v1) = g.record_with_version().await.unwrap();
        let present = preloaded_present(&master, KEYS).await.unwrap();
        let lost = missing_keys(&master, None, &ledger.acked).await;
        // The replacement of the first replica (started 4th, index 3) was
        // the youngest replica when the master was stopped.
        let youngest = g.redis[3].addr();
        eprintln!(
            "MEASURE rolling restart (/ready gate) run {run}: preload {KEYS} keys; steps {steps:?}; record version {v0} -> {v1}; \
             master now {master} (youngest at the hand-over: {youngest}); {present} of {KEYS} preloaded keys present; \
             {} acknowledged, {} lost, {} failed, longest pause {:?}",
            ledger.acked.len(),
            lost.len(),
            ledger.failed,
            ledger.longest_gap
        );
        for (k, s) in steps.iter().enumerate() {
            assert!(
                s.saw_503,
                "run {run} step {k}: /ready was never 503 while the replacement synced: {s:?}"
            );
            assert!(
                s.saw_unpromotable
                    .as_deref()
                    .is_some_and(|w| w.contains("replica-priority 0")),
                "run {run} step {k}: the admin JSON never said the syncing replacement was unpromotable: {s:?}"
            );
        }
        assert_eq!(present, KEYS, "run {run}: preloaded keys lost (master {master})");
        assert!(
            ledger.acked.len() > 50,
            "run {run}: the writer barely wrote: {ledger:?}"
        );
        assert!(
            lost.is_empty(),
            "run {run}: {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        assert_eq!(
            v1 - v0,
            1,
            "run {run}: {} failovers (record version {v0} -> {v1}); exactly 1 expected\n{}",
            v1 - v0,
            g.diagnose().await
        );
        assert_eq!(
            master, youngest,
            "run {run}: the master was handed to {master}, not to the youngest replica {youngest}"
        );
    }
}

/// The master dies (SIGKILL) while its only replica is in its first full
/// sync. Sentinel must not promote that replica: it holds none of the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_in_its_first_sync_is_not_promoted_when_the_master_dies() {
    let _serial = SERIAL.lock().await;
    const KEYS: usize = 50_000;
    let g = Group::start("nogood", 1, 3, 1).await;
    let mut g = g;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    preload(&master, KEYS, 1000).await;
    // A full sync of this preload takes well under a second here, while the
    // Sentinels learn of a new replica only at their next INFO of the master
    // (every 10 s). Stretch the sync so they know the replica, and could
    // pick it, while it is still syncing.
    redis_cmd(&master, None, &["CONFIG", "SET", "rdb-key-save-delay", "400"])
        .await
        .unwrap();
    let i = g.start_redis();
    let replica = g.redis[i].addr();
    wait_for(
        "every Sentinel to know the syncing replica",
        Duration::from_secs(20),
        || async {
            let p = sentinel_priorities(&g, &replica).await?;
            let syncing = info_field(&replica, "replication", "master_sync_in_progress").await?;
            if syncing != "1" {
                return Err(format!(
                    "the replica is not syncing (master_sync_in_progress {syncing})"
                ));
            }
            if p.iter().all(|p| p != "unknown") {
                Ok(p)
            } else {
                Err(format!("sentinels' view of it: {p:?}"))
            }
        },
    )
    .await;
    let before = dbsize(&replica).await.unwrap();
    assert_eq!(
        replica_priority(&replica).await.unwrap(),
        "0",
        "a syncing replica must be unpromotable"
    );
    let mi = g.master_index().await.unwrap();
    g.redis[mi].proc.signal(libc::SIGKILL);
    let t0 = Instant::now();
    // Watch the replica through down-after, the vote and a failover
    // attempt: it must never become master.
    let mut samples = 0;
    let abort = loop {
        samples += 1;
        let r = role(&replica).await;
        assert_ne!(
            r.as_deref(),
            Ok("master"),
            "a replica with {before} of {KEYS} keys was promoted after {:?}",
            t0.elapsed()
        );
        let logs: String = g.live_sentinels().map(|s| s.proc.log()).collect();
        if let Some(line) = logs.lines().find(|l| l.contains("-failover-abort-no-good-slave")) {
            break line.to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_millis(DOWN_AFTER_MS + 20_000),
            "no Sentinel reported -failover-abort-no-good-slave within {:?}",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A little longer: the Sentinels retry, and a late promotion would be
    // just as wrong. The scenario's own timing.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_ne!(role(&replica).await.as_deref(), Ok("master"), "promoted late");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "MEASURE unsynced replica ({before} of {KEYS} keys at the kill) not promoted; {samples} role samples; Sentinel after {:?}: {}",
        t0.elapsed(),
        abort.trim()
    );
}

/// A replica restores its configured priority within 2 s of finishing its
/// first sync, the Sentinels see it, and an ordinary SIGKILL failover then
/// promotes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restores_its_priority_after_its_first_sync_and_a_failover_works() {
    let _serial = SERIAL.lock().await;
    const KEYS: usize = 20_000;
    let mut g = Group::new("priority");
    // The configured priority comes from the pass-through arguments.
    g.redis_args = vec!["--replica-priority".into(), "42".into()];
    let mut g = Group::start_with(g, 1, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    assert_eq!(
        replica_priority(&master).await.unwrap(),
        "42",
        "a master runs with the configured priority"
    );
    preload(&master, KEYS, 1000).await;
    // About 2 s of sync, long enough to see the replica unpromotable.
    redis_cmd(&master, None, &["CONFIG", "SET", "rdb-key-save-delay", "100"])
        .await
        .unwrap();
    let i = g.start_redis();
    let replica = g.redis[i].addr();
    // One connection samples the replica's sync state and priority together
    // (a connect per sample would add its own delays to what is measured).
    let mut c = wait_for("the replica to accept a connection", Duration::from_secs(10), || {
        RedisConn::open(&replica, None)
    })
    .await;
    // The sync itself takes about 2 s here; a minute means it is stuck.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_zero_while_syncing = 0;
    let mut last_syncing: Option<Instant> = None;
    let mut longest_pass = Duration::ZERO;
    let mut last = String::new();
    let restored = loop {
        let pass = Instant::now();
        let sample = c
            .pipe(&[&["INFO", "replication"], &["CONFIG", "GET", "replica-priority"]])
            .await
            .and_then(|r| {
                let synced = info_text_field(&r[0], "master_link_status")? == "up"
                    && info_text_field(&r[0], "master_sync_in_progress")? == "0";
                let prio = match &r[1] {
                    Value::Array(v) if v.len() == 2 => value_text(&v[1]),
                    Value::Map(m) if m.len() == 1 => value_text(&m[0].1),
                    _ => None,
                }
                .ok_or_else(|| format!("CONFIG GET replica-priority gave {:?}", r[1]))?;
                Ok((synced, prio))
            });
        longest_pass = longest_pass.max(pass.elapsed());
        match sample {
            Ok((false, p)) if p == "0" => {
                seen_zero_while_syncing += 1;
                last_syncing = Some(pass);
            }
            Ok((false, p)) => panic!("priority {p} before the first sync finished"),
            // From the start of the last sample that saw the sync running to
            // the end of the one that sees the priority back: an upper bound
            // of the launcher's delay, plus at most two samples and a pause.
            Ok((true, p)) if p == "42" => break last_syncing.map(|t| t.elapsed()),
            Ok((true, p)) => last = format!("synced, priority {p}"),
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "the replica never synced with its priority restored; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(seen_zero_while_syncing > 0, "never saw the syncing replica");
    let restored = restored.expect("a sample of the syncing replica before it synced");
    // The launcher checks a syncing replica every 100 ms (SYNC_CHECK in
    // src/launch/guard.rs): one INFO, then one CONFIG SET, each bounded by
    // its 1 s probe timeout. So at most 100 ms + 2 x 1 s after the sync
    // ended; the samples add up to two passes and the 20 ms pauses between.
    let bound =
        Duration::from_millis(100) + 2 * Duration::from_secs(1) + 2 * (longest_pass + Duration::from_millis(20));
    assert!(
        restored <= bound,
        "the priority came back {restored:?} after the sync ended, over {bound:?} (launcher check 100 ms + 2 probes of 1 s; sample at most {longest_pass:?})"
    );
    redis_cmd(&master, None, &["CONFIG", "SET", "rdb-key-save-delay", "0"])
        .await
        .unwrap();
    // Sentinel refreshes a replica's INFO every 10 s.
    wait_for(
        "every Sentinel to see the restored priority",
        Duration::from_secs(25),
        || async {
            let p = sentinel_priorities(&g, &replica).await?;
            if p.iter().all(|p| p == "42") {
                Ok(())
            } else {
                Err(format!("{p:?}"))
            }
        },
    )
    .await;
    let mi = g.master_index().await.unwrap();
    g.redis[mi].proc.signal(libc::SIGKILL);
    wait_for("the record to name the synced replica", failover_budget(), || async {
        match g.record().await {
            Some(r) if r == replica && role(&r).await.as_deref() == Ok("master") => Ok(()),
            other => Err(format!("record {other:?}")),
        }
    })
    .await;
    assert_eq!(preloaded_present(&replica, KEYS).await.unwrap(), KEYS);
    eprintln!(
        "MEASURE replica-priority: 0 in {seen_zero_while_syncing} samples while syncing; restored at most {restored:?} after the sync ended (longest sample {longest_pass:?}); failover to it worked"
    );
}

/// A master with Sentinels but no replica at all (nothing connected and
/// nothing registered that could connect) stops at once on SIGTERM: the
/// wait for a synced replica is only for replicas that exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_master_with_sentinels_stops_at_once() {
    let _serial = SERIAL.lock().await;
    let g = Group::start("lone", 1, 1, 0).await;
    let t0 = Instant::now();
    g.redis[0].proc.signal(libc::SIGTERM);
    let status = g.redis[0]
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("the lone master's launcher to exit");
    let took = t0.elapsed();
    let log = g.redis[0].proc.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("no replica to hand over to"), "{log}");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}, the hand-over waited for nobody"
    );
    eprintln!("MEASURE lone master with a Sentinel: exit 0 after {took:?}");
}

/// `NOFAILOVER=true` (Patroni's `nofailover`): a replica that is never
/// promoted. In a group of a master, a NOFAILOVER replica and a normal
/// one: the NOFAILOVER one runs at priority 0 for its server and every
/// Sentinel, `rzkctl status` shows it, `rzkctl switchover --to` refuses
/// it; the master SIGKILLed, the normal replica is promoted; that one
/// SIGKILLed in turn, the NOFAILOVER replica is left alone, and a Sentinel
/// reports `-failover-abort-no-good-slave`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nofailover_replica_is_never_promoted() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::start("nofailover", 1, 3, 1).await;
    g.extra.push(("NOFAILOVER", "true".into()));
    let n = g.start_redis();
    g.extra.pop();
    let r = g.start_redis();
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let (nofail, normal) = (g.redis[n].addr(), g.redis[r].addr());
    wait_for(
        "the normal replica at priority 100 and the NOFAILOVER one at 0, for the Sentinels too",
        Duration::from_secs(30),
        || async {
            let seen = (
                replica_priority(&normal).await?,
                replica_priority(&nofail).await?,
                sentinel_priorities(&g, &normal).await?,
                sentinel_priorities(&g, &nofail).await?,
            );
            let ok = seen.0 == "100"
                && seen.1 == "0"
                && seen.2.iter().all(|p| p == "100")
                && seen.3.iter().all(|p| p == "0");
            if ok { Ok(()) } else { Err(format!("{seen:?}")) }
        },
    )
    .await;
    let (code, out, err) = g.rzkctl(&["status", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let node = |addr: &str| {
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["addr"] == addr)
            .cloned()
            .unwrap_or_else(|| panic!("{addr} not in {status}"))
    };
    assert_eq!(node(&nofail)["nofailover"], true, "{status}");
    assert_eq!(node(&nofail)["promotable"], false, "{status}");
    assert_eq!(node(&normal)["nofailover"], false, "{status}");
    let (_, table, _) = g.rzkctl(&["status"]).await;
    assert!(table.contains("NOFAILOVER=true"), "{table}");
    let to = nofail.replace(' ', ":");
    let (code, out, err) = g.rzkctl(&["switchover", "--to", &to, "--timeout", "10"]).await;
    assert_eq!(code, 1, "switchover --to a NOFAILOVER replica: {out}{err}");
    assert!(err.contains("NOFAILOVER=true"), "{out}{err}");
    assert_eq!(g.record().await.as_deref(), Some(master.as_str()), "nothing written");

    // The master dies: the normal replica is promoted, never the other.
    let mi = g.master_index().await.unwrap();
    g.redis[mi].proc.signal(libc::SIGKILL);
    let t0 = Instant::now();
    wait_for(
        "the normal replica promoted and recorded",
        Duration::from_secs(30),
        || async {
            let nr = role(&nofail).await;
            assert_ne!(nr.as_deref(), Ok("master"), "the NOFAILOVER replica was promoted");
            match g.record().await {
                Some(rec) if rec == normal && role(&normal).await.as_deref() == Ok("master") => Ok(()),
                other => Err(format!("record {other:?}")),
            }
        },
    )
    .await;
    let first = t0.elapsed();

    // The new master dies too: only the NOFAILOVER replica is left, and
    // nobody promotes it.
    let aborts_before = |g: &Group| -> usize {
        g.live_sentinels()
            .map(|s| s.proc.log().matches("-failover-abort-no-good-slave").count())
            .sum()
    };
    let before = aborts_before(&g);
    g.redis[r].proc.signal(libc::SIGKILL);
    let t1 = Instant::now();
    loop {
        assert_ne!(
            role(&nofail).await.as_deref(),
            Ok("master"),
            "the NOFAILOVER replica was promoted {:?} after the kill",
            t1.elapsed()
        );
        if aborts_before(&g) > before {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_millis(DOWN_AFTER_MS + 20_000),
            "no Sentinel reported -failover-abort-no-good-slave within {:?}",
            t1.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let abort = t1.elapsed();
    // The Sentinels retry, and the launcher's guard looks again after 5 s
    // (STRANDED_SETTLE): a late promotion would be just as wrong.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        assert_ne!(role(&nofail).await.as_deref(), Ok("master"), "promoted late");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(g.record().await.as_deref(), Some(normal.as_str()));
    eprintln!(
        "MEASURE nofailover: normal replica promoted {first:?} after the master's kill; after the second kill, no-good-slave abort at {abort:?}, not promoted"
    );
}

/// A `NOFAILOVER=true` task never bootstraps a group: the first launcher
/// of a fresh group, it lets go of the lock and waits; a normal launcher
/// started after it becomes the master, and the NOFAILOVER one follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nofailover_task_waits_for_a_master_to_follow() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("nofailover-boot");
    g.extra.push(("NOFAILOVER", "true".into()));
    let n = g.start_redis();
    g.extra.pop();
    g.redis[n]
        .proc
        .wait_log("NOFAILOVER=true and no live master to follow", Duration::from_secs(20))
        .await;
    assert_eq!(g.record().await, None, "a NOFAILOVER task wrote the record");
    let m = g.start_redis();
    let master = g.redis[m].addr();
    let nofail = g.redis[n].addr();
    wait_for(
        "the normal task master, the NOFAILOVER one its replica",
        Duration::from_secs(30),
        || async {
            let rec = g.record().await;
            let nr = role(&nofail).await;
            let link = info_field(&nofail, "replication", "master_port").await;
            if rec.as_deref() == Some(master.as_str())
                && nr.as_deref() == Ok("slave")
                && link.as_deref() == Ok(g.redis[m].task.port.to_string().as_str())
            {
                Ok(())
            } else {
                Err(format!("record {rec:?}, NOFAILOVER task {nr:?} of port {link:?}"))
            }
        },
    )
    .await;
    assert_eq!(replica_priority(&nofail).await.unwrap(), "0");
}
