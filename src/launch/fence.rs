//! The fence's loop: while `rzk-redis` supervises a master, learn the
//! Sentinels' lease from each snapshot the observer publishes, and make the
//! server refuse writes before the lease ends ([`crate::policy::fence`]).
//!
//! A timer at the fence's deadline fires even when no snapshot comes (a
//! look that hangs on a partition), so the fence never waits for a witness
//! that cannot answer. With no Sentinel registered, ZooKeeper's own server
//! (not the watched copy) is asked whether the record names this master.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{info, warn};

use crate::act::Action;
use crate::launch::Own;
use crate::metrics::metrics;
use crate::observe::{Observer, zk_state};
use crate::policy::fence::{FenceAction, FenceMemory, MARGIN, deadline, fence_step, learn, lease_end};
use crate::reply::config_value;
use crate::snapshot::{Snapshot, ZkSession};
use crate::zk::Zk;

/// The most ZooKeeper may take to answer the fence's question.
const ASK: Duration = Duration::from_millis(1000);
/// `min-replicas-to-write` while fenced: more replicas than can exist.
const FENCED: &str = "2147483647";

/// How often the observer of a master must look for the fence: four times
/// per `FENCE_AFTER_MS` and per the Sentinels' `down-after-milliseconds`
/// (as `snap` shows it), at most once a second.
pub fn look_every(after: Option<Duration>, snap: &Snapshot) -> Duration {
    let down_after = snap
        .registered_answers()
        .map(|a| Duration::from_millis(a.timing.down_after_ms))
        .filter(|d| !d.is_zero())
        .min();
    [after, down_after]
        .into_iter()
        .flatten()
        .map(|d| d / 4)
        .fold(Duration::from_secs(1), Duration::min)
        .max(Duration::from_millis(50))
}

/// Runs for ever: `after` is `FENCE_AFTER_MS` (`None` never fences).
pub async fn run(
    own: &Own<'_>,
    observer: &Observer,
    sessions: watch::Receiver<Zk>,
    after: Option<Duration>,
) -> std::convert::Infallible {
    let Some(after) = after else {
        return std::future::pending().await;
    };
    let mut snapshots = observer.subscribe();
    let mut mem = FenceMemory::default();
    let mut lease: Option<Instant> = None;
    let mut lease_by_zk = false;
    let mut registered = 0;
    // How many of them named this master, not down, in the last look.
    let mut confirming = 0;
    // The configured value, put back when the fence is lifted.
    let mut configured = String::from("0");
    let executor = own.executor();
    loop {
        let due = if mem.fenced { None } else { deadline(&mem, lease, after) };
        let snap = tokio::select! {
            biased;
            changed = snapshots.changed() => match changed {
                Ok(()) => snapshots.borrow_and_update().clone(),
                Err(_) => return std::future::pending().await,
            },
            _ = sleep_until(due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))) => None,
        };
        let (master, now) = match &snap {
            Some(s) => (s.local.as_ref().is_some_and(|l| l.is_master()), s.taken),
            None => (mem.renewed_at.is_some(), Instant::now()),
        };
        if let Some(s) = snap.as_deref().filter(|_| master) {
            // Leases from the two sources are not comparable: a fresh
            // confirmation from ZooKeeper renews whatever the Sentinels
            // last gave, and the Sentinels' first lease after ZooKeeper's
            // renews too.
            let by_zk = s.sentinels.is_empty();
            registered = s.sentinels.len();
            confirming = s
                .registered_answers()
                .filter(|a| a.master == own.me && !a.master_down)
                .count();
            if by_zk != lease_by_zk {
                mem.last_end = None;
                lease_by_zk = by_zk;
            }
            lease = if by_zk {
                let fresh = zk_confirms(own, s, &sessions.borrow().clone()).await;
                if fresh {
                    mem.last_end = None;
                }
                fresh.then_some(now + after)
            } else {
                learn(&mut mem, s, &own.me);
                lease_end(&mem, s.sentinels.len())
            };
        }
        tracing::debug!(
            master,
            snapshot = snap.is_some(),
            lease_left_ms = lease.map(|l| l.saturating_duration_since(now).as_millis() as u64),
            leases = mem.leases.len(),
            "fence look"
        );
        match fence_step(master, lease, now, Some(after), &mut mem) {
            FenceAction::Keep => {}
            FenceAction::Fence(unconfirmed) => {
                if let Ok(v) = own
                    .probe
                    .cmd(&own.local, &["CONFIG", "GET", "min-replicas-to-write"])
                    .await
                    && let Some(v) = config_value(&v).filter(|v| v != FENCED)
                {
                    configured = v;
                }
                match executor.execute(&Action::MinReplicasToWrite(FENCED.into()), None).await {
                    Ok(()) => {
                        metrics().fences.inc();
                        let reason = if registered == 0 {
                            "no Sentinel registered, and ZooKeeper does not confirm the record".to_string()
                        } else {
                            let holding = mem.leases.values().filter(|l| **l > now + MARGIN).count();
                            let needed = registered.saturating_sub(mem.quorum.max(1)) + 1;
                            format!(
                                "{confirming} of {registered} registered Sentinels confirmed it in the last look and {holding} hold a lease; {needed} needed"
                            )
                        };
                        warn!(addr = %own.me, %reason, unconfirmed_ms = unconfirmed.as_millis() as u64,
                            lease_left_ms = lease.map(|l| l.saturating_duration_since(Instant::now()).as_millis() as u64),
                            "FENCED: the lease on this master runs out or was not renewed for FENCE_AFTER_MS (the Sentinels may be failing it over); it refuses writes (NOREPLICAS) until it is renewed");
                    }
                    Err(e) => {
                        // Try again at the next look.
                        mem.fenced = false;
                        warn!(addr = %own.me, error = %e, "could not fence this master");
                    }
                }
            }
            FenceAction::Lift => match executor
                .execute(&Action::MinReplicasToWrite(configured.clone()), None)
                .await
            {
                Ok(()) => info!(addr = %own.me, master, min_replicas_to_write = %configured,
                    "fence lifted: the Sentinels renewed the lease, or this server is no longer master"),
                Err(e) => {
                    mem.fenced = true;
                    warn!(addr = %own.me, error = %e, "could not lift the fence; retrying");
                }
            },
        }
        metrics().fenced.set(i64::from(mem.fenced));
    }
}

/// With no Sentinel registered: whether ZooKeeper's own server (not the
/// watched copy) answers that the record names this master.
async fn zk_confirms(own: &Own<'_>, snap: &Snapshot, zk: &Zk) -> bool {
    if snap.record.master() != Some(&own.me) || zk_state(zk) != ZkSession::Connected {
        return false;
    }
    matches!(timeout(ASK, zk.read_master_fresh()).await, Ok(Ok(r)) if r.master() == Some(&own.me))
}
