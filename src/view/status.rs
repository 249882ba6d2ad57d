//! The group's status as an operator reads it (`rzkctl status`): every
//! node, every Sentinel, and a verdict with its reasons. Built from the
//! same [`Snapshot`] the launchers decide on.

use serde::Serialize;

use crate::model::{Endpoint, Pause, Role, show_ms};
use crate::policy::engine::replication_refused;
use crate::snapshot::Snapshot;
use crate::view::{NodeView, record_parts};

/// One registered Sentinel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SentinelStatus {
    pub addr: String,
    /// The master it names, if it answered.
    pub master: Option<String>,
    /// Its configuration epoch.
    pub epoch: Option<u64>,
    /// The peers it counts.
    pub peers: Option<usize>,
    /// Peers it counts beyond the registered ones: dead Sentinels it
    /// remembers.
    pub ghosts: Option<usize>,
}

/// The whole table and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStatus {
    /// The master the record names (`null` when missing or unusable).
    pub record: Option<String>,
    /// The record's znode version.
    pub record_version: Option<i32>,
    /// The registered nodes.
    pub nodes: Vec<NodeView>,
    /// The registered Sentinels.
    pub sentinels: Vec<SentinelStatus>,
    /// The master a Sentinel is failing over now: its writes are paused
    /// (frozen) until the failover ends.
    pub failover_of: Option<String>,
    /// Healthy: the record names a live master, every node is it or a
    /// linked replica of it, every Sentinel names it, no ghosts.
    pub healthy: bool,
    /// Why not healthy, one line each.
    pub reasons: Vec<String>,
    /// What an operator should look at without the group being degraded.
    pub notes: Vec<String>,
    /// Maintenance mode, while it is in force (`rzkctl pause`).
    pub paused: Option<Pause>,
}

/// The status of the group in `snap` (observed with its nodes).
pub fn status(snap: &Snapshot) -> GroupStatus {
    let mut reasons = vec![];
    let (record, version) = record_parts(&snap.record);
    let record = record.cloned();
    match &record {
        None => reasons.push("the record names no usable master".to_string()),
        Some(m) if !snap.is_live_master(m) => {
            reasons.push(format!("the recorded master {m} does not answer as master"))
        }
        Some(_) => {}
    }
    let mut nodes = vec![];
    for n in &snap.nodes {
        let state = snap.server(n);
        let mut node = NodeView::of(snap, n, state);
        match state.map(|s| &s.role) {
            None => reasons.push(format!("node {n} does not answer")),
            Some(Role::Master) if record.as_ref() != Some(n) => {
                reasons.push(format!("node {n} is a master but the record names {}", show(&record)))
            }
            Some(Role::Replica { master, .. }) if record.as_ref() != Some(master) => {
                node.lag_bytes = None;
                reasons.push(format!(
                    "replica {n} follows {master}, not the recorded master {}",
                    show(&record)
                ));
            }
            Some(Role::Replica { master, .. }) if node.link_up == Some(false) => {
                reasons.push(format!("replica {n} has its link to {master} down"))
            }
            _ => {}
        }
        // A replica that can never load its master's data (a Redis server
        // that Sentinel re-pointed at a Valkey master): say why its link
        // stays down.
        if let (Some(Role::Replica { master, .. }), Some(own)) =
            (state.map(|s| &s.role), state.and_then(|s| s.engine.as_ref()))
            && let Some(theirs) = snap.server(master).and_then(|m| m.engine.as_ref())
            && replication_refused(theirs, own).is_some()
        {
            reasons.push(format!(
                "replica {n} runs {own} and follows {master}, which runs {theirs}: it can never load that data; replace its task with a Valkey one"
            ));
        }
        if node.role == Some("master") {
            node.lag_bytes = None;
        }
        nodes.push(node);
    }
    let expected_peers = snap.sentinels.len().saturating_sub(1);
    let mut sentinels = vec![];
    for s in &snap.sentinels {
        let Some(a) = snap.answer_of(s) else {
            reasons.push(format!("sentinel {s} does not answer"));
            sentinels.push(SentinelStatus {
                addr: s.to_string(),
                ..SentinelStatus::default()
            });
            continue;
        };
        if record.as_ref() != Some(&a.master) {
            reasons.push(format!("sentinel {s} names {}, the record {}", a.master, show(&record)));
        }
        let ghosts = a.peers.saturating_sub(expected_peers);
        if ghosts > 0 {
            reasons.push(match a.dead_peers {
                Some(dead) if dead >= ghosts => format!("sentinel {s} counts {ghosts} dead peer(s)"),
                Some(dead) => {
                    format!("sentinel {s} counts {ghosts} peer(s) that are not registered, {dead} of them down")
                }
                None => format!("sentinel {s} counts {ghosts} peer(s) that are not registered"),
            });
        }
        sentinels.push(SentinelStatus {
            addr: s.to_string(),
            master: Some(a.master.to_string()),
            epoch: Some(a.epoch),
            peers: Some(a.peers),
            ghosts: Some(ghosts),
        });
    }
    if snap.sentinels.is_empty() {
        reasons.push("no sentinel is registered".to_string());
    }
    let failover_of = snap
        .registered_answers()
        .find(|a| a.failover)
        .map(|a| a.monitored.to_string());
    if let Some(m) = &failover_of {
        reasons.push(format!(
            "a failover of {m} is under way: its writes are paused (frozen) until it ends"
        ));
    }
    let paused = snap.pause.iter().map(|p| {
        format!(
            "PAUSED until {} by {}{}: no failover and no role change, every replica held at priority 0 (`rzkctl resume` ends it)",
            show_ms(p.until_ms),
            p.by,
            if p.reason.is_empty() { String::new() } else { format!(" ({})", p.reason) }
        )
    });
    let diverged = snap.diverged.iter().map(|d| {
        format!(
            "{d} keeps a copy of data a full sync replaced, with writes the master may never have had: {}/ in its DATA_DIR (its launcher's log says how much)",
            crate::model::KEPT_DIR
        )
    });
    let notes = paused.chain(diverged).collect();
    GroupStatus {
        notes,
        paused: snap.pause.clone(),
        failover_of,
        record: record.as_ref().map(ToString::to_string),
        record_version: version,
        nodes,
        sentinels,
        healthy: reasons.is_empty(),
        reasons,
    }
}

fn show(e: &Option<Endpoint>) -> String {
    e.as_ref().map_or_else(|| "nothing".to_string(), ToString::to_string)
}

/// `value` for a table cell, `-` without one.
pub fn dash(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The status as a table for a terminal.
pub fn table(s: &GroupStatus) -> String {
    let mut out = format!(
        "record: {} (version {})\n\n",
        dash(s.record.as_ref()),
        dash(s.record_version)
    );
    out += &format!(
        "{:<22} {:<11} {:<15} {:<22} {:<5} {:>12} {:>10}  {}\n",
        "NODE", "ROLE", "ENGINE", "MASTER", "LINK", "OFFSET", "LAG", "PROMOTABLE"
    );
    for n in &s.nodes {
        let role = n.role.unwrap_or("unreachable");
        let link = n.link_up.map_or("-", |u| if u { "up" } else { "down" });
        let promotable = match (&n.promotable, n.not_promotable) {
            (Some(true), _) => "yes".to_string(),
            (Some(false), Some(why)) => format!("no: {why}"),
            _ => "-".to_string(),
        };
        let engine = dash(n.engine.zip(n.engine_version.as_ref()).map(|(e, v)| format!("{e} {v}")));
        out += &format!(
            "{:<22} {:<11} {:<15} {:<22} {:<5} {:>12} {:>10}  {}\n",
            n.addr,
            role,
            engine,
            dash(n.master.as_ref()),
            link,
            dash(n.offset),
            dash(n.lag_bytes),
            promotable
        );
    }
    out += &format!(
        "\n{:<22} {:<22} {:>6} {:>6} {:>7}\n",
        "SENTINEL", "MASTER", "EPOCH", "PEERS", "GHOSTS"
    );
    for x in &s.sentinels {
        out += &format!(
            "{:<22} {:<22} {:>6} {:>6} {:>7}\n",
            x.addr,
            dash(x.master.as_ref()),
            dash(x.epoch),
            dash(x.peers),
            dash(x.ghosts)
        );
    }
    out += "\n";
    if s.healthy {
        out += "verdict: healthy\n";
    } else {
        out += "verdict: degraded\n";
        for r in &s.reasons {
            out += &format!("  - {r}\n");
        }
    }
    for n in &s.notes {
        out += &format!("note: {n}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;

    #[test]
    fn a_healthy_group_is_healthy() {
        let s = status(&healthy(0));
        assert!(s.healthy, "{:?}", s.reasons);
        assert_eq!(s.nodes.len(), 3);
        assert_eq!(s.sentinels.len(), 3);
        assert!(
            s.nodes
                .iter()
                .filter(|n| n.role == Some("replica"))
                .all(|n| n.promotable == Some(true))
        );
        assert!(table(&s).contains("verdict: healthy"));
    }

    #[test]
    fn a_nofailover_replica_is_shown_never_promotable() {
        let mut snap = healthy(0);
        snap.nofailover = vec![ep(3)];
        let s = status(&snap);
        assert!(s.healthy, "{:?}", s.reasons);
        let n = s.nodes.iter().find(|n| n.addr == ep(3).to_string()).unwrap();
        assert!(n.nofailover && n.promotable == Some(false), "{n:?}");
        assert_eq!(n.not_promotable, Some("NOFAILOVER=true: never promoted"));
        assert!(table(&s).contains("no: NOFAILOVER=true"), "{}", table(&s));
        let other = s.nodes.iter().find(|n| n.addr == ep(2).to_string()).unwrap();
        assert!(!other.nofailover && other.promotable == Some(true), "{other:?}");
    }

    #[test]
    fn a_ghost_degrades_the_group() {
        let mut snap = healthy(0);
        snap.answers[1].peers = 3;
        snap.answers[1].dead_peers = Some(1);
        let s = status(&snap);
        assert!(!s.healthy);
        assert!(s.reasons.iter().any(|r| r.contains("1 dead peer")), "{:?}", s.reasons);
        assert_eq!(s.sentinels[1].ghosts, Some(1));
    }

    #[test]
    fn a_live_unregistered_peer_is_not_called_dead() {
        let mut snap = healthy(0);
        snap.answers[1].peers = 3;
        snap.answers[1].dead_peers = Some(0);
        let s = status(&snap);
        assert!(!s.healthy);
        assert!(
            s.reasons
                .iter()
                .any(|r| r.contains("1 peer(s) that are not registered, 0 of them down")),
            "{:?}",
            s.reasons
        );
        assert!(!s.reasons.iter().any(|r| r.contains("dead")), "{:?}", s.reasons);
    }

    #[test]
    fn a_replica_with_its_link_down_degrades_the_group_and_is_not_promotable() {
        let mut snap = healthy(0);
        snap.servers[2].link_up = false;
        snap.servers[2].sync_in_progress = true;
        snap.servers[2].priority = 0;
        let s = status(&snap);
        assert!(!s.healthy);
        assert!(s.reasons.iter().any(|r| r.contains("link")), "{:?}", s.reasons);
        let n = &s.nodes[2];
        assert_eq!(n.promotable, Some(false));
        assert!(n.not_promotable.unwrap().contains("priority 0"), "{n:?}");
        assert!(table(&s).contains("no: replica-priority 0"));
    }

    #[test]
    fn engines_are_shown_and_a_redis_replica_of_a_valkey_master_is_named() {
        use crate::model::{Engine, EngineKind};
        let valkey = Engine {
            kind: EngineKind::Valkey,
            version: "8.0.1".into(),
        };
        let mut snap = healthy(0);
        for s in &mut snap.servers {
            s.engine = Some(valkey.clone());
        }
        let s = status(&snap);
        assert!(s.healthy, "{:?}", s.reasons);
        assert!(
            s.nodes
                .iter()
                .all(|n| n.engine == Some("valkey") && n.engine_version.as_deref() == Some("8.0.1"))
        );
        assert!(table(&s).contains("valkey 8.0.1"), "{}", table(&s));
        snap.servers[2].engine = Some(Engine {
            kind: EngineKind::Redis,
            version: "7.0.15".into(),
        });
        snap.servers[2].link_up = false;
        let s = status(&snap);
        assert!(
            s.reasons
                .iter()
                .any(|r| r.contains("runs redis 7.0.15") && r.contains("valkey 8.0.1")),
            "{:?}",
            s.reasons
        );
        assert_eq!(s.nodes[2].engine, Some("redis"));
    }

    #[test]
    fn disagreements_are_named() {
        let mut snap = healthy(0);
        snap.answers[0].master = ep(2);
        snap.servers.retain(|s| s.addr != ep(3));
        let s = status(&snap);
        assert!(
            s.reasons
                .iter()
                .any(|r| r.contains("sentinel 10.0.0.21 26379 names 10.0.0.2 6379")),
            "{:?}",
            s.reasons
        );
        assert!(
            s.reasons
                .iter()
                .any(|r| r.contains("node 10.0.0.3 6379 does not answer")),
            "{:?}",
            s.reasons
        );
        let mut dead = healthy(0);
        dead.servers.retain(|s| s.addr != ep(1));
        assert!(
            status(&dead)
                .reasons
                .iter()
                .any(|r| r.contains("does not answer as master"))
        );
    }
}
