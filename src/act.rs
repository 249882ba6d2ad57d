//! The one place that acts: every change a binary makes to the record, to
//! a server or to a Sentinel goes through [`Executor::execute`].
//!
//! Policies return actions as values; the executor performs them, with the
//! fence each kind needs ([`Action::fenced`]):
//! - **Fenced** actions change shared state, or act on what a look at the
//!   group said: the record, a re-point or demotion, a takeover's
//!   promotion, a Sentinel's reset or re-point, the switchover intent. They
//!   run only while the ZooKeeper session that observed the snapshot is
//!   still the live, connected one and, for actions decided under the
//!   bootstrap lock, the lock is still held. After a session expiry a new
//!   session may see a different world: the action is dropped, and the
//!   caller observes again.
//! - **Unfenced** actions touch only the launcher's own server (pause,
//!   priority, follow, the write fence) or ask the Sentinels to decide on
//!   their own view (`SENTINEL FAILOVER`). They must work while ZooKeeper
//!   is away: a master handing over, or fencing itself, cannot wait for it.

use std::path::Path;
use std::time::Duration;

use redis::Value;
use tracing::{info, warn};
use zookeeper_client::{Error as ZkError, LockClient};

use crate::config::MonitorSettings;
use crate::datadir;
use crate::metrics::metrics;
use crate::model::{Endpoint, Secret, unix_ms};
use crate::observe::{server_state, session_mark, zk_state};
use crate::policy::diverged::{Divergence, Live, live, writes};
use crate::policy::reconcile::RecordWrite;
use crate::probe::{Probe, ProbeError};
use crate::render::{TlsPaths, monitor_settings};
use crate::snapshot::{SessionMark, ZkSession};
use crate::zk::Zk;

/// Something to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Compare-and-set the record.
    WriteRecord(RecordWrite),
    /// Point replica `server` at master `to` (it followed a server that is
    /// no longer a master).
    Repoint { server: Endpoint, to: Endpoint },
    /// Make master `server` a replica of `to` (a majority names `to`); for
    /// the own server, as [`Action::Follow`] does.
    Demote { server: Endpoint, to: Endpoint },
    /// `REPLICAOF NO ONE` on `replica`, then wait until it answers as master.
    Promote { replica: Endpoint },
    /// `SENTINEL RESET <name>` on one Sentinel (it forgets dead peers).
    SentinelReset { sentinel: Endpoint },
    /// `SENTINEL REMOVE`, `MONITOR`, `SET` on `sentinel`, so that it
    /// monitors `to` with the configured settings.
    RepointSentinel { sentinel: Endpoint, to: Endpoint },
    /// Compare-and-set the switchover intent (`expected` `None`: create it).
    WriteIntent {
        /// The intent's JSON.
        data: Vec<u8>,
        /// The version read before.
        expected: Option<i32>,
    },
    /// `CLIENT PAUSE <ms> WRITE` on the own server: clients block instead
    /// of writing to a master that is being failed over.
    PauseWrites(Duration),
    /// `CLIENT UNPAUSE` on the own server.
    Unpause,
    /// `CONFIG SET replica-priority` on the own server.
    SetPriority(u32),
    /// The own server becomes a replica of `to`: `REPLICAOF <to>`, then
    /// the write pause is lifted (paused writes fail with `READONLY`), then
    /// its normal clients are dropped, so that they connect again and find
    /// the new master rather than read from a replica. The old master of a
    /// switchover, a hand-over or a freeze follows the new one at once, as
    /// Sentinel would a few seconds later (and Sentinel drops the clients
    /// too when it does).
    Follow(Endpoint),
    /// `CONFIG SET min-replicas-to-write` on the own server: the fence
    /// raises it above any possible count of replicas, so every write gets
    /// `-NOREPLICAS`; lifting the fence puts the configured value back.
    MinReplicasToWrite(String),
    /// `CONFIG SET shutdown-timeout` on the own server: how long a master
    /// that stops waits for its replicas to catch up; a stop must end
    /// within the hand-over's budget.
    ShutdownTimeout(Duration),
    /// `SENTINEL FAILOVER <name>` on a Sentinel.
    RequestFailover(Endpoint),
    /// `SENTINEL DEBUG info-period` on the launcher's own Sentinel: how
    /// often it reads its replicas' `INFO`.
    SentinelInfoPeriod(Duration),
    /// `CONFIG SET tls-cert-file … tls-key-file … tls-ca-cert-file …` on
    /// the own server or Sentinel: it serves the new certificate from its
    /// next handshake on, without a restart.
    TlsFiles(TlsPaths),
    /// Switches the own server between plain text (`false`) and TLS
    /// (`true`) on its port, replication included, without a restart.
    /// Its TLS files are loaded already. Open connections, its link to
    /// its master among them, stay as they were opened.
    SpeakTls(bool, u16),
    /// Drops the own server's link to its master, which it opens again at
    /// once (a partial resync), speaking as it now does.
    DropMasterLink,
}

impl Action {
    /// Whether it needs the session fence (see the module documentation).
    pub fn fenced(&self) -> bool {
        !matches!(
            self,
            Action::PauseWrites(_)
                | Action::Unpause
                | Action::SetPriority(_)
                | Action::Follow(_)
                | Action::MinReplicasToWrite(_)
                | Action::ShutdownTimeout(_)
                | Action::RequestFailover(_)
                | Action::SentinelInfoPeriod(_)
                | Action::TlsFiles(_)
                | Action::SpeakTls(..)
                | Action::DropMasterLink
        )
    }
}

/// The world a fenced action was decided on.
#[derive(Clone, Copy)]
pub struct Observed<'a> {
    /// The current session.
    pub zk: &'a Zk,
    /// The session that observed the snapshot.
    pub session: SessionMark,
    /// The bootstrap lock the decision was made under, if any.
    pub lock: Option<&'a LockClient<'a>>,
}

impl<'a> Observed<'a> {
    /// Decided on a snapshot of `session`, outside the bootstrap lock.
    pub fn new(zk: &'a Zk, session: SessionMark) -> Observed<'a> {
        Observed {
            zk,
            session,
            lock: None,
        }
    }
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

/// How long a demotion pauses the own server's writes (milliseconds) while
/// it compares; `REPLICAOF` then makes them fail, and the pause is lifted.
const KEEP_PAUSE_MS: &str = "5000";

/// Performs actions.
pub struct Executor<'a> {
    /// Probes with the group's password.
    pub probe: &'a Probe,
    /// `MASTER_NAME`.
    pub name: &'a str,
    /// The launcher's own server (its bind address), for the unfenced
    /// actions on it.
    pub local: Option<&'a Endpoint>,
    /// The Sentinel settings and password given to a re-pointed Sentinel.
    pub monitor: Option<(&'a MonitorSettings, Option<&'a Secret>)>,
    /// The own server's listener that clients use (its task address), when
    /// the executor's own connections come in on another (`local` on
    /// 127.0.0.1): a demotion drops only the normal clients that came in
    /// there.
    pub clients: Option<&'a Endpoint>,
    /// `DATA_DIR`, where a demotion of the own server keeps what only it
    /// has (`Executor::keep_past`).
    pub keep_in: Option<&'a Path>,
}

impl<'a> Executor<'a> {
    /// An executor with no own server.
    pub fn new(probe: &'a Probe, name: &'a str) -> Self {
        Executor {
            probe,
            name,
            local: None,
            monitor: None,
            clients: None,
            keep_in: None,
        }
    }

    /// An executor for a launcher whose own server is at `local`.
    pub fn with_local(probe: &'a Probe, name: &'a str, local: &'a Endpoint) -> Self {
        Executor {
            local: Some(local),
            ..Executor::new(probe, name)
        }
    }

    /// Performs `action`. A fenced one needs `observed`, and runs only
    /// while that world can be trusted.
    pub async fn execute(&self, action: &Action, observed: Option<Observed<'_>>) -> Result<(), ActError> {
        if action.fenced() {
            let o = observed.ok_or(ActError::Fenced("a fenced action decided on no snapshot"))?;
            fence(o).await?;
        }
        let session = || observed.ok_or(ActError::Fenced("no ZooKeeper session"));
        match action {
            Action::WriteRecord(w) => {
                let o = session()?;
                o.zk.write_master(o.lock, &w.master, w.expected, w.change(unix_ms()))
                    .await?;
            }
            Action::WriteIntent { data, expected } => session()?.zk.write_switchover(data, *expected).await?,
            Action::Repoint { server, to } => self.replicaof(server, to).await?,
            Action::Demote { server, to } if Some(server) == self.local => self.become_replica(to).await?,
            Action::Demote { server, to } => self.replicaof(server, to).await?,
            Action::Promote { replica } => self.promote(replica).await?,
            Action::SentinelReset { sentinel } => self.redis(sentinel, &["SENTINEL", "RESET", self.name]).await?,
            Action::RepointSentinel { sentinel, to } => self.repoint_sentinel(sentinel, to).await?,
            Action::RequestFailover(s) => self.redis(s, &["SENTINEL", "FAILOVER", self.name]).await?,
            Action::PauseWrites(d) => {
                self.on_own(&["CLIENT", "PAUSE", &d.as_millis().to_string(), "WRITE"])
                    .await?
            }
            Action::Unpause => self.on_own(&["CLIENT", "UNPAUSE"]).await?,
            Action::SetPriority(p) => self.config_set(&["replica-priority", &p.to_string()]).await?,
            Action::Follow(to) => self.become_replica(to).await?,
            Action::MinReplicasToWrite(n) => self.config_set(&["min-replicas-to-write", n]).await?,
            Action::ShutdownTimeout(d) => self.config_set(&["shutdown-timeout", &d.as_secs().to_string()]).await?,
            Action::TlsFiles(p) => {
                let [cert, key, ca] = [&p.cert, &p.key, &p.ca].map(|f| f.to_string_lossy().into_owned());
                self.config_set(&["tls-cert-file", &cert, "tls-key-file", &key, "tls-ca-cert-file", &ca])
                    .await?
            }
            Action::SpeakTls(tls, port) => {
                // One CONFIG SET: the old listener closes before the new
                // one binds the same port.
                let (closed, opened, replication) = if *tls {
                    ("port", "tls-port", "yes")
                } else {
                    ("tls-port", "port", "no")
                };
                let port = port.to_string();
                self.config_set(&[closed, "0", opened, &port, "tls-replication", replication])
                    .await?
            }
            Action::DropMasterLink => self.on_own(&["CLIENT", "KILL", "TYPE", "master"]).await?,
            Action::SentinelInfoPeriod(d) => {
                self.on_own(&["SENTINEL", "DEBUG", "info-period", &d.as_millis().to_string()])
                    .await?
            }
        }
        Ok(())
    }

    fn own(&self) -> Result<&Endpoint, ActError> {
        self.local
            .ok_or_else(|| ActError::NotDone("an action on the own server, but this executor has none".into()))
    }

    async fn redis(&self, server: &Endpoint, args: &[&str]) -> Result<(), ActError> {
        self.probe.cmd(server, args).await.map(|_| ()).map_err(ActError::from)
    }

    /// `args` on the own server.
    async fn on_own(&self, args: &[&str]) -> Result<(), ActError> {
        self.redis(self.own()?, args).await
    }

    /// `CONFIG SET` of `settings` (names and values) on the own server.
    async fn config_set(&self, settings: &[&str]) -> Result<(), ActError> {
        self.on_own(&[&["CONFIG", "SET"], settings].concat()).await
    }

    async fn replicaof(&self, server: &Endpoint, to: &Endpoint) -> Result<(), ActError> {
        let port = to.port.to_string();
        self.redis(server, &["REPLICAOF", &to.host, &port]).await
    }

    /// [`Action::Follow`]: writes paused, what only the own server has
    /// kept aside ([`Executor::keep_past`]), then `REPLICAOF`. Only
    /// `REPLICAOF` decides success; lifting the pause and dropping the
    /// clients are logged when they fail.
    async fn become_replica(&self, to: &Endpoint) -> Result<(), ActError> {
        let own = self.own()?;
        if let Some(dir) = self.keep_in {
            // Nothing is written between the comparison and the demotion
            // (a pause under way is only ever lengthened).
            if let Err(e) = self.redis(own, &["CLIENT", "PAUSE", KEEP_PAUSE_MS, "WRITE"]).await {
                warn!(addr = %own, error = %e, "could not pause writes before the demotion");
            }
            self.keep_past(own, to, dir).await;
        }
        self.replicaof(own, to).await?;
        if let Err(e) = self.redis(own, &["CLIENT", "UNPAUSE"]).await {
            warn!(addr = %own, error = %e, "could not lift the write pause of the demoted server; it lapses on its own");
        }
        let args = drop_clients_args(self.clients.filter(|c| Some(*c) != self.local));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match self.probe.cmd(own, &args).await {
            Ok(Value::Int(n)) => {
                info!(addr = %own, master = %to, clients = n, "demoted; its clients were dropped so that they find the new master")
            }
            Ok(other) => warn!(addr = %own, reply = ?other, "odd reply to CLIENT KILL"),
            Err(e) => warn!(addr = %own, error = %e, "could not drop the demoted server's clients"),
        }
        Ok(())
    }

    /// Before the own server, a master, follows `to`: the writes it made
    /// past `to`'s copy of its history, which the full sync would throw
    /// away, are read from its backlog and kept in `dir`
    /// ([`datadir::WRITES`]), or its data files are kept whole when that
    /// cannot be told ([`crate::policy::diverged::live`]).
    async fn keep_past(&self, own: &Endpoint, to: &Endpoint, dir: &Path) {
        let (old, new) = tokio::join!(server_state(self.probe, own, own), server_state(self.probe, to, to));
        let Some(old) = old.filter(|o| o.is_master()) else {
            return;
        };
        let Some(new) = new else {
            let d = Divergence::Unknown(format!("the new master {to} did not answer INFO"));
            return datadir::keep_logged(dir, &d, None, None);
        };
        let whole = |why: String| {
            let d = Divergence::Unknown(why);
            datadir::keep_logged(dir, &d, None, Some((to, &new.replid, new.offset)))
        };
        let (replid, from, last) = match live(&old, &new) {
            Live::Contained => {
                return info!(addr = %own, master = %to, offset = old.offset, master_offset = new.offset,
                    "the demoted master holds nothing the master lacks");
            }
            Live::Unknown(why) => return whole(why),
            Live::Read { replid, from, to } => (replid, from, to),
        };
        let as_replica = self.clients.unwrap_or(own);
        let stream = match self.probe.backlog(own, as_replica, &replid, from, last).await {
            Ok(s) => s,
            Err(e) => return whole(format!("its backlog past offset {from} could not be read: {e}")),
        };
        let commands = match crate::reply::stream_commands(&stream) {
            Ok(c) => c,
            Err(e) => return whole(format!("its backlog past offset {from} did not parse: {e}")),
        };
        let (n, kept) = writes(&commands);
        if n == 0 {
            return info!(addr = %own, master = %to, bytes = stream.len(), from,
                "the demoted master holds nothing the master lacks (past its copy: only pings and Sentinel hellos)");
        }
        match datadir::keep_writes(dir, unix_ms(), &kept) {
            Ok(path) => {
                metrics().diverged_copies.inc();
                warn!(addr = %own, master = %to, writes = n, from, to_offset = last, path = %path.join(datadir::WRITES).display(),
                    "DIVERGED: the demoted master had acknowledged writes the new master never had; kept aside (replay with redis-cli --pipe)");
            }
            Err(e) => warn!(addr = %own, writes = n, error = %e,
                "DIVERGED, NOT KEPT: the demoted master's own writes could not be written aside; the full sync replaces them"),
        }
    }

    async fn promote(&self, replica: &Endpoint) -> Result<(), ActError> {
        self.redis(replica, &["REPLICAOF", "NO", "ONE"]).await?;
        for _ in 0..50 {
            if self.probe.is_master(replica).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ActError::NotDone(format!(
            "{replica} does not answer as master after REPLICAOF NO ONE"
        )))
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
        args.extend(settings.iter().flat_map(|(k, v)| [*k, v.as_str()]));
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

/// `CLIENT KILL` arguments that drop the normal clients that came in on
/// `listener`, or every normal client without one. Never the connection
/// that sends it (`SKIPME yes`, Redis' default), nor replicas and pub/sub
/// connections (other types).
pub fn drop_clients_args(listener: Option<&Endpoint>) -> Vec<String> {
    let mut args: Vec<String> = ["CLIENT", "KILL", "TYPE", "normal"].map(String::from).to_vec();
    if let Some(l) = listener {
        args.extend(["LADDR".to_string(), format!("{}:{}", l.host, l.port)]);
    }
    args.extend(["SKIPME".to_string(), "yes".to_string()]);
    args
}

/// The fence: the session that observed must be `zk`'s, connected, and
/// holding the lock when one is given.
async fn fence(o: Observed<'_>) -> Result<(), ActError> {
    if session_mark(o.zk) != o.session {
        return Err(ActError::Fenced(
            "the ZooKeeper session that observed has been replaced",
        ));
    }
    if zk_state(o.zk) != ZkSession::Connected {
        return Err(ActError::Fenced("the ZooKeeper session is not connected"));
    }
    if let Some(lock) = o.lock
        && !o.zk.holds(lock.lock_path()).await
    {
        return Err(ActError::Fenced("the bootstrap lock is no longer held"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demotion_drops_the_normal_clients_of_the_task_listener_only() {
        let task = Endpoint::new("10.0.0.5", 6379);
        assert_eq!(
            drop_clients_args(Some(&task)),
            [
                "CLIENT",
                "KILL",
                "TYPE",
                "normal",
                "LADDR",
                "10.0.0.5:6379",
                "SKIPME",
                "yes"
            ]
        );
        assert_eq!(
            drop_clients_args(None),
            ["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]
        );
    }

    #[test]
    fn demotions_and_follows_touch_only_the_own_server_unfenced() {
        assert!(!Action::Follow(Endpoint::new("10.0.0.6", 6379)).fenced());
        let to = Endpoint::new("10.0.0.6", 6379);
        assert!(
            Action::Demote {
                server: Endpoint::new("127.0.0.1", 6379),
                to
            }
            .fenced()
        );
    }
}
