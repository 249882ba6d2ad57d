//! The write fence (`FENCE_AFTER_MS`) on loopback, with the witnesses
//! frozen (SIGSTOP) rather than cut off: a master that neither ZooKeeper
//! nor a majority of the Sentinels confirms refuses writes within
//! `FENCE_AFTER_MS` + 1 s and takes them again once a witness is back; one
//! witness alone keeps it writable. This binary freezes its own ZooKeeper,
//! so its tests run one at a time.

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FENCE_MS: u64 = 1000;

/// A master with one replica and three Sentinels, fencing after 1 s. The
/// Sentinels' down-after is long, so that no failover muddles the test.
async fn group(tag: &str) -> Group {
    let mut g = Group::new(tag);
    g.extra.push(("FENCE_AFTER_MS", FENCE_MS.to_string()));
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", "60000".into()));
    g.admin = true;
    Group::start_with(g, 2, 3, 0).await
}

/// One write: `Ok` when acknowledged, else the error text.
async fn write(master: &str, i: usize) -> Result<(), String> {
    match redis_cmd(master, None, &["SET", &format!("fence:{i}"), "v"]).await {
        Ok(redis::Value::Okay) => Ok(()),
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(e),
    }
}

/// Writes every 50 ms for `d`; returns the first refusal, if any.
async fn writes_for(master: &str, d: Duration) -> (usize, Option<String>) {
    let until = Instant::now() + d;
    let mut n = 0;
    while Instant::now() < until {
        if let Err(e) = write(master, n).await {
            return (n, Some(e));
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (n, None)
}

/// The pid of a Sentinel task's `redis-sentinel` process.
async fn sentinel_server_pid(m: &Member) -> i32 {
    info_field(&m.addr(), "server", "process_id")
        .await
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_no_witness_confirms_refuses_writes_until_one_does() {
    let _serial = SERIAL.lock().await;
    let g = group("fenced").await;
    let master = g.record().await.unwrap();
    let mi = g.master_index().await.unwrap();
    assert_eq!(writes_for(&master, Duration::from_millis(500)).await.1, None);
    let pids: Vec<i32> = {
        let mut v = vec![];
        for s in &g.sentinels {
            v.push(sentinel_server_pid(s).await);
        }
        v
    };
    // Both witnesses go silent at once, until the guards are dropped: a
    // check that fails meanwhile still resumes them.
    let zk_frozen = zk().paused();
    let sentinels_frozen = Frozen::pids(&pids);
    let cut = Instant::now();
    let (ok, refused) = writes_for(&master, Duration::from_millis(FENCE_MS + 3000)).await;
    let fenced_after = cut.elapsed();
    let refused =
        refused.unwrap_or_else(|| panic!("{ok} writes acknowledged in {fenced_after:?} with no witness; never fenced"));
    assert!(refused.contains("NOREPLICAS"), "the refusal a client sees: {refused}");
    assert!(
        fenced_after <= Duration::from_millis(FENCE_MS + 1000),
        "fenced {fenced_after:?} after the witnesses went silent (FENCE_AFTER_MS={FENCE_MS})"
    );
    // While fenced, the admin JSON says so and /master routes no writes here
    // (its look at ZooKeeper may be waiting out its timeout: give it time).
    let fenced_page = try_wait_for(Duration::from_secs(8), || async {
        match g.redis[mi].admin_get("/master").await {
            Ok((503, body)) if body.contains(r#""fenced":true"#) => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The metrics say so too. A read that fails (or is slow) is retried
    // and, at the deadline, reported: never taken for an empty page.
    let metrics = try_wait_for(Duration::from_secs(8), || async {
        match g.redis[mi].admin_get("/metrics").await {
            Ok((200, text)) if text.contains("rzk_fences_total 1") && text.contains("rzk_fenced 1") => Ok(text),
            Ok((code, text)) => Err(format!("{code}:\n{text}")),
            Err(e) => Err(format!("GET /metrics: {e}")),
        }
    })
    .await;
    sentinels_frozen.resume();
    zk_frozen.resume();
    if let Err(last) = fenced_page {
        panic!("the admin API never showed the fence: {last}");
    }
    if let Err(last) = metrics {
        panic!("the metrics never counted the fence; last answer: {last}");
    }
    // Witnesses back: the fence is lifted and writes are taken again.
    let back = Instant::now();
    wait_for("writes to be taken again", Duration::from_secs(10), || async {
        write(&master, 1_000_000).await
    })
    .await;
    let lifted_after = back.elapsed();
    // The launcher lifts the fence first and logs after.
    wait_for("the FENCED and fence lifted lines", Duration::from_secs(5), || async {
        let log = g.redis[mi].proc.log();
        if log.contains("FENCED") && log.contains("fence lifted") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    eprintln!(
        "MEASURE fence: {ok} writes acknowledged, refused (NOREPLICAS) {fenced_after:?} after both witnesses froze; lifted {lifted_after:?} after they came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zookeeper_outage_alone_never_fences() {
    let _serial = SERIAL.lock().await;
    let g = group("zkonly").await;
    let master = g.record().await.unwrap();
    let frozen = zk().paused();
    let (n, refused) = writes_for(&master, Duration::from_millis(FENCE_MS * 5)).await;
    frozen.resume();
    assert_eq!(
        refused, None,
        "a write was refused during a ZooKeeper outage with the Sentinels confirming"
    );
    let mi = g.master_index().await.unwrap();
    let log = g.redis[mi].proc.log();
    assert!(!log.contains("FENCED"), "the master was fenced:\n{log}");
    eprintln!("MEASURE ZooKeeper frozen {} ms: {n} writes, none refused", FENCE_MS * 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_every_sentinel_alone_never_fences() {
    let _serial = SERIAL.lock().await;
    let g = group("sentinelsgone").await;
    let master = g.record().await.unwrap();
    for s in &g.sentinels {
        s.proc.signal(libc::SIGKILL);
    }
    let (n, refused) = writes_for(&master, Duration::from_millis(FENCE_MS * 5)).await;
    let mi = g.master_index().await.unwrap();
    let log = g.redis[mi].proc.log();
    assert_eq!(
        refused, None,
        "a write was refused with every Sentinel gone and ZooKeeper confirming:\n{log}"
    );
    assert!(!log.contains("FENCED"), "the master was fenced:\n{log}");
    eprintln!(
        "MEASURE every Sentinel gone {} ms: {n} writes, none refused",
        FENCE_MS * 5
    );
}
