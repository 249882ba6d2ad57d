//! What the admin API answers, decided from one [`Snapshot`]: the status
//! code and JSON body of every path, for each binary.
//!
//! Pure, like every policy, so that each row of the admin table in the
//! contract is a unit test here; the server ([`crate::admin`]) only looks
//! the path up. The launchers build these pages from the same `observe`
//! and the same snapshot types their decisions use, once a second.

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{Endpoint, Record, Role};
use crate::observe::{SentinelAnswer, Snapshot, ZkSession};
use crate::policy::reconcile::confirmed_master;
use crate::policy::status::replica_not_promotable;

/// One answer: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// 200 or 503.
    pub status: u16,
    /// The JSON body.
    pub body: String,
}

/// Every page of one binary, by path (`/metrics` is rendered on request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pages {
    /// `(path, page)`.
    pub pages: Vec<(&'static str, Page)>,
}

impl Pages {
    /// The page at `path`.
    pub fn get(&self, path: &str) -> Option<&Page> {
        self.pages.iter().find(|(p, _)| *p == path).map(|(_, page)| page)
    }

    /// Whether `path` answers 200.
    pub fn ok(&self, path: &str) -> bool {
        self.get(path).is_some_and(|p| p.status == 200)
    }
}

fn page(ok: bool, body: &Value) -> Page {
    Page {
        status: if ok { 200 } else { 503 },
        body: body.to_string(),
    }
}

fn record_parts(record: &Record) -> (Option<&Endpoint>, Option<i32>) {
    match record {
        Record::Valid { master, version } => (Some(master), Some(*version)),
        Record::Unusable { version } => (None, Some(*version)),
        Record::Missing => (None, None),
    }
}

/// The view of a redis task, as its JSON body shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisView {
    /// `master`, `replica`, or `null` when the server does not answer.
    pub role: Option<&'static str>,
    /// This task's announced address.
    pub addr: String,
    /// The master `<root>/master` names.
    pub record: Option<String>,
    /// The record's znode version.
    pub record_version: Option<i32>,
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
    /// A master that a majority of the live Sentinels no longer names: the
    /// master they name instead.
    pub sentinels_name: Option<String>,
    /// `connected`, `suspended` or `expired`.
    pub zk_session: &'static str,
    /// `/health` would be 200.
    pub healthy: bool,
    /// `/ready` would be 200.
    pub ready: bool,
    /// `/master` would be 200.
    pub is_master: bool,
    /// `/replica` would be 200.
    pub is_replica: bool,
    /// Whether the record agrees with this task: it names this task exactly
    /// when this task is the master.
    pub record_matches: bool,
    /// A master that refuses writes because no witness confirmed it for
    /// `FENCE_AFTER_MS` ([`crate::policy::fence`]).
    pub fenced: bool,
}

impl RedisView {
    /// The view of a fenced master: not ready and not `/master`, so that
    /// Marathon and a router send no writes to it.
    pub fn with_fence(mut self, fenced: bool) -> RedisView {
        self.fenced = fenced;
        if fenced && self.role == Some("master") {
            self.ready = false;
            self.is_master = false;
        }
        self
    }
}

/// The master a majority of the Sentinels that answered names, when that is
/// not `me`.
fn outvoted_by(answers: &[SentinelAnswer], me: &Endpoint) -> Option<Endpoint> {
    let live = answers.len();
    answers
        .iter()
        .map(|a| &a.master)
        .filter(|m| *m != me)
        .find(|m| answers.iter().filter(|a| a.master == **m).count() * 2 > live)
        .cloned()
}

/// The view of a redis task from `snap`, whose `local` is its own server
/// (under its announced address `me`). `max_lag_s` is `READY_MAX_LAG_S`.
pub fn redis_view(snap: &Snapshot, me: &Endpoint, max_lag_s: u64) -> RedisView {
    let (record, version) = record_parts(&snap.record);
    let local = snap.local.as_ref();
    let sentinels_name = outvoted_by(&snap.answers, me);
    let mut v = RedisView {
        role: None,
        addr: me.to_string(),
        record: record.map(ToString::to_string),
        record_version: version,
        master: None,
        link_up: None,
        sync_in_progress: None,
        offset: local.map(|l| l.offset),
        lag_bytes: None,
        last_io_seconds_ago: None,
        promotable: None,
        not_promotable: None,
        sentinels_name: None,
        zk_session: snap.zk.as_str(),
        healthy: local.is_some(),
        ready: false,
        is_master: false,
        is_replica: false,
        record_matches: false,
        fenced: false,
    };
    let Some(l) = local else {
        v.record_matches = record != Some(me);
        return v;
    };
    match &l.role {
        Role::Master => {
            v.role = Some("master");
            v.lag_bytes = Some(0);
            v.record_matches = record == Some(me);
            v.ready = v.record_matches;
            v.sentinels_name = sentinels_name.as_ref().map(ToString::to_string);
            v.is_master = v.ready && sentinels_name.is_none();
        }
        Role::Replica { master, .. } => {
            v.role = Some("replica");
            v.master = Some(master.to_string());
            v.link_up = Some(l.link_up);
            v.sync_in_progress = Some(l.sync_in_progress);
            v.last_io_seconds_ago = l.last_io_s;
            v.lag_bytes = snap
                .server(master)
                .filter(|m| m.is_master())
                .map(|m| (m.offset - l.offset).max(0));
            let why_not = replica_not_promotable(l.link_up, l.sync_in_progress, l.priority);
            v.promotable = Some(why_not.is_none());
            v.not_promotable = why_not.map(|w| w.as_str());
            v.record_matches = record != Some(me);
            v.ready = record == Some(master)
                && l.link_up
                && !l.sync_in_progress
                && l.last_io_s.is_some_and(|s| s <= max_lag_s);
            v.is_replica = v.ready;
        }
        Role::Sentinel => {}
    }
    v
}

/// The pages of `rzk-redis`.
pub fn redis_pages(v: &RedisView) -> Pages {
    let body = serde_json::to_value(v).unwrap_or(Value::Null);
    Pages {
        pages: vec![
            ("/health", page(v.healthy, &body)),
            ("/ready", page(v.ready, &body)),
            ("/master", page(v.is_master, &body)),
            ("/replica", page(v.is_replica, &body)),
        ],
    }
}

/// What a Sentinel task saw in one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelLook {
    /// Its announced address.
    pub addr: Endpoint,
    /// It answered `PING`.
    pub answers: bool,
    /// Its answer to `SENTINEL MASTER <name>`.
    pub monitors: Option<SentinelAnswer>,
    /// `SENTINEL CKQUORUM <name>`: `Ok` or the error it gave.
    pub ckquorum: Result<(), String>,
    /// `<root>/master`.
    pub record: Record,
    /// The ZooKeeper session.
    pub zk: ZkSession,
}

/// The pages of `rzk-sentinel`, and whether it is ready.
pub fn sentinel_pages(look: &SentinelLook) -> (Pages, bool) {
    let (record, version) = record_parts(&look.record);
    let master = look.monitors.as_ref().map(|a| &a.master);
    let ready = look.answers && master.is_some() && master == record && look.ckquorum.is_ok();
    let body = json!({
        "role": "sentinel",
        "addr": look.addr.to_string(),
        "record": record.map(ToString::to_string),
        "record_version": version,
        "master": master.map(ToString::to_string),
        "epoch": look.monitors.as_ref().map(|a| a.epoch),
        "peers": look.monitors.as_ref().map(|a| a.peers),
        "ckquorum": match &look.ckquorum { Ok(()) => "OK".to_string(), Err(e) => e.clone() },
        "zk_session": look.zk.as_str(),
        "healthy": look.answers,
        "ready": ready,
    });
    let pages = Pages {
        pages: vec![("/health", page(look.answers, &body)), ("/ready", page(ready, &body))],
    };
    (pages, ready)
}

/// The pages of `rzk-watcher` from its look at the group (`snap`, with
/// the Sentinels' answers) and the Sentinels it is subscribed to; and
/// whether it is ready (subscribed to at least one).
pub fn watcher_pages(snap: &Snapshot, subscribed: &[Endpoint]) -> (Pages, bool) {
    let (record, version) = record_parts(&snap.record);
    let confirmed = confirmed_master(snap);
    let healthy = snap.zk != ZkSession::Expired;
    let ready = !subscribed.is_empty() && confirmed.is_some() && confirmed.as_ref() == record;
    let body = json!({
        "role": "watcher",
        "subscribed": subscribed.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "record": record.map(ToString::to_string),
        "record_version": version,
        "confirmed_master": confirmed.as_ref().map(ToString::to_string),
        "zk_session": snap.zk.as_str(),
        "healthy": healthy,
        "ready": ready,
    });
    let master = match (record, version) {
        (Some(m), Some(v)) => json!({"addr": m.to_string(), "version": v}),
        (None, Some(v)) => json!({"addr": null, "version": v}),
        _ => json!({"addr": null}),
    };
    let sentinels: Vec<Value> = snap.sentinels.iter().map(|s| json!({"addr": s.to_string()})).collect();
    let pages = Pages {
        pages: vec![
            ("/health", page(healthy, &body)),
            ("/ready", page(ready, &body)),
            ("/master", page(true, &master)),
            ("/sentinels", page(true, &Value::Array(sentinels))),
        ],
    };
    (pages, ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::*;

    fn codes(p: &Pages) -> Vec<(&'static str, u16)> {
        p.pages.iter().map(|(path, pg)| (*path, pg.status)).collect()
    }

    #[test]
    fn healthy_master_and_replica() {
        let m = redis_pages(&redis_view(&healthy(1), &ep(1), 10));
        assert_eq!(
            codes(&m),
            [("/health", 200), ("/ready", 200), ("/master", 200), ("/replica", 503)]
        );
        let r = redis_pages(&redis_view(&healthy(2), &ep(2), 10));
        assert_eq!(
            codes(&r),
            [("/health", 200), ("/ready", 200), ("/master", 503), ("/replica", 200)]
        );
        let body: Value = serde_json::from_str(&r.get("/ready").unwrap().body).unwrap();
        for k in [
            "role",
            "addr",
            "record",
            "master",
            "link_up",
            "sync_in_progress",
            "offset",
            "lag_bytes",
            "zk_session",
        ] {
            assert!(body.get(k).is_some(), "{k} missing from {body}");
        }
        assert_eq!(body["role"], "replica");
        assert_eq!(body["master"], "10.0.0.1 6379");
        assert_eq!(body["zk_session"], "connected");
    }

    #[test]
    fn a_syncing_or_lagging_replica_is_not_ready() {
        let mut s = healthy(2);
        let l = s.local.as_mut().unwrap();
        l.sync_in_progress = true;
        l.priority = 0;
        let v = redis_view(&s, &ep(2), 10);
        assert!(v.healthy && !v.ready && !v.is_replica);
        assert_eq!(v.promotable, Some(false));
        assert_eq!(
            v.not_promotable,
            Some("replica-priority 0 (first full sync not finished)")
        );
        let mut s = healthy(2);
        s.local.as_mut().unwrap().last_io_s = Some(11);
        assert!(!redis_view(&s, &ep(2), 10).ready);
        let mut s = healthy(2);
        s.local.as_mut().unwrap().link_up = false;
        assert!(!redis_view(&s, &ep(2), 10).ready);
    }

    #[test]
    fn a_replica_of_another_server_than_the_record_is_not_ready() {
        let mut s = healthy(2);
        s.record = Record::Valid {
            master: ep(3),
            version: 4,
        };
        let v = redis_view(&s, &ep(2), 10);
        assert!(!v.ready);
    }

    #[test]
    fn a_master_not_recorded_or_outvoted_is_not_master() {
        let mut s = healthy(1);
        s.record = Record::Valid {
            master: ep(2),
            version: 4,
        };
        let v = redis_view(&s, &ep(1), 10);
        assert!(v.healthy && !v.ready && !v.is_master && !v.record_matches);
        let mut s = healthy(1);
        s.answers = vec![says(21, 2, 2), says(22, 2, 2), says(23, 1, 1)];
        let v = redis_view(&s, &ep(1), 10);
        assert!(v.ready && !v.is_master, "{v:?}");
        assert_eq!(v.sentinels_name.as_deref(), Some("10.0.0.2 6379"));
        // One Sentinel of three is no majority.
        s.answers = vec![says(21, 2, 2), says(22, 1, 1), says(23, 1, 1)];
        assert!(redis_view(&s, &ep(1), 10).is_master);
        // Fenced: neither ready nor /master, and the JSON says why.
        let f = redis_view(&s, &ep(1), 10).with_fence(true);
        assert!(f.fenced && !f.ready && !f.is_master);
        assert_eq!(codes(&redis_pages(&f))[2], ("/master", 503));
        assert!(
            redis_pages(&f)
                .get("/health")
                .unwrap()
                .body
                .contains(r#""fenced":true"#)
        );
    }

    #[test]
    fn a_server_that_does_not_answer_is_unhealthy() {
        let mut s = healthy(2);
        s.local = None;
        let p = redis_pages(&redis_view(&s, &ep(2), 10));
        assert_eq!(
            codes(&p),
            [("/health", 503), ("/ready", 503), ("/master", 503), ("/replica", 503)]
        );
    }

    #[test]
    fn sentinel_ready_needs_the_recorded_master_and_quorum() {
        let look = SentinelLook {
            addr: sentinel(21),
            answers: true,
            monitors: Some(says(21, 1, 1)),
            ckquorum: Ok(()),
            record: healthy(1).record,
            zk: ZkSession::Connected,
        };
        assert_eq!(codes(&sentinel_pages(&look).0), [("/health", 200), ("/ready", 200)]);
        let no_quorum = SentinelLook {
            ckquorum: Err("NOQUORUM 1 usable Sentinels".into()),
            ..look.clone()
        };
        assert_eq!(
            codes(&sentinel_pages(&no_quorum).0),
            [("/health", 200), ("/ready", 503)]
        );
        let other = SentinelLook {
            monitors: Some(says(21, 2, 2)),
            ..look.clone()
        };
        assert!(!sentinel_pages(&other).1);
        let down = SentinelLook {
            answers: false,
            monitors: None,
            ..look
        };
        assert_eq!(codes(&sentinel_pages(&down).0), [("/health", 503), ("/ready", 503)]);
    }

    #[test]
    fn watcher_pages() {
        let s = healthy(9);
        let (p, ready) = super::watcher_pages(&s, &[sentinel(21)]);
        assert!(ready);
        assert_eq!(
            codes(&p),
            [("/health", 200), ("/ready", 200), ("/master", 200), ("/sentinels", 200)]
        );
        assert_eq!(
            p.get("/master").unwrap().body,
            r#"{"addr":"10.0.0.1 6379","version":3}"#
        );
        let sentinels: Value = serde_json::from_str(&p.get("/sentinels").unwrap().body).unwrap();
        assert_eq!(sentinels.as_array().unwrap().len(), 3);
        assert!(!super::watcher_pages(&s, &[]).1, "not subscribed");
        let (p, _) = super::watcher_pages(&world(), &[]);
        assert_eq!(p.get("/master").unwrap().body, r#"{"addr":null}"#);
        let mut wrong = healthy(9);
        wrong.record = Record::Valid {
            master: ep(2),
            version: 4,
        };
        assert!(!super::watcher_pages(&wrong, &[sentinel(21)]).1);
    }
}
