//! The admin view of each launcher: once a second, look ([`observe`], the
//! same look the decisions use), turn the snapshot into pages
//! ([`crate::policy::health`]), publish them ([`crate::admin`]) and set the
//! gauges ([`crate::metrics`]).
//!
//! It runs only when `ADMIN_PORT` is set, so a launcher without it costs
//! ZooKeeper nothing more. A look that fails on ZooKeeper still answers
//! for the local server: a ZooKeeper outage must never make Marathon kill
//! a healthy Redis (`/health` depends on the server alone).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, interval};
use tracing::error;

use crate::admin::{self, Publisher};
use crate::launch::OwnServer;
use crate::metrics::metrics;
use crate::model::{Endpoint, Record};
use crate::observe::{Scope, SentinelAnswer, ServerState, SessionMark, Snapshot, ZkSession, observe};
use crate::policy::health::{SentinelLook, redis_pages, redis_view, sentinel_pages, watcher_pages};
use crate::probe::{Probe, fields};
use crate::zk::Zk;

/// How often the view is renewed.
pub const EVERY: Duration = Duration::from_secs(1);

/// The admin paths of each binary, besides `/metrics`.
pub const REDIS_PATHS: &[&str] = &["/health", "/ready", "/master", "/replica"];
/// See [`REDIS_PATHS`].
pub const SENTINEL_PATHS: &[&str] = &["/health", "/ready"];
/// See [`REDIS_PATHS`].
pub const WATCHER_PATHS: &[&str] = &["/health", "/ready", "/master", "/sentinels"];

/// Starts the admin server when `port` is set; `Err` is the exit code 1
/// (the port cannot be bound).
pub async fn start(
    port: Option<u16>,
    addrs: impl Fn(u16) -> Vec<SocketAddr>,
    paths: &'static [&'static str],
) -> Result<Option<Publisher>, i32> {
    let Some(port) = port else { return Ok(None) };
    admin::start(&addrs(port), paths).await.map(Some).map_err(|e| {
        error!(error = %e, "cannot start the admin API");
        1
    })
}

fn ticker() -> tokio::time::Interval {
    let mut t = interval(EVERY);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

fn set_session(zk: ZkSession) {
    metrics().set_zk_session(zk.as_str());
}

/// `rzk-redis`'s view, for ever.
pub async fn redis(
    publisher: Publisher,
    sessions: watch::Receiver<Zk>,
    own: OwnServer<'_>,
    max_lag: Duration,
) -> std::convert::Infallible {
    let mut tick = ticker();
    let mut last_record = Record::Missing;
    let scope = Scope {
        local_server: Some(&own.local),
        local_sentinel: None,
        nodes: false,
    };
    loop {
        tick.tick().await;
        let zk = sessions.borrow().clone();
        let mut snap = match observe(&zk, own.probe, own.name, scope).await {
            Ok(s) => s,
            // ZooKeeper (or the listing) failed: the local server alone,
            // with the last record seen.
            Err(_) => local_only(&zk, own.probe, &own.local, &last_record).await,
        };
        last_record = snap.record.clone();
        if let Some(l) = snap.local.as_mut() {
            l.addr = own.me.clone();
        }
        let view = redis_view(&snap, &own.me, max_lag.as_secs()).with_fence(metrics().fenced.get() == 1);
        let m = metrics();
        m.set_role(view.role);
        set_session(snap.zk);
        m.record_matches.set(i64::from(view.record_matches));
        m.ready.set(i64::from(view.ready));
        m.repl_offset.set(view.offset.unwrap_or(0));
        m.repl_lag.set(view.lag_bytes.unwrap_or(0));
        m.promotable.set(i64::from(view.promotable == Some(true)));
        publisher.publish(redis_pages(&view));
    }
}

async fn local_only(zk: &Zk, probe: &Probe, local: &Endpoint, record: &Record) -> Snapshot {
    let local_state = match probe.info(local, "replication").await {
        Ok(info) => ServerState::from_info(local, &info),
        Err(_) => None,
    };
    Snapshot {
        session: SessionMark::of(zk),
        zk: ZkSession::of(zk),
        record: record.clone(),
        nodes: vec![],
        sentinels: vec![],
        answers: vec![],
        unknown_name: vec![],
        servers: local_state.iter().cloned().collect(),
        local: local_state,
    }
}

/// `rzk-sentinel`'s view, for ever: its own Sentinel, the record, quorum.
pub async fn sentinel(
    publisher: Publisher,
    sessions: watch::Receiver<Zk>,
    probe: &Probe,
    local: Endpoint,
    me: Endpoint,
    name: &str,
) -> std::convert::Infallible {
    let mut tick = ticker();
    let mut record = Record::Missing;
    loop {
        tick.tick().await;
        let zk = sessions.borrow().clone();
        if let Ok(r) = zk.read_master().await {
            record = r;
        }
        let answers = probe.ping(&local).await.is_ok();
        let monitors = match probe.cmd(&local, &["SENTINEL", "MASTER", name]).await {
            Ok(v) => SentinelAnswer::from_fields(&me, &fields(&v)),
            Err(_) => None,
        };
        let ckquorum = match probe.cmd(&local, &["SENTINEL", "CKQUORUM", name]).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        let look = SentinelLook {
            addr: me.clone(),
            answers,
            monitors,
            ckquorum,
            record: record.clone(),
            zk: ZkSession::of(&zk),
        };
        let (pages, ready) = sentinel_pages(&look);
        let m = metrics();
        set_session(look.zk);
        m.ready.set(i64::from(ready));
        m.record_matches.set(i64::from(
            look.monitors.as_ref().map(|a| &a.master) == look.record.master(),
        ));
        publisher.publish(pages);
    }
}

/// `rzk-watcher`'s view, for ever: the group as its reconciliation sees
/// it, and the Sentinels it is subscribed to.
pub async fn watcher(
    publisher: Publisher,
    sessions: watch::Receiver<Zk>,
    subscribed: watch::Receiver<Vec<Endpoint>>,
    probe: &Probe,
    name: &str,
) -> std::convert::Infallible {
    let mut tick = ticker();
    let mut last: Option<Snapshot> = None;
    loop {
        tick.tick().await;
        let zk = sessions.borrow().clone();
        let snap = match observe(&zk, probe, name, Scope::default()).await {
            Ok(s) => s,
            // ZooKeeper failed: what was last seen, under today's session state.
            Err(_) => match last.take() {
                Some(s) => Snapshot {
                    zk: ZkSession::of(&zk),
                    ..s
                },
                None => {
                    set_session(ZkSession::of(&zk));
                    continue;
                }
            },
        };
        let sub = subscribed.borrow().clone();
        let (pages, ready) = watcher_pages(&snap, &sub);
        let m = metrics();
        set_session(snap.zk);
        m.ready.set(i64::from(ready));
        m.record_matches.set(i64::from(ready));
        publisher.publish(pages);
        last = Some(snap);
    }
}
