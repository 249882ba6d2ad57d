//! While `rzk-redis` supervises its server, it keeps checking that the
//! server's role still fits the group, and corrects the two cases Sentinel
//! leaves open or closes slowly.
//!
//! - **A stranded replica**: the server it follows is no longer a master,
//!   and Sentinel did not reconfigure it, because the failover happened
//!   before Sentinel had learned of it (Sentinel discovers replicas from the
//!   master's INFO, every 10 s). If that server died, the replica would
//!   follow a dead address for ever. If it was demoted, the replica stays
//!   linked to it, a chain Sentinel never sees (the new master's INFO lists
//!   only its own replicas), so Sentinel could never promote it and it is
//!   lost when the middle server goes. After [`STRANDED_SETTLE`] it is
//!   pointed at the master the bootstrap decision finds.
//! - **A stale master**: a master that hung (or was cut off) long enough to
//!   be failed over, and came back still believing it is master. Clients
//!   with a stale view keep writing to it, and those writes are lost when it
//!   is demoted. Sentinel demotes it once it notices, which took several
//!   seconds in our chaos runs; the guard demotes it as soon as a majority of
//!   the registered Sentinels name another live master (and none names this
//!   one) on two checks in a row.
//!
//! - **A replica's first full sync**: a replica starts with
//!   `replica-priority 0`, so that nothing promotes it while it holds no
//!   data. Once its first full sync is done (link up, no sync in progress),
//!   the guard restores the configured priority, once.
//!
//! The guard never promotes anything, and it only ever does what Sentinel
//! itself would do.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep};
use tracing::{info, warn};

use crate::decide::{Decision, decide};
use crate::discover::{observe, sentinel_views};
use crate::endpoint::Endpoint;
use crate::probe::{Probe, Role};
use crate::promotion::{SyncState, priority_to_restore};
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
    /// Probes with the group's password.
    pub probe: &'a Probe,
    /// The local server.
    pub local: Endpoint,
    /// This task's announced address.
    pub me: Endpoint,
    /// `MASTER_NAME`.
    pub name: &'a str,
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

    /// The role checks, every [`INTERVAL`], for ever.
    async fn watch_roles(&self, sessions: watch::Receiver<Zk>) -> std::convert::Infallible {
        let mut stranded_since: Option<Instant> = None;
        let mut outvoted_once = false;
        loop {
            sleep(INTERVAL).await;
            let zk = sessions.borrow().clone();
            match self.probe.role(&self.local).await {
                Ok(Role::Replica { master, .. }) => {
                    outvoted_once = false;
                    // Not the link state: a replica can be linked and in
                    // sync with a server that is itself a replica now.
                    if self.probe.is_master(&master).await {
                        stranded_since = None;
                        continue;
                    }
                    let since = *stranded_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= STRANDED_SETTLE && self.rescue_replica(&zk, &master).await {
                        stranded_since = None;
                    }
                }
                Ok(Role::Master) => {
                    stranded_since = None;
                    match self.majority_master(&zk).await {
                        Some(other) if outvoted_once => {
                            self.demote(&other).await;
                            outvoted_once = false;
                        }
                        Some(_) => outvoted_once = true,
                        None => outvoted_once = false,
                    }
                }
                _ => {
                    stranded_since = None;
                    outvoted_once = false;
                }
            }
        }
    }

    /// Points a stranded replica (following `old`, which no longer answers
    /// as master, dead or demoted) at the live master; true when done.
    async fn rescue_replica(&self, zk: &Zk, old: &Endpoint) -> bool {
        let Ok((obs, _)) = observe(zk, self.probe, &self.me, self.name, false).await else {
            return false;
        };
        let Decision::Replicate { master: live, .. } = decide(&obs) else {
            return false;
        };
        if live == *old {
            return false;
        }
        let port = live.port.to_string();
        match self.probe.cmd(&self.local, &["REPLICAOF", &live.host, &port]).await {
            Ok(_) => {
                warn!(addr = %self.me, old = %old, master = %live, "replica followed a server that is no longer a master; re-pointed it");
                true
            }
            Err(e) => {
                warn!(addr = %self.me, error = %e, "could not re-point a stranded replica");
                false
            }
        }
    }

    /// Another live master that a majority of the registered Sentinels name,
    /// provided none of them names this server.
    async fn majority_master(&self, zk: &Zk) -> Option<Endpoint> {
        let registered = zk.registered(&zk.sentinels_dir()).await.ok()?.len();
        let views = sentinel_views(zk, self.probe, self.name).await.ok()?;
        if views.iter().any(|c| c.addr == self.me) {
            return None;
        }
        views
            .into_iter()
            .find(|c| c.live_master && c.addr != self.me && 2 * c.votes > registered)
            .map(|c| c.addr)
    }

    /// Restores the configured priority once the server holds the data;
    /// true when done (then it is never checked again).
    async fn restore_priority_after_sync(&self, started: Instant) -> bool {
        let Ok(info) = self.probe.info(&self.local, "replication").await else {
            return false;
        };
        let Some(now) = SyncState::from_info(&info) else {
            return false;
        };
        let Some(priority) = priority_to_restore(false, now, self.priority) else {
            return false;
        };
        let value = priority.to_string();
        match self
            .probe
            .cmd(&self.local, &["CONFIG", "SET", "replica-priority", &value])
            .await
        {
            Ok(_) => {
                info!(addr = %self.me, priority, sync_s = started.elapsed().as_secs_f32(),
                    "first full sync done; replica-priority restored, this server may now be promoted");
                true
            }
            Err(e) => {
                warn!(addr = %self.me, error = %e, "could not restore replica-priority; retrying");
                false
            }
        }
    }

    async fn demote(&self, master: &Endpoint) {
        let port = master.port.to_string();
        match self.probe.cmd(&self.local, &["REPLICAOF", &master.host, &port]).await {
            Ok(_) => warn!(addr = %self.me, master = %master,
                "this server still acted as master although the Sentinels named another; demoted it to stop split-brain writes"),
            Err(e) => warn!(addr = %self.me, error = %e, "could not demote a stale master"),
        }
    }
}
