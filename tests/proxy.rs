//! Clients that know one address: a real HAProxy configured with the docs'
//! recipe (`docs/haproxy.cfg`, only its bind addresses and server lines
//! the test's own) in front of one group of 3 rzk-redis (admin API on), 3
//! rzk-sentinel and 1 rzk-watcher, and a writer that goes only through the
//! proxy, `SET` then `WAIT 1` on one kept connection. Three ways the master
//! moves: its task SIGKILLed, its task SIGTERMed (the hand-over), `rzkctl
//! switchover --to`. In each:
//! - no write that `WAIT 1` confirmed is lost (plain `+OK`s lost are
//!   reported);
//! - the first write confirmed through the proxy comes at most 1.5 s after
//!   the record moved, both timed by what happened: the record's change by
//!   a ZooKeeper watch, the write by its own `WAIT` reply;
//! - no client stays connected to a server that is no longer master: an
//!   idle connection made straight to the old master and one made through
//!   the proxy are closed by the other end, and the old master, if still
//!   running, has none of the test's clients once the proxy left it.
//!
//! The master + 1 replica partition through the same proxy is in
//! `partition.rs` (network namespaces).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::group::*;
use common::haproxy::*;
use common::*;

/// The one group of this binary, built by the first scenario; the
/// scenarios run one at a time and each leaves it whole again.
static GROUP: tokio::sync::Mutex<Option<Group>> = tokio::sync::Mutex::const_new(None);

/// The bound on the first confirmed write after the record moved.
const FIRST_ACK: Duration = Duration::from_millis(1500);

/// The scenarios under way. The last one to end, passed or failed, stops
/// the group: a static is never dropped, and the launchers would outlive
/// the binary (they drop root, which clears the parent-death signal).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Counts a scenario while it lives; declared before the group's lock, so
/// that it is dropped after it.
struct Running;

impl Running {
    fn enter() -> Running {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if RUNNING.fetch_sub(1, Ordering::SeqCst) == 1
            && let Ok(mut g) = GROUP.try_lock()
        {
            g.take();
        }
    }
}

async fn group() -> tokio::sync::MutexGuard<'static, Option<Group>> {
    let mut g = GROUP.lock().await;
    if g.is_none() {
        let mut new = Group::new("proxy");
        new.admin = true;
        *g = Some(Group::start_with(new, 3, 3, 1).await);
    }
    g
}

/// How the master is made to move.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Move {
    Kill,
    Term,
    Switchover,
}

async fn scenario(how: Move) {
    let _running = Running::enter();
    let mut guard = group().await;
    let g = guard.as_mut().unwrap();
    let old = g.wait_healthy(Duration::from_secs(60)).await;
    let mi = g.redis.iter().position(|m| m.addr() == old).unwrap();
    let replicas: Vec<String> = g.redis.iter().map(Member::addr).filter(|a| *a != old).collect();
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    wait_sentinels_know(&sentinels, &replicas, None, Duration::from_secs(30)).await;
    let proxy = Haproxy::start(g, None, None);
    proxy.wait_only_up("redis_write", &old, Duration::from_secs(10)).await;
    let record = RecordWatch::start(&g.root).await;
    // Clients that go idle: one straight to the master, one through the
    // proxy (which sends it to the master).
    let direct = idle_connection(&old, "rzk-direct-idle", Duration::from_secs(60)).await;
    let proxied = idle_connection(&proxy.write, "rzk-proxy-idle", Duration::from_secs(60)).await;
    let writer = ProxyWriter::start(proxy.write.clone(), &format!("{how:?}"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let target = replicas.last().unwrap().clone();
    let ctl_out = match how {
        Move::Kill => {
            g.redis[mi].proc.signal(libc::SIGKILL);
            None
        }
        Move::Term => {
            g.redis[mi].proc.signal(libc::SIGTERM);
            None
        }
        Move::Switchover => {
            let to = target.replacen(' ', ":", 1);
            Some(g.rzkctl(&["switchover", "--to", &to, "--timeout", "30"]).await)
        }
    };
    let (moved_at, new) = record.wait_moved(&old, failover_budget()).await;
    if how == Move::Switchover {
        assert_eq!(new, target, "switchover --to {target}: {ctl_out:?}");
    }
    // The proxy ends up sending to the new master only; the writer then
    // writes a little longer.
    proxy.wait_only_up("redis_write", &new, Duration::from_secs(15)).await;
    let left_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // No client of the test stays on the old master once the proxy left
    // it (the writer's connections, the idle ones).
    let stale = if how == Move::Switchover {
        client_names(&old)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with("rzk-"))
            .collect()
    } else {
        vec![]
    };
    let ledger = writer.finish().await;
    let direct_closed = direct.await.unwrap();
    let proxied_closed = proxied.await.unwrap();

    let rel = |t: Option<Instant>| {
        t.map(|t| {
            if t >= moved_at {
                format!("+{:?}", t - moved_at)
            } else {
                format!("-{:?}", moved_at - t)
            }
        })
    };
    let wait_lost = missing_keys(
        &new,
        None,
        &ledger.wait_acked.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
    )
    .await;
    let plain: Vec<String> = ledger.plain_ok.iter().map(|(k, _)| k.clone()).collect();
    let plain_lost = missing_keys(&new, None, &plain).await;
    let first = ledger.first_ack_after(moved_at);
    let gap = ledger.gap_around(moved_at);
    eprintln!(
        "MEASURE proxy {how:?}: record moved {:?} after the event; first WAIT-confirmed write through the proxy {first:?} after the record moved; write gap {gap:?}; {}; idle connection straight to the old master closed {:?}, through the proxy {:?} (relative to the record move); proxy on the new master only {:?} after the move; proxy state changes: {:?}",
        moved_at - started,
        ledger.tally(wait_lost.len(), plain_lost.len()),
        rel(direct_closed),
        rel(proxied_closed),
        left_at - moved_at,
        proxy.state_changes(),
    );
    // What the writer met, relative to the record's move: the first and
    // last errors after the event.
    let errors: Vec<String> = ledger
        .errors
        .iter()
        .filter(|(at, _)| *at > started)
        .map(|(at, e)| format!("{} {}", rel(Some(*at)).unwrap(), e.chars().take(60).collect::<String>()))
        .collect();
    let sample: Vec<&String> = errors.iter().take(4).chain(errors.iter().rev().take(4).rev()).collect();
    assert!(
        ledger.wait_acked.iter().any(|(_, at)| *at < started),
        "the writer confirmed nothing before the event: {sample:?}"
    );
    assert_none_lost(
        &format!("{how:?}: the WAIT 1 writer"),
        &wait_lost,
        ledger.wait_acked.len(),
    );
    let first =
        first.unwrap_or_else(|| panic!("{how:?}: no write confirmed after the record moved; errors {sample:?}"));
    assert!(
        first <= FIRST_ACK,
        "{how:?}: the first write confirmed through the proxy came {first:?} after the record moved (bound {FIRST_ACK:?}); errors meanwhile {sample:?}; proxy: {:?}",
        proxy.state_changes()
    );
    // The idle connections: closed by the other end, at the latest 1 s
    // after the record moved (the old master dropping its clients as it is
    // demoted, or its end, or the proxy's shutdown-sessions).
    for (what, closed) in [
        ("straight to the old master", direct_closed),
        ("through the proxy", proxied_closed),
    ] {
        let closed = closed.unwrap_or_else(|| panic!("{how:?}: the idle connection {what} was never closed"));
        assert!(
            closed <= moved_at + Duration::from_secs(1),
            "{how:?}: the idle connection {what} was closed {:?} after the record moved",
            closed - moved_at
        );
    }
    assert!(
        stale.is_empty(),
        "{how:?}: the old master {old} still has clients {stale:?}"
    );

    // Whole again for the next scenario: a replacement for a stopped task.
    drop(proxy);
    if how != Move::Switchover {
        g.redis[mi]
            .proc
            .wait_exit(Duration::from_secs(30))
            .expect("the old master's launcher exits");
        g.redis.remove(mi);
        g.start_redis();
    }
    g.wait_healthy(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_masters_task() {
    scenario(Move::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_masters_task() {
    scenario(Move::Term).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rzkctl_switchover_to_a_replica() {
    scenario(Move::Switchover).await;
}
