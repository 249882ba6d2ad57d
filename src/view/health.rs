//! What the admin API answers, decided from one [`Snapshot`]: the status
//! code and JSON body of every path, for each binary.
//!
//! Pure, like every policy, so that each row of the admin table in the
//! contract is a unit test here; the server ([`crate::admin`]) only looks
//! the path up. The launchers build these pages from the same `observe`
//! and the same snapshot types their decisions use, once a second.

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{Endpoint, Role};
use crate::policy::reconcile::confirmed_master;
use crate::reply::SentinelAnswer;
use crate::snapshot::{Snapshot, ZkSession};
use crate::view::{NodeView, record_parts};

/// One answer: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// 200 or 503.
    pub status: u16,
    pub body: String,
}

/// Every page of one binary, by path (`/metrics` is rendered on request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pages {
    /// `(path, page)`.
    pub pages: Vec<(&'static str, Page)>,
    /// A replica's bytes behind its master, for `/replica?lag=BYTES`.
    pub lag_bytes: Option<i64>,
}

impl Pages {
    /// The page at `path`.
    pub fn get(&self, path: &str) -> Option<&Page> {
        self.pages.iter().find(|(p, _)| *p == path).map(|(_, page)| page)
    }

    /// The page at `path` for a request whose query string is `query`:
    /// `/replica?lag=BYTES` (Patroni's `lag`) is 503 when the replica is
    /// more than `BYTES` behind its master, or its lag is unknown (its
    /// master did not answer). Other parameters, and the query of other
    /// paths, are ignored. `Err` is a bad `lag`: the message for a 400.
    pub fn answer(&self, path: &str, query: Option<&str>) -> Result<Option<Page>, String> {
        let Some(page) = self.get(path) else { return Ok(None) };
        let lag = query
            .filter(|_| path == "/replica")
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("lag="));
        let Some(lag) = lag else { return Ok(Some(page.clone())) };
        let max: i64 = lag
            .parse::<u64>()
            .ok()
            .and_then(|n| i64::try_from(n).ok())
            .ok_or_else(|| format!("lag must be a whole number of bytes, not {lag:?}"))?;
        let mut page = page.clone();
        if page.status == 200 && self.lag_bytes.is_none_or(|l| l > max) {
            page.status = 503;
        }
        Ok(Some(page))
    }
}

/// `/liveness`: 200 while the launcher's loop runs (`alive`), whatever
/// ZooKeeper, the Sentinels and the server say.
fn liveness(alive: bool) -> Page {
    page(alive, &json!({ "alive": alive }))
}

fn page(ok: bool, body: &Value) -> Page {
    Page {
        status: if ok { 200 } else { 503 },
        body: body.to_string(),
    }
}

/// The view of a redis task, as its JSON body shows it: its server, the
/// record, and the verdicts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedisView {
    /// Its own server (`addr` is this task's announced address).
    #[serde(flatten)]
    pub node: NodeView,
    /// The master `<root>/master` names.
    pub record: Option<String>,
    /// The record's znode version.
    pub record_version: Option<i32>,
    /// A master that a majority of the live Sentinels no longer names: the
    /// master they name instead.
    pub sentinels_name: Option<String>,
    /// Replica: how many of the registered Sentinels would promote it now.
    pub promotable_for_sentinels: Option<usize>,
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
    /// A master that refuses writes because the Sentinels' lease on it
    /// ran out ([`crate::policy::fence`]).
    pub fenced: bool,
    /// A master whose writes are paused while a failover of it is under
    /// way (the freeze).
    pub frozen: bool,
    /// The group is paused (`rzkctl pause`): no failover, no role change.
    pub paused: bool,
    /// Until when (Unix milliseconds), while paused.
    pub paused_until: Option<u64>,
}

impl RedisView {
    /// The view of a fenced or frozen master: not ready and not `/master`,
    /// so that Marathon and a router send no writes to it.
    pub fn with_fence(mut self, fenced: bool, frozen: bool) -> RedisView {
        self.fenced = fenced;
        self.frozen = frozen;
        if (fenced || frozen) && self.node.role == Some("master") {
            self.ready = false;
            self.is_master = false;
        }
        self
    }
}

/// The master a majority of the Sentinels that answered names, when that is
/// not `me`.
fn named_by_majority(answers: &[SentinelAnswer], me: &Endpoint) -> Option<Endpoint> {
    answers
        .iter()
        .map(|a| &a.master)
        .filter(|m| *m != me)
        .find(|m| answers.iter().filter(|a| a.master == **m).count() * 2 > answers.len())
        .cloned()
}

/// The view of a redis task from `snap`, whose `local` is its own server
/// (under its announced address `me`). `max_lag_s` is `READY_MAX_LAG_S`;
/// `priority` the configured `replica-priority`: a replica that may be
/// promoted is ready only once a majority of the registered Sentinels
/// would promote it, so that the next task an orchestrator stops finds it
/// able to take over.
pub fn redis_view(snap: &Snapshot, me: &Endpoint, max_lag_s: u64, priority: u32) -> RedisView {
    let (record, version) = record_parts(&snap.record);
    let local = snap.local.as_ref();
    let mut v = RedisView {
        node: NodeView::of(snap, me, local),
        record: record.map(ToString::to_string),
        record_version: version,
        zk_session: snap.zk.as_str(),
        healthy: local.is_some(),
        record_matches: record != Some(me),
        paused: snap.pause.is_some(),
        paused_until: snap.pause.as_ref().map(|p| p.until_ms),
        ..RedisView::default()
    };
    match local.map(|l| (l, &l.role)) {
        Some((_, Role::Master)) => {
            let sentinels_name = named_by_majority(&snap.answers, me);
            v.record_matches = record == Some(me);
            v.ready = v.record_matches;
            // Not outvoted by the master being failed over: for a moment
            // after the promotion, until they hear of it, the Sentinels
            // still name it, while the record already names this one. That
            // master does not answer here, and every Sentinel naming it
            // sees it down or fails it over. (One this task merely cannot
            // reach still outvotes it.)
            let outvoted = sentinels_name.as_ref().is_some_and(|m| {
                snap.is_live_master(m)
                    || !snap
                        .answers
                        .iter()
                        .filter(|a| a.master == *m)
                        .all(|a| a.master_down || a.failover)
            });
            v.is_master = v.ready && !outvoted;
            v.sentinels_name = sentinels_name.as_ref().map(ToString::to_string);
        }
        Some((l, Role::Replica { master, .. })) => {
            let promotable_for = snap.promotable_for(me);
            let can_take_over = priority == 0 || promotable_for * 2 > snap.sentinels.len();
            v.promotable_for_sentinels = Some(promotable_for);
            v.ready = record == Some(master)
                && l.link_up
                && !l.sync_in_progress
                && l.last_io_s.is_some_and(|s| s <= max_lag_s)
                && can_take_over;
            v.is_replica = v.ready;
        }
        _ => {}
    }
    v
}

/// The pages of `rzk-redis`; `alive`: its decision loop runs
/// ([`crate::launch::view::Beat`]).
pub fn redis_pages(v: &RedisView, alive: bool) -> Pages {
    let body = serde_json::to_value(v).unwrap_or(Value::Null);
    Pages {
        pages: vec![
            ("/health", page(v.healthy, &body)),
            ("/ready", page(v.ready, &body)),
            ("/master", page(v.is_master, &body)),
            ("/replica", page(v.is_replica, &body)),
            ("/liveness", liveness(alive)),
        ],
        lag_bytes: v.node.lag_bytes.filter(|_| v.node.role == Some("replica")),
    }
}

/// The pages of `rzk-sentinel` from its look (`snap`, with its own
/// Sentinel asked at `own` and announced as `me`), and whether it is
/// ready: it monitors the master the record names and `CKQUORUM` holds.
pub fn sentinel_pages(snap: &Snapshot, own: &Endpoint, me: &Endpoint) -> (Pages, bool) {
    let (record, version) = record_parts(&snap.record);
    let answer = snap.answer_of(own);
    let answers = answer.is_some() || snap.unknown_name.contains(own);
    let master = answer.map(|a| &a.master);
    let ckquorum = snap.ckquorum.clone().unwrap_or_else(|| Err("no answer".into()));
    let ready = answers && master.is_some() && master == record && ckquorum.is_ok();
    let body = json!({
        "role": "sentinel",
        "addr": me.to_string(),
        "record": record.map(ToString::to_string),
        "record_version": version,
        "master": master.map(ToString::to_string),
        "epoch": answer.map(|a| a.epoch),
        "peers": answer.map(|a| a.peers),
        "ckquorum": match &ckquorum { Ok(()) => "OK".to_string(), Err(e) => e.clone() },
        "zk_session": snap.zk.as_str(),
        "healthy": answers,
        "ready": ready,
    });
    // Its loop is the look itself: pages that stop coming go stale.
    let pages = vec![
        ("/health", page(answers, &body)),
        ("/ready", page(ready, &body)),
        ("/liveness", liveness(true)),
    ];
    (Pages { pages, lag_bytes: None }, ready)
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
    let master = match version {
        Some(v) => json!({"addr": record.map(ToString::to_string), "version": v}),
        None => json!({"addr": null}),
    };
    let sentinels: Vec<Value> = snap.sentinels.iter().map(|s| json!({"addr": s.to_string()})).collect();
    let pages = vec![
        ("/health", page(healthy, &body)),
        ("/ready", page(ready, &body)),
        ("/master", page(true, &master)),
        ("/sentinels", page(true, &Value::Array(sentinels))),
        ("/liveness", liveness(true)),
    ];
    (Pages { pages, lag_bytes: None }, ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;
    use crate::policy::fixtures::*;

    fn codes(p: &Pages) -> Vec<(&'static str, u16)> {
        p.pages.iter().map(|(path, pg)| (*path, pg.status)).collect()
    }

    #[test]
    fn healthy_master_and_replica() {
        let m = redis_pages(&redis_view(&healthy(1), &ep(1), 10, 100), true);
        assert_eq!(
            codes(&m),
            [
                ("/health", 200),
                ("/ready", 200),
                ("/master", 200),
                ("/replica", 503),
                ("/liveness", 200)
            ]
        );
        let r = redis_pages(&redis_view(&healthy(2), &ep(2), 10, 100), true);
        assert_eq!(
            codes(&r),
            [
                ("/health", 200),
                ("/ready", 200),
                ("/master", 503),
                ("/replica", 200),
                ("/liveness", 200)
            ]
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
        let v = redis_view(&s, &ep(2), 10, 100);
        assert!(v.healthy && !v.ready && !v.is_replica);
        assert_eq!(v.node.promotable, Some(false));
        assert_eq!(
            v.node.not_promotable,
            Some("replica-priority 0 (first full sync not finished, or held back)")
        );
        let mut s = healthy(2);
        s.local.as_mut().unwrap().last_io_s = Some(11);
        assert!(!redis_view(&s, &ep(2), 10, 100).ready);
        let mut s = healthy(2);
        s.local.as_mut().unwrap().link_up = false;
        assert!(!redis_view(&s, &ep(2), 10, 100).ready);
    }

    #[test]
    fn a_replica_is_ready_only_once_a_majority_of_the_sentinels_would_promote_it() {
        let mut s = healthy(2);
        assert!(redis_view(&s, &ep(2), 10, 100).ready);
        // Two of three Sentinels do not know it as promotable yet.
        s.sentinel_replicas[0].1.retain(|r| r.addr != ep(2));
        s.sentinel_replicas[1].1[0].priority = 0;
        let v = redis_view(&s, &ep(2), 10, 100);
        assert!(!v.ready && !v.is_replica, "{v:?}");
        assert_eq!(v.promotable_for_sentinels, Some(1));
        // An operator's never-promote replica is ready without it.
        assert!(redis_view(&s, &ep(2), 10, 0).ready);
        // Two of three are a majority.
        s.sentinel_replicas[1].1[0].priority = 100;
        assert!(redis_view(&s, &ep(2), 10, 100).ready);
    }

    #[test]
    fn a_replica_of_another_server_than_the_record_is_not_ready() {
        let mut s = healthy(2);
        s.record = Record::Valid {
            master: ep(3),
            version: 4,
        };
        let v = redis_view(&s, &ep(2), 10, 100);
        assert!(!v.ready);
    }

    #[test]
    fn a_master_not_recorded_or_outvoted_is_not_master() {
        let mut s = healthy(1);
        s.record = Record::Valid {
            master: ep(2),
            version: 4,
        };
        let v = redis_view(&s, &ep(1), 10, 100);
        assert!(v.healthy && !v.ready && !v.is_master && !v.record_matches);
        let mut s = healthy(1);
        s.answers = vec![says(21, 2, 2), says(22, 2, 2), says(23, 1, 1)];
        // A majority names 2, which does not answer as master here but
        // which they do not see down: outvoted.
        assert!(!redis_view(&s, &ep(1), 10, 100).is_master);
        // They see it down: a failover that promoted 1 and that they have
        // not heard of yet.
        for a in &mut s.answers[..2] {
            a.master_down = true;
        }
        assert!(redis_view(&s, &ep(1), 10, 100).is_master);
        // 2 answers as master: outvoted, whatever they see.
        s.servers.retain(|x| x.addr != ep(2));
        s.servers.push(master(2));
        let v = redis_view(&s, &ep(1), 10, 100);
        assert!(v.ready && !v.is_master, "{v:?}");
        assert_eq!(v.sentinels_name.as_deref(), Some("10.0.0.2 6379"));
        // One Sentinel of three is no majority.
        s.answers = vec![says(21, 2, 2), says(22, 1, 1), says(23, 1, 1)];
        assert!(redis_view(&s, &ep(1), 10, 100).is_master);
        // Fenced: neither ready nor /master, and the JSON says why.
        let f = redis_view(&s, &ep(1), 10, 100).with_fence(true, false);
        assert!(f.fenced && !f.ready && !f.is_master);
        assert_eq!(codes(&redis_pages(&f, true))[2], ("/master", 503));
        assert!(
            redis_pages(&f, true)
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
        let p = redis_pages(&redis_view(&s, &ep(2), 10, 100), true);
        assert_eq!(
            codes(&p),
            [
                ("/health", 503),
                ("/ready", 503),
                ("/master", 503),
                ("/replica", 503),
                ("/liveness", 200)
            ]
        );
    }

    #[test]
    fn sentinel_ready_needs_the_recorded_master_and_quorum() {
        let me = sentinel(21);
        let mut look = healthy(1);
        look.ckquorum = Some(Ok(()));
        assert_eq!(
            codes(&sentinel_pages(&look, &me, &me).0),
            [("/health", 200), ("/ready", 200), ("/liveness", 200)]
        );
        let mut no_quorum = look.clone();
        no_quorum.ckquorum = Some(Err("NOQUORUM 1 usable Sentinels".into()));
        assert_eq!(
            codes(&sentinel_pages(&no_quorum, &me, &me).0),
            [("/health", 200), ("/ready", 503), ("/liveness", 200)]
        );
        let mut other = look.clone();
        other.answers[0] = says(21, 2, 2);
        assert!(!sentinel_pages(&other, &me, &me).1);
        let mut down = look;
        down.answers.remove(0);
        down.ckquorum = None;
        assert_eq!(
            codes(&sentinel_pages(&down, &me, &me).0),
            [("/health", 503), ("/ready", 503), ("/liveness", 200)]
        );
    }

    #[test]
    fn watcher_pages() {
        let s = healthy(9);
        let (p, ready) = super::watcher_pages(&s, &[sentinel(21)]);
        assert!(ready);
        assert_eq!(
            codes(&p),
            [
                ("/health", 200),
                ("/ready", 200),
                ("/master", 200),
                ("/sentinels", 200),
                ("/liveness", 200)
            ]
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

    #[test]
    fn replica_with_a_lag_bound() {
        let mut s = healthy(2);
        let lag = |s: &Snapshot| s.server(&ep(1)).unwrap().offset - s.local.as_ref().unwrap().offset;
        s.local.as_mut().unwrap().offset -= 1000;
        assert_eq!(lag(&s), 1000);
        let p = redis_pages(&redis_view(&s, &ep(2), 10, 100), true);
        assert_eq!(p.lag_bytes, Some(1000));
        let status = |q: Option<&str>| p.answer("/replica", q).unwrap().unwrap().status;
        assert_eq!(status(None), 200);
        assert_eq!(status(Some("lag=1000")), 200);
        assert_eq!(status(Some("lag=999")), 503);
        assert_eq!(status(Some("x=1&lag=5000")), 200);
        assert_eq!(status(Some("other=1")), 200);
        // Only /replica reads it.
        assert_eq!(p.answer("/ready", Some("lag=0")).unwrap().unwrap().status, 200);
        for bad in ["lag=", "lag=-1", "lag=1kB", "lag=1.5", "lag=99999999999999999999"] {
            let e = p.answer("/replica", Some(bad)).unwrap_err();
            assert!(e.contains("whole number of bytes"), "{bad}: {e}");
        }
        assert_eq!(p.answer("/nope", Some("lag=1")), Ok(None));
        // A replica that is not /replica stays 503 however large the bound.
        s.local.as_mut().unwrap().link_up = false;
        let p = redis_pages(&redis_view(&s, &ep(2), 10, 100), true);
        assert_eq!(p.answer("/replica", Some("lag=100000")).unwrap().unwrap().status, 503);
        // Its lag unknown (its master did not answer): 503 with a bound.
        let mut s = healthy(2);
        s.servers.retain(|x| x.addr != ep(1));
        let p = redis_pages(&redis_view(&s, &ep(2), 10, 100), true);
        assert_eq!(p.lag_bytes, None);
        assert_eq!(p.answer("/replica", Some("lag=100000")).unwrap().unwrap().status, 503);
        // A master has no lag bound to meet: /replica is 503 anyway.
        let m = redis_pages(&redis_view(&healthy(1), &ep(1), 10, 100), true);
        assert_eq!(m.lag_bytes, None);
    }

    #[test]
    fn liveness_follows_the_loop_alone() {
        let mut s = healthy(2);
        s.local = None;
        s.zk = ZkSession::Expired;
        let p = redis_pages(&redis_view(&s, &ep(2), 10, 100), true);
        assert_eq!(p.get("/liveness").unwrap().status, 200);
        assert_eq!(p.get("/health").unwrap().status, 503);
        let p = redis_pages(&redis_view(&healthy(2), &ep(2), 10, 100), false);
        assert_eq!(p.get("/liveness").unwrap().status, 503);
    }
}
