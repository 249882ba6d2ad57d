//! The one place that acts on other servers and on the record.
//!
//! Policies return actions as values; the executor performs them, but only
//! while the world they were decided on can still be trusted: the ZooKeeper
//! session that observed the snapshot must still be the live, connected
//! one (a handle of an expired session reports itself expired), and for
//! actions decided under the bootstrap lock, the lock must still be held. After a session expiry a new session (and a new snapshot)
//! may see a different world: an action decided on the old one is dropped,
//! and the caller observes again.

use std::time::Duration;

use zookeeper_client::{Error as ZkError, LockClient};

use crate::config::MonitorSettings;
use crate::model::Endpoint;
use crate::model::Secret;
use crate::observe::{SessionMark, ZkSession};
use crate::policy::reconcile::RecordWrite;
use crate::probe::{Probe, ProbeError};
use crate::render::monitor_settings;
use crate::zk::Zk;

/// Something to do to the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Compare-and-set the record.
    WriteRecord(RecordWrite),
    /// Point replica `server` at master `to` (it followed a server that is
    /// no longer a master).
    Repoint {
        /// The replica.
        server: Endpoint,
        /// The live master.
        to: Endpoint,
    },
    /// Make master `server` a replica of `to` (a majority names `to`).
    Demote {
        /// The stale master.
        server: Endpoint,
        /// The master the Sentinels name.
        to: Endpoint,
    },
    /// `REPLICAOF NO ONE` on `replica`, then wait until it answers as master.
    Promote {
        /// The replica to promote.
        replica: Endpoint,
    },
    /// `SENTINEL RESET <name>` on one Sentinel (it forgets dead peers).
    SentinelReset {
        /// The Sentinel.
        sentinel: Endpoint,
    },
    /// `SENTINEL REMOVE`, `MONITOR`, `SET` on `sentinel`, so that it
    /// monitors `to` with the configured settings.
    RepointSentinel {
        /// The Sentinel.
        sentinel: Endpoint,
        /// The master to monitor.
        to: Endpoint,
    },
}

/// Something to do to the launcher's own server only. It touches no other
/// server and no shared state, so it needs no fence: it must work even
/// while ZooKeeper is away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAction {
    /// `CLIENT PAUSE <ms> WRITE`: clients block instead of writing to a
    /// master that is about to hand over.
    PauseWrites {
        /// How long.
        ms: u128,
    },
    /// `CONFIG SET replica-priority <priority>`.
    SetPriority {
        /// The priority.
        priority: u32,
    },
    /// `CLIENT UNPAUSE`: ends a pause (a switchover whose old master has
    /// been made a replica, or that gave up before asking for a failover).
    Unpause,
    /// `REPLICAOF <to>`: the old master of a switchover follows the new one
    /// at once, as Sentinel would a few seconds later.
    Follow {
        /// The new master.
        to: Endpoint,
    },
    /// `CONFIG SET min-replicas-to-write <n>`: the fence raises it above
    /// any possible count of replicas, so every write gets `-NOREPLICAS`,
    /// and lifting the fence puts the configured value back.
    MinReplicasToWrite {
        /// The value.
        n: String,
    },
}

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// The snapshot can no longer be trusted; observe again.
    #[error("dropped: {0}; observing again")]
    Fenced(&'static str),
    /// ZooKeeper refused the write (e.g. `BadVersion`: someone wrote first).
    #[error("ZooKeeper: {0}")]
    Zk(#[from] ZkError),
    /// A Redis or Sentinel command failed.
    #[error("{0}")]
    Redis(#[from] ProbeError),
    /// The server did not end up in the role asked for.
    #[error("{0}")]
    NotDone(String),
}

/// Performs actions. `monitor` is needed only for [`Action::RepointSentinel`].
pub struct Executor<'a> {
    /// Probes with the group's password.
    pub probe: &'a Probe,
    /// `MASTER_NAME`.
    pub name: &'a str,
    /// The Sentinel settings and password given to a re-pointed Sentinel.
    pub monitor: Option<(&'a MonitorSettings, Option<&'a Secret>)>,
}

impl<'a> Executor<'a> {
    /// An executor for the launchers that never re-point a Sentinel.
    pub fn new(probe: &'a Probe, name: &'a str) -> Self {
        Executor {
            probe,
            name,
            monitor: None,
        }
    }

    /// Performs `action`, decided on a snapshot `observed` by that session,
    /// through `zk` (the current session), after checking that it is still
    /// the same, connected session and, with `lock`, that the lock is held.
    pub async fn execute(
        &self,
        zk: &Zk,
        lock: Option<&LockClient<'_>>,
        observed: SessionMark,
        action: &Action,
    ) -> Result<(), ActError> {
        fence(zk, lock, observed).await?;
        match action {
            Action::WriteRecord(w) => {
                zk.write_master(lock, &w.master, w.expected).await?;
            }
            Action::Repoint { server, to } | Action::Demote { server, to } => {
                let port = to.port.to_string();
                self.redis(server, &["REPLICAOF", &to.host, &port]).await?;
            }
            Action::Promote { replica } => {
                self.redis(replica, &["REPLICAOF", "NO", "ONE"]).await?;
                let mut answered = false;
                for _ in 0..50 {
                    if self.probe.is_master(replica).await {
                        answered = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if !answered {
                    return Err(ActError::NotDone(format!(
                        "{replica} does not answer as master after REPLICAOF NO ONE"
                    )));
                }
            }
            Action::SentinelReset { sentinel } => {
                self.redis(sentinel, &["SENTINEL", "RESET", self.name]).await?;
            }
            Action::RepointSentinel { sentinel, to } => self.repoint_sentinel(sentinel, to).await?,
        }
        Ok(())
    }

    /// `SENTINEL FAILOVER <name>` on `sentinel`, for the planned hand-over.
    /// Not fenced by ZooKeeper: the Sentinels decide on their own view, and
    /// a master stopping during a ZooKeeper outage must still hand over.
    pub async fn request_failover(&self, sentinel: &Endpoint) -> Result<(), ActError> {
        self.redis(sentinel, &["SENTINEL", "FAILOVER", self.name]).await
    }

    /// Performs `action` on the launcher's own server at `local`.
    pub async fn local(&self, local: &Endpoint, action: &LocalAction) -> Result<(), ActError> {
        match action {
            LocalAction::PauseWrites { ms } => self.redis(local, &["CLIENT", "PAUSE", &ms.to_string(), "WRITE"]).await,
            LocalAction::SetPriority { priority } => {
                self.redis(local, &["CONFIG", "SET", "replica-priority", &priority.to_string()])
                    .await
            }
            LocalAction::Unpause => self.redis(local, &["CLIENT", "UNPAUSE"]).await,
            LocalAction::Follow { to } => self.redis(local, &["REPLICAOF", &to.host, &to.port.to_string()]).await,
            LocalAction::MinReplicasToWrite { n } => {
                self.redis(local, &["CONFIG", "SET", "min-replicas-to-write", n]).await
            }
        }
    }

    async fn redis(&self, server: &Endpoint, args: &[&str]) -> Result<(), ActError> {
        self.probe.cmd(server, args).await.map(|_| ()).map_err(ActError::from)
    }

    async fn repoint_sentinel(&self, sentinel: &Endpoint, to: &Endpoint) -> Result<(), ActError> {
        let Some((monitor, password)) = self.monitor else {
            return Err(ActError::NotDone("no Sentinel settings to re-point with".into()));
        };
        let name = self.name;
        let _ = self.probe.cmd(sentinel, &["SENTINEL", "REMOVE", name]).await;
        let port = to.port.to_string();
        let quorum = monitor.quorum.to_string();
        self.redis(sentinel, &["SENTINEL", "MONITOR", name, &to.host, &port, &quorum])
            .await?;
        let settings = monitor_settings(monitor, password);
        let mut args: Vec<&str> = vec!["SENTINEL", "SET", name];
        for (k, v) in &settings {
            args.push(k);
            args.push(v);
        }
        if let Err(e) = self.redis(sentinel, &args).await {
            // Without its settings (auth-pass, down-after) the Sentinel would
            // monitor with defaults; remove it: the follower then sees a
            // Sentinel that monitors nothing and re-points it from scratch.
            let _ = self.probe.cmd(sentinel, &["SENTINEL", "REMOVE", name]).await;
            return Err(e);
        }
        Ok(())
    }
}

/// The fence: the session that observed must be `zk`'s, connected, and
/// holding `lock` when one is given.
async fn fence(zk: &Zk, lock: Option<&LockClient<'_>>, observed: SessionMark) -> Result<(), ActError> {
    if SessionMark::of(zk) != observed {
        return Err(ActError::Fenced(
            "the ZooKeeper session that observed has been replaced",
        ));
    }
    if ZkSession::of(zk) != ZkSession::Connected {
        return Err(ActError::Fenced("the ZooKeeper session is not connected"));
    }
    if let Some(lock) = lock
        && !zk.holds(lock.lock_path()).await
    {
        return Err(ActError::Fenced("the bootstrap lock is no longer held"));
    }
    Ok(())
}
