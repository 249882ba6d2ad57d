//! A failover the launchers did not start loses no acknowledged write: the
//! master's launcher freezes its server (`CLIENT PAUSE WRITE`) at the first
//! sign of a failover of it, before the chosen replica is detached, and
//! makes it the new master's replica as soon as the promotion is
//! confirmed. Groups of 3+3+2 with `SENTINEL_DOWN_AFTER_MS=1000` (short
//! timeouts make the race likelier), a writer that follows the Sentinels
//! and counts a write only when `WAIT 1` confirms it.

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn group(tag: &str) -> Group {
    let mut g = Group::new(tag);
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", "1000".into()));
    Group::start_with(g, 3, 3, 2).await
}

/// When `new` (its redis-server's log) last turned master, and when the
/// launcher of `old` first froze it after `since` (its log's length
/// before the failover).
fn promotion_and_freeze(new_log: &str, old_log: &str, since: usize) -> (Option<u64>, Option<u64>) {
    let promoted = new_log
        .lines()
        .rfind(|l| l.contains("MASTER MODE enabled"))
        .and_then(redis_ms);
    let frozen = old_log
        .get(since..)
        .unwrap_or("")
        .lines()
        .find(|l| l.contains("FROZEN"))
        .and_then(launcher_ms);
    (promoted, frozen)
}

/// Forces `SENTINEL FAILOVER` at Sentinel `s` and waits until another
/// server is master for the record and the Sentinels, and the old one is
/// its replica. Returns the new master; `None`, asking nothing, when the
/// Sentinels failed `old` over on their own first (seen once under load,
/// just after a forced failover: frozen and lost nothing, but not the
/// failover the caller asked for).
async fn forced_failover(g: &Group, s: &str, old: &str) -> Option<String> {
    // The last failover may still be reconfiguring its replicas (the
    // Sentinels answer INPROG until it ends).
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    wait_no_failover(&sentinels, Duration::from_secs(30)).await;
    if g.record().await.as_deref() != Some(old) || role(old).await.as_deref() != Ok("master") {
        return None;
    }
    let t0 = Instant::now();
    redis_cmd(s, None, &["SENTINEL", "FAILOVER", "mymaster"])
        .await
        .unwrap_or_else(|e| panic!("SENTINEL FAILOVER at {s}: {e}"));
    let new = wait_for("the record to name another master", Duration::from_secs(20), || async {
        match g.record().await {
            Some(r) if r != old && role(&r).await.as_deref() == Ok("master") => Ok(r),
            other => Err(format!("record {other:?}")),
        }
    })
    .await;
    eprintln!("MEASURE forced failover at {s}: {old} -> {new} in {:?}", t0.elapsed());
    Some(new)
}

/// `SENTINEL FAILOVER` typed at a Sentinel, five times in a row, under a
/// record-following `WAIT 1` writer: nothing acknowledged is lost, each old
/// master was frozen before its replica was promoted, and it follows the
/// new master at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_failovers_lose_no_acknowledged_write() {
    let _serial = SERIAL.lock().await;
    let g = group("forced").await;
    let writer = g.start_writer("forced", None, 1);
    let mut margins = vec![];
    let (mut round, mut own) = (0, 0);
    while round < 5 {
        let old = g.wait_healthy(Duration::from_secs(60)).await;
        let oi = g.redis.iter().position(|m| m.addr() == old).unwrap();
        // Writes flow before each failover.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let since = g.redis[oi].proc.log().len();
        let s = g.sentinels[round % 3].addr();
        let Some(new) = forced_failover(&g, &s, &old).await else {
            own += 1;
            assert!(own <= 3, "the Sentinels failed over on their own {own} times");
            eprintln!("MEASURE round {round}: the Sentinels failed {old} over on their own first; round repeated");
            continue;
        };
        let ni = g.redis.iter().position(|m| m.addr() == new).unwrap();
        wait_for(
            "the old master to follow the new one",
            Duration::from_secs(10),
            || async {
                let host = info_field(&old, "replication", "master_host").await?;
                let port = info_field(&old, "replication", "master_port").await?;
                if format!("{host} {port}") == new {
                    Ok(())
                } else {
                    Err(format!("{host} {port}"))
                }
            },
        )
        .await;
        let (promoted, frozen) = promotion_and_freeze(&g.redis[ni].proc.log(), &g.redis[oi].proc.log(), since);
        let (Some(p), Some(f)) = (promoted, frozen) else {
            panic!(
                "round {round}: no promotion ({promoted:?}) or no freeze ({frozen:?}) in the logs of {new} and {old}:\n{}",
                g.redis[oi].proc.log()
            );
        };
        assert!(
            f <= p,
            "round {round}: {old} was frozen {} ms after {new} was promoted\n{}",
            f - p,
            g.diagnose().await
        );
        margins.push(p - f);
        round += 1;
    }
    g.wait_healthy(Duration::from_secs(60)).await;
    let ledger = writer.finish().await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let lost = missing_keys(&master, None, &ledger.acked).await;
    eprintln!(
        "MEASURE 5 forced failovers: {} acknowledged, {} lost, {} failed, longest gap {:?}; frozen before the promotion by {margins:?} ms",
        ledger.acked.len(),
        lost.len(),
        ledger.failed,
        ledger.longest_gap
    );
    assert!(
        ledger.acked.len() > 100,
        "the writer barely wrote: {}",
        ledger.acked.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// The Sentinels' events are lost (every pub/sub connection to every
/// Sentinel killed just before the failover is forced): the look that
/// follows every new subscription, and the Sentinels' failover flag in
/// every look, still freeze the master before its replica is promoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_event_is_caught_by_the_check() {
    let _serial = SERIAL.lock().await;
    let g = group("lostevent").await;
    let writer = g.start_writer("lost", None, 1);
    // As in the test above: a round in which the Sentinels failed the
    // master over on their own first is repeated (at most 3 times).
    let mut own = 0;
    let (old, oi, since, new) = loop {
        let old = g.wait_healthy(Duration::from_secs(60)).await;
        let oi = g.redis.iter().position(|m| m.addr() == old).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let since = g.redis[oi].proc.log().len();
        for s in &g.sentinels {
            let killed = redis_cmd(&s.addr(), None, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
            assert!(
                matches!(killed, Ok(redis::Value::Int(n)) if n >= 1),
                "{}: no subscription to kill: {killed:?}",
                s.addr()
            );
        }
        if let Some(new) = forced_failover(&g, &g.sentinels[0].addr(), &old).await {
            break (old, oi, since, new);
        }
        own += 1;
        assert!(own <= 3, "the Sentinels failed over on their own {own} times");
        eprintln!("MEASURE the Sentinels failed {old} over on their own first; round repeated");
    };
    let ni = g.redis.iter().position(|m| m.addr() == new).unwrap();
    g.wait_healthy(Duration::from_secs(60)).await;
    let ledger = writer.finish().await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let lost = missing_keys(&master, None, &ledger.acked).await;
    let old_log = g.redis[oi].proc.log();
    let (promoted, frozen) = promotion_and_freeze(&g.redis[ni].proc.log(), &old_log, since);
    let why = old_log[since..]
        .lines()
        .find(|l| l.contains("FROZEN"))
        .unwrap_or("no FROZEN line")
        .to_string();
    eprintln!(
        "MEASURE lost event: {} acknowledged, {} lost; frozen {frozen:?}, promoted {promoted:?} (ms of the day): {why}",
        ledger.acked.len(),
        lost.len()
    );
    let (Some(p), Some(f)) = (promoted, frozen) else {
        panic!("no promotion ({promoted:?}) or no freeze ({frozen:?}):\n{old_log}");
    };
    assert!(
        f <= p,
        "{old} was frozen {} ms after {new} was promoted\n{}",
        f - p,
        g.diagnose().await
    );
    assert!(lost.is_empty(), "{} acknowledged writes lost", lost.len());
}

/// The master's launcher asleep (SIGSTOP) through a failover forced at a
/// Sentinel, so that nothing froze or fenced its server: writes the old
/// master took after its replica's promotion are read from its backlog
/// when the launcher wakes and demotes it, kept replayable in its
/// `DATA_DIR`, and registered for `rzkctl status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_a_master_took_behind_its_launchers_back_are_kept() {
    let _serial = SERIAL.lock().await;
    let g = group("asleep").await;
    let old = g.wait_healthy(Duration::from_secs(60)).await;
    let oi = g.redis.iter().position(|m| m.addr() == old).unwrap();
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    let others: Vec<String> = g.redis.iter().map(Member::addr).filter(|a| *a != old).collect();
    wait_sentinels_know(&sentinels, &others, None, Duration::from_secs(30)).await;
    g.redis[oi].proc.signal(libc::SIGSTOP);
    let asleep = Instant::now();
    let failover = redis_cmd(&sentinels[0], None, &["SENTINEL", "FAILOVER", "mymaster"]).await;
    let promoted = try_wait_for(Duration::from_secs(10), || async {
        for r in &others {
            if role(r).await.as_deref() == Ok("master") {
                return Ok(r.clone());
            }
        }
        Err("no replica promoted yet".to_string())
    })
    .await;
    let mut acked = vec![];
    if promoted.is_ok() {
        for i in 0..20 {
            let key = format!("behind:{i}");
            if redis_cmd(&old, None, &["SET", &key, "x"]).await.is_ok() {
                acked.push(key);
            }
        }
    }
    g.redis[oi].proc.signal(libc::SIGCONT);
    let asleep_for = asleep.elapsed();
    failover.unwrap_or_else(|e| panic!("SENTINEL FAILOVER: {e}"));
    let new = promoted.unwrap_or_else(|e| panic!("{e}\n{}", g.redis[oi].proc.log()));
    assert!(!acked.is_empty(), "the old master took no write after the promotion");
    wait_for(
        "the old master to follow the new one",
        Duration::from_secs(20),
        || async {
            let host = info_field(&old, "replication", "master_host").await?;
            let port = info_field(&old, "replication", "master_port").await?;
            (format!("{host} {port}") == new)
                .then_some(())
                .ok_or(format!("{host} {port}"))
        },
    )
    .await;
    let log = g.redis[oi].proc.log();
    let dir = g.redis[oi].task.dir.join(".rzk-diverged");
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}\n{log}", dir.display()))
        .map(|e| e.unwrap().path().join("writes.resp"))
        .collect();
    let stream = std::fs::read(&kept[0]).unwrap_or_else(|e| panic!("{kept:?}: {e}\n{log}"));
    let text = String::from_utf8_lossy(&stream);
    let missing: Vec<&String> = acked.iter().filter(|k| !text.contains(k.as_str())).collect();
    eprintln!(
        "MEASURE launcher asleep {asleep_for:?} through a forced failover: {} writes taken after the promotion, {} kept",
        acked.len(),
        acked.len() - missing.len()
    );
    assert!(missing.is_empty(), "not kept: {missing:?}\n{log}");
    assert!(log.contains("DIVERGED"), "{log}");
    let c = zk_client().await;
    wait_for("the kept copy registered", Duration::from_secs(10), || async {
        let r = c
            .list_children(&format!("{}/diverged", g.root))
            .await
            .map_err(|e| e.to_string())?;
        (r.len() == 1).then_some(()).ok_or(format!("{r:?}"))
    })
    .await;
}
