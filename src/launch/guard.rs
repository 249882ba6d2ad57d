//! The role guard's loop: while `rzk-redis` supervises its server, look,
//! decide ([`crate::policy::guard`]), act ([`crate::act`]), every second;
//! and restore the replica priority once the first full sync is done
//! ([`crate::policy::promotion`]).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep};
use tracing::{info, warn};

use crate::act::{Action, Executor, LocalAction};
use crate::launch::OwnServer;
use crate::metrics::metrics;
use crate::model::Role;
use crate::observe::{Scope, observe};
use crate::policy::guard::{GuardAction, GuardMemory, Quick, guard, quick};
use crate::policy::promotion::{SyncState, priority_to_restore};
use crate::zk::Zk;

/// How often the role is checked.
const INTERVAL: Duration = Duration::from_secs(1);
/// How often a replica in its first full sync is checked. Short, because
/// Sentinel polls a replica whose link is down every second but one whose
/// link is up only every 10 s: a priority restored within a moment of the
/// link coming up is seen by the Sentinels' next poll, not 10 s later.
const SYNC_CHECK: Duration = Duration::from_millis(100);
/// How long a replica must be stranded before the guard re-points it; gives
/// Sentinel, which normally does it, the first chance.
const STRANDED_SETTLE: Duration = Duration::from_secs(5);

/// The guard of one supervised server.
pub struct RoleGuard<'a> {
    /// The server it looks after.
    pub own: OwnServer<'a>,
    /// The configured `replica-priority`, restored after the first sync.
    pub priority: u32,
    /// Whether the server has held the data since it started (a master
    /// from the start has); until then its priority stays 0.
    pub synced: bool,
}

impl RoleGuard<'_> {
    /// Runs for ever; `sessions` follows the current ZooKeeper session.
    pub async fn run(&self, sessions: watch::Receiver<Zk>) -> std::convert::Infallible {
        let gate = async {
            let started = Instant::now();
            while !self.synced && !self.restore_priority_after_sync(started).await {
                sleep(SYNC_CHECK).await;
            }
        };
        let ((), never) = tokio::join!(gate, self.watch_roles(sessions));
        never
    }

    /// The role checks, every [`INTERVAL`], for ever: a quick look (`ROLE` of
    /// the local server and of the server it follows), and a look at the
    /// group only when the quick one asks for it.
    async fn watch_roles(&self, sessions: watch::Receiver<Zk>) -> std::convert::Infallible {
        let mut mem = GuardMemory::default();
        let executor = Executor::new(self.own.probe, self.own.name);
        loop {
            sleep(INTERVAL).await;
            let role = self.own.probe.role(&self.own.local).await.ok();
            let master_live = match &role {
                Some(Role::Replica { master, .. }) => self.own.probe.is_master(master).await,
                _ => false,
            };
            if quick(role.as_ref(), master_live, &mut mem, Instant::now(), STRANDED_SETTLE) == Quick::Fine {
                continue;
            }
            let zk = sessions.borrow().clone();
            let scope = Scope {
                local_server: Some(&self.own.local),
                local_sentinel: None,
                nodes: matches!(role, Some(Role::Replica { .. })),
            };
            let Ok(mut snap) = observe(&zk, self.own.probe, self.own.name, scope).await else {
                // A failed look breaks "outvoted on two looks in a row".
                mem.outvoted_once = false;
                continue;
            };
            // The local server is probed on its bind address; peers know
            // it by its announced one.
            if let Some(l) = snap.local.as_mut() {
                l.addr = self.own.me.clone();
            }
            let Some(decided) = guard(&snap, &self.own.me, &mut mem, Instant::now(), STRANDED_SETTLE) else {
                continue;
            };
            let action = match &decided {
                GuardAction::Repoint { to, .. } => Action::Repoint {
                    server: self.own.local.clone(),
                    to: to.clone(),
                },
                GuardAction::Demote { to } => Action::Demote {
                    server: self.own.local.clone(),
                    to: to.clone(),
                },
            };
            match (executor.execute(&zk, None, snap.session, &action).await, &decided) {
                (Ok(()), GuardAction::Repoint { from, to }) => {
                    mem.stranded_since = None;
                    metrics().guard_actions.with_label_values(&["repoint"]).inc();
                    warn!(addr = %self.own.me, old = %from, master = %to, "replica followed a server that is no longer a master; re-pointed it");
                }
                (Ok(()), GuardAction::Demote { to }) => {
                    metrics().guard_actions.with_label_values(&["demote"]).inc();
                    warn!(addr = %self.own.me, master = %to,
                    "this server still acted as master although the Sentinels named another; demoted it to stop split-brain writes")
                }
                (Err(e), _) => warn!(addr = %self.own.me, action = ?decided, error = %e, "guard action not done"),
            }
        }
    }

    /// Restores the configured priority once the server holds the data;
    /// true when done (then it is never checked again).
    async fn restore_priority_after_sync(&self, started: Instant) -> bool {
        let Ok(info) = self.own.probe.info(&self.own.local, "replication").await else {
            return false;
        };
        let Some(now) = SyncState::from_info(&info) else {
            return false;
        };
        let Some(priority) = priority_to_restore(false, now, self.priority) else {
            return false;
        };
        let executor = Executor::new(self.own.probe, self.own.name);
        match executor
            .local(&self.own.local, &LocalAction::SetPriority { priority })
            .await
        {
            Ok(_) => {
                info!(addr = %self.own.me, priority, sync_s = started.elapsed().as_secs_f32(),
                    "first full sync done; replica-priority restored, this server may now be promoted");
                true
            }
            Err(e) => {
                warn!(addr = %self.own.me, error = %e, "could not restore replica-priority; retrying");
                false
            }
        }
    }
}
