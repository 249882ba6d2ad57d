//! One look at the group, as one immutable [`Snapshot`]: everything a
//! decision needs, read once.
//!
//! Like Patroni's `Cluster`: each process takes one snapshot at a time
//! ([`crate::observe`]) and hands the same one to its policies, its admin
//! pages and `rzkctl status`. What a loop needs from the world is asked
//! for in the [`Scope`], so nobody patches a snapshot after the look. No
//! I/O here.

use std::collections::BTreeMap;

use tokio::time::Instant;

use crate::model::{Candidate, Endpoint, Intent, Pause, Record};
use crate::reply::{SentinelAnswer, SentinelReplica, ServerState};

/// The ZooKeeper session a snapshot was observed with. Sessions are never
/// reused, so an action fenced on this mark cannot run on a newer session
/// that has not seen what the snapshot saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionMark(pub i64);

/// The ZooKeeper session as the admin view and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZkSession {
    /// Connected: reads and writes go through.
    Connected,
    /// Disconnected, but the session may still come back.
    Suspended,
    /// Gone for good; a new session is on its way.
    Expired,
}

impl ZkSession {
    /// The name the admin JSON and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            ZkSession::Connected => "connected",
            ZkSession::Suspended => "suspended",
            ZkSession::Expired => "expired",
        }
    }
}

/// What to look at besides the record, the registered Sentinels and their
/// answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// A launcher's own server: probed at `.0` (its bind address), named
    /// `.1` (its announced address, as peers and Sentinels know it).
    pub local_server: Option<(Endpoint, Endpoint)>,
    /// A launcher's own Sentinel, asked even when not registered.
    pub local_sentinel: Option<Endpoint>,
    /// List and probe the registered nodes too (bootstrap, a stranded
    /// replica, `rzkctl`).
    pub nodes: bool,
    /// Ask every Sentinel which replicas it would promote
    /// (`SENTINEL REPLICAS`): a switchover, and a replica's readiness.
    pub sentinel_replicas: bool,
}

/// Everything one look at the group found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// When the look began: every answer in it is at least this fresh.
    pub taken: Instant,
    /// The session that read it.
    pub session: SessionMark,
    /// That session's state at the end of the look.
    pub zk: ZkSession,
    /// `<root>/master` and its version.
    pub record: Record,
    /// `<root>/switchover`, the switchover asked for, if any (and usable).
    pub intent: Option<Intent>,
    /// `<root>/pause`, maintenance mode, when it was in force as the look
    /// read it (an expired or unusable node is `None`).
    pub pause: Option<Pause>,
    /// Registered redis servers (`<root>/nodes`); empty unless the scope
    /// asked for them.
    pub nodes: Vec<Endpoint>,
    /// Servers whose `DATA_DIR` keeps a copy of data a full sync replaced
    /// (`<root>/diverged`); empty unless the scope asked for the nodes.
    pub diverged: Vec<Endpoint>,
    /// Registered servers whose task runs with `NOFAILOVER=true`: never
    /// promoted (registered as `<root>/nodes/nofailover-<uuid>`); empty
    /// unless the scope asked for the nodes.
    pub nofailover: Vec<Endpoint>,
    /// Registered Sentinels (`<root>/sentinels`).
    pub sentinels: Vec<Endpoint>,
    /// The answers of the Sentinels that answered.
    pub answers: Vec<SentinelAnswer>,
    /// Sentinels that answered that they monitor no master of that name
    /// (e.g. after a `SENTINEL REMOVE`).
    pub unknown_name: Vec<Endpoint>,
    /// Registered Sentinels whose host refused the connection: no Sentinel
    /// runs there now.
    pub refused: Vec<Endpoint>,
    /// What each Sentinel that answered would promote (scope
    /// `sentinel_replicas`).
    pub sentinel_replicas: Vec<(Endpoint, Vec<SentinelReplica>)>,
    /// The launcher's own Sentinel's `SENTINEL CKQUORUM`, when it answered.
    pub ckquorum: Option<Result<(), String>>,
    /// The servers that answered: registered nodes, the masters the
    /// Sentinels and the record name, the local server and the master it
    /// follows.
    pub servers: Vec<ServerState>,
    /// The local server, under its announced address, when it answered.
    pub local: Option<ServerState>,
}

impl Snapshot {
    /// A look that found nothing, at `taken` (the policies' test worlds
    /// start from it).
    #[cfg(test)]
    pub(crate) fn empty(taken: Instant, session: SessionMark, zk: ZkSession) -> Snapshot {
        Snapshot {
            taken,
            session,
            zk,
            record: Record::Missing,
            intent: None,
            pause: None,
            nodes: vec![],
            diverged: vec![],
            nofailover: vec![],
            sentinels: vec![],
            answers: vec![],
            unknown_name: vec![],
            refused: vec![],
            sentinel_replicas: vec![],
            ckquorum: None,
            servers: vec![],
            local: None,
        }
    }

    /// The newest configuration epoch of the Sentinels that monitor
    /// `master` (one still failing over to it shows its old master's).
    pub fn epoch_of(&self, master: &Endpoint) -> Option<u64> {
        self.answers
            .iter()
            .filter(|a| a.monitored == *master)
            .map(|a| a.epoch)
            .max()
    }

    /// The state of `addr`, if it answered.
    pub fn server(&self, addr: &Endpoint) -> Option<&ServerState> {
        self.servers.iter().find(|s| s.addr == *addr)
    }

    /// Whether `addr` answered as a master (`INFO` says `role:master`, as
    /// `ROLE` would).
    pub fn is_live_master(&self, addr: &Endpoint) -> bool {
        self.server(addr).is_some_and(ServerState::is_master)
    }

    /// The answer of Sentinel `s`, if it answered.
    pub fn answer_of(&self, s: &Endpoint) -> Option<&SentinelAnswer> {
        self.answers.iter().find(|a| a.sentinel == *s)
    }

    /// The answers of the registered Sentinels.
    pub fn registered_answers(&self) -> impl Iterator<Item = &SentinelAnswer> {
        self.answers.iter().filter(|a| self.sentinels.contains(&a.sentinel))
    }

    /// The registered Sentinels' answers grouped by the master they name,
    /// with votes, the newest epoch behind each, and whether it is live.
    pub fn sentinel_views(&self) -> Vec<Candidate> {
        let mut out: BTreeMap<&Endpoint, Candidate> = BTreeMap::new();
        for a in self.registered_answers() {
            let c = out.entry(&a.master).or_insert_with(|| Candidate {
                addr: a.master.clone(),
                votes: 0,
                epoch: 0,
                live_master: self.is_live_master(&a.master),
            });
            c.votes += 1;
            c.epoch = c.epoch.max(a.epoch);
        }
        out.into_values().collect()
    }

    /// What each registered Sentinel would promote.
    pub fn registered_replica_views(&self) -> impl Iterator<Item = &(Endpoint, Vec<SentinelReplica>)> {
        self.sentinel_replicas
            .iter()
            .filter(|(s, _)| self.sentinels.contains(s))
    }

    /// How many registered Sentinels would promote `replica` now: they
    /// know it, its link is up for them, and its priority is above 0.
    pub fn promotable_for(&self, replica: &Endpoint) -> usize {
        self.registered_replica_views()
            .filter(|(_, view)| view.iter().any(|r| r.addr == *replica && r.healthy && r.priority > 0))
            .count()
    }
}
