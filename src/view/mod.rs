//! Faces over a snapshot: the admin pages ([`health`]) and `rzkctl
//! status` ([`status`]). They decide nothing; they show what the
//! snapshot and the policies say, with one shape per server
//! ([`NodeView`]).

use serde::Serialize;

use crate::model::{Endpoint, Record, Role};
use crate::policy::promotion::{NotPromotable, not_promotable};
use crate::reply::ServerState;
use crate::snapshot::Snapshot;

pub mod health;
pub mod status;

/// One redis server as the admin JSON and `rzkctl status` show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeView {
    pub addr: String,
    /// `master`, `replica`, or `null` when it does not answer.
    pub role: Option<&'static str>,
    /// The master a replica follows.
    pub master: Option<String>,
    /// Replica: `master_link_status:up`.
    pub link_up: Option<bool>,
    /// Replica: `master_sync_in_progress:1`.
    pub sync_in_progress: Option<bool>,
    /// Replication offset.
    pub offset: Option<i64>,
    /// Replica: bytes behind the master it follows, when that master answered.
    pub lag_bytes: Option<i64>,
    /// Replica: seconds since it last heard from its master.
    pub last_io_seconds_ago: Option<u64>,
    /// Replica: whether Sentinel (or a takeover) may promote it.
    pub promotable: Option<bool>,
    /// Why it may not, when it may not.
    pub not_promotable: Option<&'static str>,
    /// Its `DATA_DIR` keeps a copy of data a full sync replaced, with
    /// writes the master may never have had (its launcher's log says
    /// where and how much).
    pub diverged_copy: bool,
    /// Its task runs with `NOFAILOVER=true`: never promoted.
    pub nofailover: bool,
    /// The engine it runs, `redis` or `valkey` (`INFO server`), when it
    /// answered.
    pub engine: Option<&'static str>,
    /// That engine's own version (Valkey's `valkey_version`).
    pub engine_version: Option<String>,
}

impl NodeView {
    /// The view of `addr`, whose state (if it answered) is `state`.
    pub fn of(snap: &Snapshot, addr: &Endpoint, state: Option<&ServerState>) -> NodeView {
        let mut v = NodeView {
            addr: addr.to_string(),
            offset: state.map(|s| s.offset),
            diverged_copy: snap.diverged.contains(addr),
            nofailover: snap.nofailover.contains(addr),
            engine: state.and_then(|s| s.engine.as_ref()).map(|e| e.kind.as_str()),
            engine_version: state.and_then(|s| s.engine.as_ref()).map(|e| e.version.clone()),
            ..NodeView::default()
        };
        match state.map(|s| (s, &s.role)) {
            Some((_, Role::Master)) => {
                v.role = Some("master");
                v.lag_bytes = Some(0);
            }
            Some((s, Role::Replica { master, .. })) => {
                v.role = Some("replica");
                v.master = Some(master.to_string());
                v.link_up = Some(s.link_up);
                v.sync_in_progress = Some(s.sync_in_progress);
                v.last_io_seconds_ago = s.last_io_s;
                v.lag_bytes = snap
                    .server(master)
                    .filter(|m| m.is_master())
                    .map(|m| (m.offset - s.offset).max(0));
                let why_not = v
                    .nofailover
                    .then_some(NotPromotable::NoFailover)
                    .or_else(|| not_promotable(s));
                v.promotable = Some(why_not.is_none());
                v.not_promotable = why_not.map(|w| w.as_str());
            }
            _ => {}
        }
        v
    }
}

/// The record's master and version, as the views show them.
pub fn record_parts(record: &Record) -> (Option<&Endpoint>, Option<i32>) {
    match record {
        Record::Valid { master, version } => (Some(master), Some(*version)),
        Record::Unusable { version } => (None, Some(*version)),
        Record::Missing => (None, None),
    }
}
