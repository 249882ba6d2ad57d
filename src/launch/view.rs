//! The admin view of each launcher: every snapshot the observer publishes
//! becomes pages ([`crate::view::health`]), published for the admin server
//! ([`crate::admin`]), and gauges ([`crate::metrics`]).
//!
//! A look that cannot read ZooKeeper still answers for the local server
//! (the observer keeps the last record seen): a ZooKeeper outage must
//! never make Marathon kill a healthy Redis (`/health` depends on the
//! server alone). A look that hangs leaves the pages to go stale, and
//! stale pages answer 503.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tracing::error;

use crate::admin::{self, Publisher};
use crate::metrics::metrics;
use crate::model::Endpoint;
use crate::observe::Observer;
use crate::snapshot::Snapshot;
use crate::view::health::{redis_pages, redis_view, sentinel_pages, watcher_pages};

/// The admin paths of each binary, besides `/metrics`.
pub const REDIS_PATHS: &[&str] = &["/health", "/ready", "/master", "/replica"];
/// See [`REDIS_PATHS`].
pub const SENTINEL_PATHS: &[&str] = &["/health", "/ready"];
/// See [`REDIS_PATHS`].
pub const WATCHER_PATHS: &[&str] = &["/health", "/ready", "/master", "/sentinels"];

/// The period of a launcher's looks when nothing asks for more.
pub const EVERY: Duration = Duration::from_secs(1);

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

/// Calls `show` with every snapshot the observer publishes, for ever.
async fn each(observer: &Observer, mut show: impl FnMut(&Snapshot)) -> std::convert::Infallible {
    let mut rx = observer.subscribe();
    loop {
        if let Some(s) = rx.borrow_and_update().clone() {
            show(&s);
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// What `rzk-redis`'s pages need besides the snapshot.
pub struct RedisPages {
    /// This task's announced address.
    pub me: Endpoint,
    /// `READY_MAX_LAG_S`.
    pub max_lag_s: u64,
    /// The configured `replica-priority`.
    pub priority: u32,
}

/// `rzk-redis`'s view, for ever.
pub async fn redis(publisher: Option<Publisher>, observer: &Observer, p: RedisPages) -> std::convert::Infallible {
    each(observer, |snap| {
        let m = metrics();
        let view =
            redis_view(snap, &p.me, p.max_lag_s, p.priority).with_fence(m.fenced.get() == 1, m.frozen.get() == 1);
        m.set_role(view.node.role);
        m.set_engine(view.node.engine.zip(view.node.engine_version.as_deref()));
        m.set_zk_session(snap.zk.as_str());
        m.record_matches.set(i64::from(view.record_matches));
        m.ready.set(i64::from(view.ready));
        m.repl_offset.set(view.node.offset.unwrap_or(0));
        m.repl_lag.set(view.node.lag_bytes.unwrap_or(0));
        m.promotable.set(i64::from(view.node.promotable == Some(true)));
        m.paused.set(i64::from(view.paused));
        m.pause_until.set(view.paused_until.map_or(0, |ms| (ms / 1000) as i64));
        if let Some(p) = &publisher {
            p.publish(redis_pages(&view));
        }
    })
    .await
}

/// `rzk-sentinel`'s view, for ever: its own Sentinel (asked at `own`,
/// announced as `me`), the record, quorum.
pub async fn sentinel(
    publisher: Option<Publisher>,
    observer: &Observer,
    own: &Endpoint,
    me: &Endpoint,
) -> std::convert::Infallible {
    each(observer, |snap| {
        let (pages, ready) = sentinel_pages(snap, own, me);
        let m = metrics();
        m.set_zk_session(snap.zk.as_str());
        m.ready.set(i64::from(ready));
        m.record_matches.set(i64::from(
            snap.answer_of(own).map(|a| &a.master) == snap.record.master(),
        ));
        if let Some(p) = &publisher {
            p.publish(pages);
        }
    })
    .await
}

/// `rzk-watcher`'s view, for ever: the group as its reconciliation sees
/// it, and the Sentinels it is subscribed to.
pub async fn watcher(
    publisher: Option<Publisher>,
    observer: &Observer,
    subscribed: watch::Receiver<Vec<Endpoint>>,
) -> std::convert::Infallible {
    each(observer, |snap| {
        let (pages, ready) = watcher_pages(snap, &subscribed.borrow());
        let m = metrics();
        m.set_zk_session(snap.zk.as_str());
        m.ready.set(i64::from(ready));
        m.record_matches.set(i64::from(ready));
        if let Some(p) = &publisher {
            p.publish(pages);
        }
    })
    .await
}
