//! The write fence's quorum boundary end to end (docs/contract.md 8):
//! with ZooKeeper frozen (it has no say while Sentinels are registered) and
//! quorum 2 of 3, a master whose lease 2 of its 3 registered Sentinels
//! still renew keeps taking writes; once only 1 of 3 does, it refuses them
//! within `FENCE_AFTER_MS` + 1 s, and takes them again when the Sentinels
//! are back. Witnesses are frozen (SIGSTOP), not cut off, as in
//! tests/write_fence.rs; this binary has a ZooKeeper of its own to freeze.
//!
//! Scenarios that freeze this binary's ZooKeeper take `SERIAL`.

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `FENCE_AFTER_MS` of the group: the default. (Below about 1.3 s a
/// single hung Sentinel fences a confirmed master: see
/// `one_hung_sentinel_of_three_never_fences_a_confirmed_master`.)
const FENCE_MS: u64 = 3000;
/// The fence's own slack past `FENCE_AFTER_MS`: it looks every
/// `FENCE_AFTER_MS`/4 (at most 1 s; 750 ms here) and gives each witness
/// 1 s to answer, so a master is fenced at most about 1 s after its
/// deadline (the bound tests/write_fence.rs holds it to as well).
const FENCE_SLACK: Duration = Duration::from_millis(1000);

/// One write: `Ok` when acknowledged, else the error text.
async fn write(master: &str, key: &str) -> Result<(), String> {
    match redis_cmd(master, None, &["SET", key, "v"]).await {
        Ok(redis::Value::Okay) => Ok(()),
        Ok(other) => Err(format!("{other:?}")),
        Err(e) => Err(e),
    }
}

/// Writes every 50 ms for `d`; returns how many were acknowledged and the
/// first refusal, if any, with when it came.
async fn writes_for(master: &str, tag: &str, d: Duration) -> (usize, Option<(String, Duration)>) {
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < d {
        if let Err(e) = write(master, &format!("{tag}:{n}")).await {
            return (n, Some((e, t0.elapsed())));
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (n, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_and_two_of_three_sentinels_lost_fences_one_of_three_does_not() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("majority");
    g.extra.push(("FENCE_AFTER_MS", FENCE_MS.to_string()));
    // No failover muddles the test: the Sentinels that stay awake never
    // call the master down.
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", "60000".into()));
    let g = Group::start_with(g, 2, 3, 0).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let mi = g.master_index().await.unwrap();
    let mut pids = vec![];
    for s in &g.sentinels {
        pids.push(
            info_field(&s.addr(), "server", "process_id")
                .await
                .unwrap()
                .parse::<i32>()
                .unwrap(),
        );
    }
    // The fence counts the Sentinels registered when it last read the list.
    assert_eq!(g.registered("sentinels").await.len(), 3);
    let (n, refused) = writes_for(&master, "before", Duration::from_millis(500)).await;
    assert_eq!(refused, None, "refused before anything was frozen ({n} taken)");

    // ZooKeeper and one Sentinel of three: the other two are a majority.
    let thaw = Thaw {
        pids: pids.clone(),
        zk: true,
    };
    zk().pause();
    signal_pid(pids[0], libc::SIGSTOP);
    // Were this a loss of the majority, the fence would trip within
    // FENCE_AFTER_MS + FENCE_SLACK (as below): hold twice that.
    let hold = (Duration::from_millis(FENCE_MS) + FENCE_SLACK) * 2;
    let (kept, refused) = writes_for(&master, "one-lost", hold).await;
    assert_eq!(
        refused.as_ref().map(|(e, _)| e.as_str()),
        None,
        "a write was refused with 2 of 3 Sentinels naming the master ({kept} taken first, after {:?})",
        refused.as_ref().map(|(_, t)| *t)
    );
    assert!(
        !g.redis[mi].proc.log().contains("FENCED"),
        "fenced with 2 of 3 Sentinels confirming:\n{}",
        g.redis[mi].proc.log()
    );

    // A second Sentinel: 1 of 3 is no majority.
    signal_pid(pids[1], libc::SIGSTOP);
    let (taken, refused) = writes_for(&master, "two-lost", Duration::from_millis(FENCE_MS) + FENCE_SLACK * 3).await;
    let (refusal, fenced_after) =
        refused.unwrap_or_else(|| panic!("{taken} writes taken with 1 of 3 Sentinels and no ZooKeeper; never fenced"));
    assert!(refusal.contains("NOREPLICAS"), "the refusal a client sees: {refusal}");
    assert!(
        fenced_after <= Duration::from_millis(FENCE_MS) + FENCE_SLACK,
        "fenced {fenced_after:?} after the second Sentinel froze (FENCE_AFTER_MS={FENCE_MS})"
    );
    // The launcher fences first and logs after: the line may come a moment
    // after the refusal.
    wait_for("the FENCED line with its reason", Duration::from_secs(5), || async {
        let log = g.redis[mi].proc.log();
        let said = log
            .lines()
            .any(|l| l.contains("FENCED") && l.contains("1 of 3 registered Sentinels confirmed it in the last look"));
        if said { Ok(()) } else { Err(log) }
    })
    .await;

    // Everyone back: the fence is lifted.
    drop(thaw);
    let back = Instant::now();
    wait_for("writes to be taken again", Duration::from_secs(10), || async {
        write(&master, "after").await
    })
    .await;
    eprintln!(
        "MEASURE fence majority: ZooKeeper + 1 of 3 Sentinels frozen {hold:?}, {kept} writes, none refused; \
         + a 2nd Sentinel: refused (NOREPLICAS) after {fenced_after:?}; lifted {:?} after the thaw",
        back.elapsed()
    );
}

/// A healthy group (ZooKeeper up) with a short fence, `FENCE_AFTER_MS` =
/// 1000 (the contract allows 500 and up), and one of its three Sentinels
/// hung (SIGSTOP: connections open, no answer). Two Sentinels and
/// ZooKeeper confirm the master on every look, so it must never fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hung_sentinel_of_three_never_fences_a_confirmed_master() {
    let _serial = SERIAL.lock().await;
    const SHORT_MS: u64 = 1000;
    let mut g = Group::new("hung-one");
    g.extra.push(("FENCE_AFTER_MS", SHORT_MS.to_string()));
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", "60000".into()));
    let g = Group::start_with(g, 2, 3, 0).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let mi = g.master_index().await.unwrap();
    let pid: i32 = info_field(&g.sentinels[0].addr(), "server", "process_id")
        .await
        .unwrap()
        .parse()
        .unwrap();
    let thaw = Thaw {
        pids: vec![pid],
        zk: true,
    };
    signal_pid(pid, libc::SIGSTOP);
    // A fence would trip within SHORT_MS + FENCE_SLACK: hold five times that.
    let hold = (Duration::from_millis(SHORT_MS) + FENCE_SLACK) * 5;
    let (kept, refused) = writes_for(&master, "hung", hold).await;
    drop(thaw);
    let log = g.redis[mi].proc.log();
    let fenced: Vec<&str> = log.lines().filter(|l| l.contains("FENCED")).collect();
    assert!(
        refused.is_none() && fenced.is_empty(),
        "with ZooKeeper and 2 of 3 Sentinels confirming: {kept} writes taken, then {refused:?}; {fenced:?}"
    );
    eprintln!("MEASURE one hung Sentinel, FENCE_AFTER_MS={SHORT_MS}: {kept} writes in {hold:?}, none refused");
}
