//! The fence's loop: while `rzk-redis` supervises a master, read the
//! witnesses from each snapshot the observer publishes, and make the
//! server refuse writes when neither has confirmed it for
//! `FENCE_AFTER_MS` ([`crate::policy::fence`]).
//!
//! The Sentinels' answers come from the snapshot, which the observer takes
//! four times per `FENCE_AFTER_MS`; ZooKeeper is asked only when the
//! Sentinels do not confirm, and then its own server, not the watched copy
//! (its question is whether ZooKeeper answers now). A timer at the deadline
//! fences even when no snapshot comes (a look that hangs on a partition).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{info, warn};

use crate::act::Action;
use crate::launch::Own;
use crate::metrics::metrics;
use crate::observe::{Observer, zk_state};
use crate::policy::fence::{FenceAction, FenceMemory, Witnesses, fence_step};
use crate::reply::config_value;
use crate::snapshot::{Snapshot, ZkSession};
use crate::zk::Zk;

/// The most ZooKeeper may take to answer the fence's question.
const ASK: Duration = Duration::from_millis(1000);
/// `min-replicas-to-write` while fenced: more replicas than can exist.
const FENCED: &str = "2147483647";

/// How often the observer of a master must look for the fence.
pub fn look_every(after: Option<Duration>) -> Duration {
    after.map_or(Duration::from_secs(1), |a| (a / 4).min(Duration::from_secs(1)))
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
    // The configured value, put back when the fence is lifted.
    let mut configured = String::from("0");
    let executor = own.executor();
    loop {
        // The deadline does not wait for a witness cut off by a partition:
        // a late confirmation lifts the fence at the next look.
        let deadline = match mem.confirmed_at {
            Some(t) if !mem.fenced => t + after,
            _ => Instant::now() + Duration::from_secs(3600),
        };
        let snap: Option<Arc<Snapshot>> = tokio::select! {
            biased;
            changed = snapshots.changed() => match changed {
                Ok(()) => snapshots.borrow_and_update().clone(),
                Err(_) => return std::future::pending().await,
            },
            _ = sleep_until(deadline) => None,
        };
        let master = snap.as_ref().map_or(mem.confirmed_at.is_some(), |s| {
            s.local.as_ref().is_some_and(|l| l.is_master())
        });
        let witnesses = match &snap {
            Some(s) if master => ask(own, s, &sessions.borrow().clone(), deadline).await,
            Some(_) => Witnesses::default(),
            None => Witnesses {
                registered: observer.latest().map_or(0, |s| s.sentinels.len()),
                ..Witnesses::default()
            },
        };
        let confirmed = master && witnesses.confirm(&own.me);
        // The witnesses spoke when the look began.
        let at = snap.as_ref().map_or_else(Instant::now, |s| s.taken);
        match fence_step(master, confirmed, at, Some(after), &mut mem) {
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
                        warn!(addr = %own.me, unconfirmed_ms = unconfirmed.as_millis() as u64,
                            why = %witnesses.why_not(&own.me),
                            "FENCED: no witness confirmed this master in time; it refuses writes (NOREPLICAS) until one does");
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
                    "fence lifted: a witness confirms this master, or it is no longer master"),
                Err(e) => {
                    mem.fenced = true;
                    warn!(addr = %own.me, error = %e, "could not lift the fence; retrying");
                }
            },
        }
        metrics().fenced.set(i64::from(mem.fenced));
    }
}

/// The witnesses of one look: the registered Sentinels' answers, and
/// ZooKeeper's own answer (not the watched copy) when they do not confirm,
/// bounded by the deadline.
async fn ask(own: &Own<'_>, snap: &Snapshot, zk: &Zk, deadline: Instant) -> Witnesses {
    let mut w = Witnesses {
        zk: None,
        registered: snap.sentinels.len(),
        sentinels: snap.registered_answers().map(|a| a.master.clone()).collect(),
    };
    if !w.confirm(&own.me) && zk_state(zk) == ZkSession::Connected {
        let limit = ASK.min(deadline.saturating_duration_since(Instant::now()));
        if let Ok(Ok(record)) = timeout(limit, zk.read_master_fresh()).await {
            w.zk = Some(record.master().cloned());
        }
    }
    w
}
