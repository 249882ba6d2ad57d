//! Scenarios shared by the matrices (tests/engines.rs runs them per
//! engine, tests/tls.rs with TLS on): each one runs on a live group and
//! fails saying what it saw.

use std::time::{Duration, Instant};

use redis::Value;

use super::engine::*;
use super::group::*;
use super::*;

/// `SHUTDOWN_FAILOVER_TIMEOUT_S` of the groups.
pub const HANDOVER_BUDGET_S: u64 = 10;

/// Writes `n` keys on `master` and waits until `replicas` acknowledged them.
pub async fn write_acknowledged(master: &str, prefix: &str, n: usize, replicas: i64) -> Vec<String> {
    let mut keys = vec![];
    for i in 0..n {
        let k = format!("{prefix}:{i}");
        redis_cmd(master, None, &["SET", &k, &i.to_string()]).await.unwrap();
        keys.push(k);
    }
    let want = replicas.to_string();
    match redis_cmd(master, None, &["WAIT", &want, "5000"]).await.unwrap() {
        Value::Int(acks) => assert!(acks >= replicas, "WAIT {replicas} got only {acks} acknowledgements"),
        other => panic!("WAIT replied {other:?}"),
    }
    keys
}

/// Waits until the record names a server other than `old` that answers as
/// master.
pub async fn new_master(g: &Group, old: &str, within: Duration) -> String {
    wait_for("the record to name a new live master", within, || async {
        match g.record().await {
            Some(r) if r != old && role(&r).await.as_deref() == Ok("master") => Ok(r),
            other => Err(format!("record {other:?} (old master {old})")),
        }
    })
    .await
}

/// The group's `rzkctl status --json`, parsed.
pub async fn status_json(g: &Group) -> serde_json::Value {
    let (code, out, err) = g.rzkctl(&["status", "--json"]).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("rzkctl status --json (exit {code}): {e}\n{out}\n{err}"))
}

/// SIGTERM to the master's task hands the role over: the launcher exits 0
/// within its budget, the record names the new master (of the same
/// engine), and no acknowledged write is lost.
pub async fn planned_hand_over(g: &Group, engine: EngineCase) {
    let writer = g.start_writer("ho", None, 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mi = g.master_index().await.unwrap();
    let old = g.redis[mi].addr();
    let t0 = Instant::now();
    g.redis[mi].proc.signal(libc::SIGTERM);
    let status = g.redis[mi]
        .proc
        .wait_exit(Duration::from_secs(HANDOVER_BUDGET_S + 5))
        .expect("the master's launcher did not exit");
    let took = t0.elapsed();
    let log = g.redis[mi].proc.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("hand-over done"), "no hand-over:\n{log}");
    let new = new_master(g, &old, Duration::from_secs(10)).await;
    assert_eq!(engine_of(&new).await.map(|e| e.0), Ok(engine.name.to_string()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ledger = writer.finish().await;
    let missing = missing_keys(&new, None, &ledger.acked).await;
    eprintln!(
        "MEASURE {} hand-over: exited 0 after {took:?}; {} writes acknowledged, {} lost, longest pause {:?}",
        engine.name,
        ledger.acked.len(),
        missing.len(),
        ledger.longest_gap
    );
    assert!(ledger.acked.len() > 20, "the writer barely wrote: {ledger:?}");
    assert!(
        missing.is_empty(),
        "acknowledged writes lost: {:?}",
        &missing[..missing.len().min(10)]
    );
    g.wait_healthy(Duration::from_secs(30)).await;
}

/// SIGKILL of the master's task: the Sentinels promote a replica, the
/// record names it, and the writes both replicas acknowledged are there.
pub async fn failover_into_the_record(g: &Group) {
    let master = g.wait_healthy(Duration::from_secs(30)).await;
    let keys = write_acknowledged(&master, "fo", 50, 2).await;
    let mi = g.master_index().await.unwrap();
    let t0 = Instant::now();
    g.redis[mi].proc.signal(libc::SIGKILL);
    let budget = Duration::from_millis(DOWN_AFTER_MS + FAILOVER_TIMEOUT_MS + 5000);
    let new = new_master(g, &master, budget).await;
    eprintln!(
        "MEASURE failover: SIGKILL of {master} -> record {new} in {:?}",
        t0.elapsed()
    );
    let missing = missing_keys(&new, None, &keys).await;
    assert!(
        missing.is_empty(),
        "acknowledged keys lost in the failover: {missing:?}"
    );
    g.wait_healthy(Duration::from_secs(30)).await;
}

/// A settled group's launchers keep their connections from one look to
/// the next: over a 5 s window (five looks or more of every launcher) each
/// server and Sentinel accepts at most 5 new connections, this check's own
/// second read among them. A connection per look would be 25 or more:
/// 5.3 to 8.7 a second each were measured before connections were kept.
pub async fn launchers_keep_their_connections(g: &Group) {
    const WINDOW: Duration = Duration::from_secs(5);
    const AT_MOST: u64 = 5;
    g.wait_healthy(Duration::from_secs(30)).await;
    let members: Vec<String> = g.redis.iter().chain(&g.sentinels).map(Member::addr).collect();
    let received = |addr: String| async move {
        let n = info_field(&addr, "stats", "total_connections_received").await?;
        n.parse::<u64>()
            .map_err(|e| format!("{addr}: total_connections_received {n:?}: {e}"))
    };
    let mut before = vec![];
    for m in &members {
        before.push(received(m.clone()).await.unwrap());
    }
    tokio::time::sleep(WINDOW).await;
    let mut seen = vec![];
    for (m, b) in members.iter().zip(before) {
        seen.push((m.clone(), received(m.clone()).await.unwrap() - b));
    }
    assert!(
        seen.iter().all(|(_, n)| *n <= AT_MOST),
        "new connections accepted in {WINDOW:?} (at most {AT_MOST} each): {seen:?}"
    );
    eprintln!("MEASURE new connections in {WINDOW:?}: {seen:?}");
}
