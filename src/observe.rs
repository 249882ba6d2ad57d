//! One look at the group: everything a decision needs, read once, as one
//! immutable [`Snapshot`].
//!
//! Like Patroni's `Cluster`, read once per loop and handed to the policies:
//! the record and its version, the registrations, each Sentinel's answer,
//! each server's replication state, and the session that saw all this (the
//! executor refuses to act on a snapshot from a session that is gone).
//! Probes run concurrently, each bounded by the [`Probe`]'s one timeout, so a
//! group with dead members is still observed in about one timeout.

use std::collections::BTreeSet;

use redis::Value;
use tokio::task::JoinSet;
use tracing::{debug, warn};
use zookeeper_client::SessionState;

use crate::model::{Candidate, Endpoint, Record, Role};
use crate::probe::{Probe, fields};
use crate::zk::Zk;

/// The ZooKeeper session a snapshot was observed with. Sessions are never
/// reused, so an action fenced on this mark cannot run on a newer session
/// that has not seen what the snapshot saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionMark(pub i64);

impl SessionMark {
    /// The mark of `zk`'s session.
    pub fn of(zk: &Zk) -> SessionMark {
        SessionMark(zk.client().session_id().0)
    }
}

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

    /// The state of `zk`'s session now.
    pub fn of(zk: &Zk) -> ZkSession {
        match zk.client().state() {
            SessionState::SyncConnected | SessionState::ConnectedReadOnly => ZkSession::Connected,
            s if s.is_terminated() => ZkSession::Expired,
            _ => ZkSession::Suspended,
        }
    }
}

/// One Sentinel's answer to `SENTINEL MASTER <name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelAnswer {
    /// The Sentinel asked.
    pub sentinel: Endpoint,
    /// The master it names.
    pub master: Endpoint,
    /// The configuration epoch of that view.
    pub epoch: u64,
    /// `num-other-sentinels`: the peers it counts, ghosts included.
    pub peers: usize,
    /// `num-slaves`: the replicas it knows.
    pub replicas: usize,
    /// A failover is in progress (`failover_in_progress` and friends).
    pub failover: bool,
    /// It sees the master down (`s_down` or `o_down`).
    pub master_down: bool,
    /// How many of its peers it sees down (`SENTINEL SENTINELS`, flag
    /// `s_down`). Asked only of a Sentinel that counts more peers than are
    /// registered; `None` when not asked or when it did not answer.
    pub dead_peers: Option<usize>,
}

impl SentinelAnswer {
    /// Reads a `SENTINEL MASTER` reply's fields; `None` without ip/port.
    pub fn from_fields(sentinel: &Endpoint, f: &[(String, String)]) -> Option<SentinelAnswer> {
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let num = |k: &str| get(k).and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        let master = Endpoint::parse(&format!("{} {}", get("ip")?, get("port")?)).ok()?;
        let flags = get("flags").unwrap_or("");
        Some(SentinelAnswer {
            sentinel: sentinel.clone(),
            master,
            epoch: get("config-epoch").and_then(|e| e.parse().ok()).unwrap_or(0),
            peers: num("num-other-sentinels"),
            replicas: num("num-slaves"),
            failover: flags.contains("failover"),
            master_down: flags.split(',').any(|f| f == "s_down" || f == "o_down"),
            dead_peers: None,
        })
    }
}

/// How many peers in a `SENTINEL SENTINELS` reply are flagged `s_down`;
/// `None` when the reply is not a list of peers with flags.
pub fn dead_peers(reply: &Value) -> Option<usize> {
    let Value::Array(peers) = reply else { return None };
    let mut dead = 0;
    for p in peers {
        let f = fields(p);
        let flags = &f.iter().find(|(k, _)| k == "flags")?.1;
        if flags.split(',').any(|x| x == "s_down" || x == "o_down") {
            dead += 1;
        }
    }
    Some(dead)
}

/// What one server's `INFO replication` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// The server.
    pub addr: Endpoint,
    /// Master, or replica of whom.
    pub role: Role,
    /// Replica: `master_link_status:up`.
    pub link_up: bool,
    /// Replica: `master_sync_in_progress:1`.
    pub sync_in_progress: bool,
    /// Master: `master_repl_offset`; replica: `slave_repl_offset`.
    pub offset: i64,
    /// Replica: `slave_priority` (0 until its first full sync is done).
    pub priority: u32,
    /// Replica: `master_last_io_seconds_ago` (absent while the link is down).
    pub last_io_s: Option<u64>,
}

impl ServerState {
    /// Reads the fields of `INFO replication`; `None` when they are not a
    /// master's or a replica's.
    pub fn from_info(addr: &Endpoint, info: &[(String, String)]) -> Option<ServerState> {
        let get = |k: &str| info.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let role = match get("role")? {
            "master" => Role::Master,
            "slave" => Role::Replica {
                master: Endpoint::parse(&format!("{} {}", get("master_host")?, get("master_port")?)).ok()?,
                state: get("master_link_status").unwrap_or("").to_string(),
            },
            _ => return None,
        };
        let offset_key = if role == Role::Master {
            "master_repl_offset"
        } else {
            "slave_repl_offset"
        };
        Some(ServerState {
            addr: addr.clone(),
            link_up: get("master_link_status") == Some("up"),
            sync_in_progress: get("master_sync_in_progress") == Some("1"),
            offset: get(offset_key).and_then(|o| o.parse().ok()).unwrap_or(0),
            priority: get("slave_priority").and_then(|p| p.parse().ok()).unwrap_or(0),
            last_io_s: get("master_last_io_seconds_ago").and_then(|s| s.parse().ok()),
            role,
        })
    }

    /// Whether it answers as a master.
    pub fn is_master(&self) -> bool {
        self.role == Role::Master
    }
}

/// Everything one look at the group found. Immutable: policies read it,
/// the executor acts on it only while its session lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The session that read it.
    pub session: SessionMark,
    /// That session's state at the end of the look.
    pub zk: ZkSession,
    /// `<root>/master` and its version.
    pub record: Record,
    /// Registered redis servers (`<root>/nodes`); empty unless the scope
    /// asked for them.
    pub nodes: Vec<Endpoint>,
    /// Registered Sentinels (`<root>/sentinels`).
    pub sentinels: Vec<Endpoint>,
    /// The answers of the Sentinels that answered.
    pub answers: Vec<SentinelAnswer>,
    /// Sentinels that answered that they monitor no master of that name
    /// (e.g. after a `SENTINEL REMOVE`).
    pub unknown_name: Vec<Endpoint>,
    /// The servers that answered: registered nodes, the masters the
    /// Sentinels and the record name, and the local server.
    pub servers: Vec<ServerState>,
    /// The local server (a launcher's own child), when asked for.
    pub local: Option<ServerState>,
}

/// What to look at besides the record, the registrations and the
/// Sentinels' answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// The launcher's own server, probed as [`Snapshot::local`].
    pub local_server: Option<&'a Endpoint>,
    /// A launcher's own Sentinel, asked even when not registered.
    pub local_sentinel: Option<&'a Endpoint>,
    /// List and probe the registered nodes too (the bootstrap decision
    /// needs them; a master's guard does not).
    pub nodes: bool,
}

impl Snapshot {
    /// The state of `addr`, if it answered.
    pub fn server(&self, addr: &Endpoint) -> Option<&ServerState> {
        self.servers.iter().find(|s| s.addr == *addr)
    }

    /// Whether `addr` answered as a master (`INFO replication` says
    /// `role:master`, as `ROLE` would).
    pub fn is_live_master(&self, addr: &Endpoint) -> bool {
        self.server(addr).is_some_and(ServerState::is_master)
    }

    /// The answer of Sentinel `s`, if it answered.
    pub fn answer_of(&self, s: &Endpoint) -> Option<&SentinelAnswer> {
        self.answers.iter().find(|a| a.sentinel == *s)
    }

    /// The registered Sentinels' answers grouped by the master they name,
    /// with votes, the newest epoch behind each, and whether it is live.
    pub fn sentinel_views(&self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = vec![];
        for a in self.answers.iter().filter(|a| self.sentinels.contains(&a.sentinel)) {
            match out.iter_mut().find(|c| c.addr == a.master) {
                Some(c) => {
                    c.votes += 1;
                    c.epoch = c.epoch.max(a.epoch);
                }
                None => out.push(Candidate {
                    addr: a.master.clone(),
                    votes: 1,
                    epoch: a.epoch,
                    live_master: self.is_live_master(&a.master),
                }),
            }
        }
        out.sort_by(|a, b| a.addr.cmp(&b.addr));
        out
    }
}

/// Why a look at the group failed: a ZooKeeper read (the Sentinels and
/// servers that do not answer are no failure, only absent from the
/// snapshot).
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct ObserveError {
    /// The znode or directory that could not be read.
    pub path: String,
    /// ZooKeeper's error.
    #[source]
    pub source: zookeeper_client::Error,
}

/// Takes one [`Snapshot`]: ZooKeeper first (record, registrations), then all
/// Sentinels at once, then all servers of interest at once.
pub async fn observe(zk: &Zk, probe: &Probe, name: &str, scope: Scope<'_>) -> Result<Snapshot, ObserveError> {
    let failed = |path: String| move |source| ObserveError { path, source };
    let session = SessionMark::of(zk);
    // The three reads at once: when they miss the watched copy (at start,
    // after a change) they cost one round trip, not three.
    let (sentinels_dir, nodes_dir) = (zk.sentinels_dir(), zk.nodes_dir());
    let (record, sentinels, nodes) = tokio::join!(zk.read_master(), zk.registered(&sentinels_dir), async {
        if scope.nodes {
            zk.registered(&nodes_dir).await
        } else {
            Ok(vec![])
        }
    });
    let record = record.map_err(failed(zk.master_path()))?;
    let sentinels = endpoints(sentinels.map_err(failed(sentinels_dir))?);
    let nodes = endpoints(nodes.map_err(failed(nodes_dir))?);
    let mut ask: Vec<Endpoint> = sentinels.clone();
    if let Some(own) = scope.local_sentinel
        && !ask.contains(own)
    {
        ask.push(own.clone());
    }
    let (answers, unknown_name) = ask_sentinels(probe, name, ask).await;
    let answers = count_dead_peers(probe, name, answers, sentinels.len().saturating_sub(1)).await;
    let mut targets: BTreeSet<Endpoint> = answers.iter().map(|a| a.master.clone()).collect();
    targets.extend(record.master().cloned());
    if scope.nodes {
        targets.extend(nodes.iter().cloned());
    }
    targets.extend(scope.local_server.cloned());
    let servers = probe_servers(probe, targets).await;
    let local = scope
        .local_server
        .and_then(|l| servers.iter().find(|s| s.addr == *l).cloned());
    Ok(Snapshot {
        session,
        zk: ZkSession::of(zk),
        record,
        nodes,
        sentinels,
        answers,
        unknown_name,
        servers,
        local,
    })
}

fn endpoints(registered: Vec<(String, Endpoint)>) -> Vec<Endpoint> {
    let mut v: Vec<Endpoint> = registered.into_iter().map(|(_, e)| e).collect();
    v.sort();
    v
}

/// `SENTINEL MASTER <name>` on every Sentinel at once: the answers, and the
/// Sentinels that do not know the name. One that does not answer is logged
/// and left out.
async fn ask_sentinels(probe: &Probe, name: &str, sentinels: Vec<Endpoint>) -> (Vec<SentinelAnswer>, Vec<Endpoint>) {
    let mut asks = JoinSet::new();
    for s in sentinels {
        let (probe, name) = (probe.clone(), name.to_string());
        asks.spawn(async move {
            let reply = probe.cmd(&s, &["SENTINEL", "MASTER", &name]).await;
            (reply, s)
        });
    }
    let mut out = vec![];
    let mut unknown = vec![];
    while let Some(Ok((reply, s))) = asks.join_next().await {
        match reply {
            Ok(v) => match SentinelAnswer::from_fields(&s, &fields(&v)) {
                Some(a) => out.push(a),
                None => warn!(sentinel = %s, "malformed SENTINEL MASTER answer"),
            },
            Err(e) if e.is_unknown_master() => {
                debug!(sentinel = %s, "sentinel does not know the master name");
                unknown.push(s);
            }
            Err(e) => warn!(sentinel = %s, error = %e, "sentinel did not answer"),
        }
    }
    out.sort_by(|a, b| a.sentinel.cmp(&b.sentinel));
    unknown.sort();
    (out, unknown)
}

/// A Sentinel that counts more peers than are registered either remembers
/// dead ones (ghosts: a reset makes it forget them) or knows a live Sentinel
/// that is not registered (a reset would only relearn it, again and again).
/// `SENTINEL SENTINELS` tells the two apart by the `s_down` flag. Only such
/// Sentinels are asked, so a calm group pays nothing for it.
async fn count_dead_peers(
    probe: &Probe,
    name: &str,
    mut answers: Vec<SentinelAnswer>,
    expected_peers: usize,
) -> Vec<SentinelAnswer> {
    let mut asks = JoinSet::new();
    for (i, a) in answers.iter().enumerate().filter(|(_, a)| a.peers > expected_peers) {
        let (probe, name, s) = (probe.clone(), name.to_string(), a.sentinel.clone());
        asks.spawn(async move { (i, probe.cmd(&s, &["SENTINEL", "SENTINELS", &name]).await) });
    }
    while let Some(Ok((i, reply))) = asks.join_next().await {
        let s = &answers[i].sentinel;
        match reply {
            Ok(v) => match dead_peers(&v) {
                Some(n) => answers[i].dead_peers = Some(n),
                None => warn!(sentinel = %s, "malformed SENTINEL SENTINELS answer"),
            },
            Err(e) => warn!(sentinel = %s, error = %e, "sentinel did not list its peers"),
        }
    }
    answers
}

/// `INFO replication` on every server at once; those that do not answer as
/// a master or a replica are left out.
async fn probe_servers(probe: &Probe, targets: BTreeSet<Endpoint>) -> Vec<ServerState> {
    let mut checks = JoinSet::new();
    for t in targets {
        let probe = probe.clone();
        checks.spawn(async move {
            let info = probe.info(&t, "replication").await.ok()?;
            ServerState::from_info(&t, &info)
        });
    }
    let mut out = vec![];
    while let Some(r) = checks.join_next().await {
        if let Ok(Some(s)) = r {
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.addr.cmp(&b.addr));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_sentinel_answers() {
        let s = Endpoint::new("10.0.0.9", 26379);
        let a = SentinelAnswer::from_fields(
            &s,
            &kv(&[
                ("ip", "10.0.0.1"),
                ("port", "6379"),
                ("flags", "master,s_down,failover_in_progress"),
                ("config-epoch", "7"),
                ("num-other-sentinels", "4"),
                ("num-slaves", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (a.epoch, a.peers, a.replicas, a.failover, a.master_down),
            (7, 4, 2, true, true)
        );
        let calm = SentinelAnswer::from_fields(&s, &kv(&[("ip", "10.0.0.1"), ("port", "6379"), ("flags", "master")]));
        assert_eq!(calm.map(|a| (a.failover, a.master_down)), Some((false, false)));
        assert_eq!(SentinelAnswer::from_fields(&s, &kv(&[("ip", "10.0.0.1")])), None);
    }

    #[test]
    fn counts_the_peers_a_sentinel_sees_down() {
        let peer = |flags: &str| {
            Value::Array(
                ["name", "abc", "ip", "10.0.0.8", "flags", flags]
                    .iter()
                    .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                    .collect(),
            )
        };
        let reply = Value::Array(vec![
            peer("s_down,sentinel,disconnected"),
            peer("sentinel"),
            peer("o_down,sentinel"),
        ]);
        assert_eq!(dead_peers(&reply), Some(2));
        assert_eq!(dead_peers(&Value::Array(vec![])), Some(0));
        // Garbage is "unknown", never a count.
        assert_eq!(dead_peers(&Value::Nil), None);
        assert_eq!(dead_peers(&Value::Array(vec![Value::Int(3)])), None);
    }

    #[test]
    fn reads_server_states() {
        let addr = Endpoint::new("10.0.0.2", 6379);
        let r = ServerState::from_info(
            &addr,
            &kv(&[
                ("role", "slave"),
                ("master_host", "10.0.0.1"),
                ("master_port", "6379"),
                ("master_link_status", "up"),
                ("master_sync_in_progress", "0"),
                ("slave_repl_offset", "1234"),
                ("slave_priority", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(
            r.role,
            Role::Replica {
                master: Endpoint::new("10.0.0.1", 6379),
                state: "up".into()
            }
        );
        assert_eq!(
            (r.link_up, r.sync_in_progress, r.offset, r.priority),
            (true, false, 1234, 100)
        );
        let m = ServerState::from_info(&addr, &kv(&[("role", "master"), ("master_repl_offset", "99")])).unwrap();
        assert!(m.is_master() && m.offset == 99);
        assert_eq!(ServerState::from_info(&addr, &kv(&[("role", "sentinel")])), None);
        assert_eq!(
            ServerState::from_info(
                &addr,
                &kv(&[("role", "slave"), ("master_host", "x y"), ("master_port", "1")])
            ),
            None
        );
    }
}
