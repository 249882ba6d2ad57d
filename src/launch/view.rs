//! The admin view of each launcher: every snapshot the observer publishes
//! becomes pages ([`crate::view::health`]), published for the admin server
//! ([`crate::admin`]), and gauges ([`crate::metrics`]).
//!
//! A look that cannot read ZooKeeper still answers for the local server
//! (the observer keeps the last record seen): a ZooKeeper outage must
//! never make Marathon kill a healthy Redis (`/health` depends on the
//! server alone). A look that hangs leaves the pages to go stale, and
//! stale pages answer 503.

use std::cell::Cell;
use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::error;

use crate::admin::{self, Publisher, listen_addrs};
use crate::config::Common;
use crate::metrics::metrics;
use crate::model::Endpoint;
use crate::observe::Observer;
use crate::snapshot::Snapshot;
use crate::view::health::{Pages, redis_pages, redis_view, sentinel_pages, watcher_pages};

/// The admin paths of each binary, besides `/metrics`.
pub const REDIS_PATHS: &[&str] = &["/health", "/ready", "/master", "/replica", "/liveness"];
pub const SENTINEL_PATHS: &[&str] = &["/health", "/ready", "/liveness"];
pub const WATCHER_PATHS: &[&str] = &["/health", "/ready", "/master", "/sentinels", "/liveness"];

/// The period of a launcher's looks when nothing asks for more.
pub const EVERY: Duration = Duration::from_secs(1);

/// How long a decision loop may go without beginning a cycle, outside a
/// bounded procedure, before `/liveness` answers 503.
pub const LIVENESS_AFTER: Duration = Duration::from_secs(5);

/// The beat of a launcher's decision loop, for `/liveness`: when it last
/// began a cycle, and the deadline of the bounded procedure (a switchover,
/// a freeze) it is carrying out meanwhile.
#[derive(Debug)]
pub struct Beat {
    last: Cell<Instant>,
    busy_until: Cell<Option<Instant>>,
}

impl Default for Beat {
    fn default() -> Self {
        Beat {
            last: Cell::new(Instant::now()),
            busy_until: Cell::new(None),
        }
    }
}

impl Beat {
    /// A cycle begins.
    pub fn mark(&self) {
        self.last.set(Instant::now());
    }

    /// A procedure bounded by `deadline` begins (`Some`) or ended (`None`).
    pub fn busy_until(&self, deadline: Option<Instant>) {
        self.mark();
        self.busy_until.set(deadline);
    }

    /// The loop began a cycle within [`LIVENESS_AFTER`], or its procedure
    /// is not [`LIVENESS_AFTER`] past its deadline.
    pub fn alive(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last.get()) <= LIVENESS_AFTER
            || self
                .busy_until
                .get()
                .is_some_and(|d| now.saturating_duration_since(d) <= LIVENESS_AFTER)
    }
}

/// Starts the admin server when `port` is set; `Err` is the exit code 1
/// (the port cannot be bound).
pub async fn start(
    common: &Common,
    bind: Option<Ipv4Addr>,
    paths: &'static [&'static str],
) -> Result<Option<Publisher>, i32> {
    let Some(port) = common.admin_port else { return Ok(None) };
    admin::start(&listen_addrs(bind, port), paths, common.tls.as_ref())
        .await
        .map(Some)
        .map_err(|e| {
            error!(error = %e, "cannot start the admin API");
            1
        })
}

/// With every snapshot the observer publishes, for ever: sets the
/// ZooKeeper session gauge, calls `show`, and publishes the pages it
/// returns, built only when there is an admin port to serve them.
async fn each<P: FnOnce() -> Pages>(
    observer: &Observer,
    publisher: Option<Publisher>,
    mut show: impl FnMut(&Snapshot) -> P,
) -> Infallible {
    let mut rx = observer.subscribe();
    loop {
        if let Some(s) = rx.borrow_and_update().clone() {
            metrics().set_zk_session(s.zk.as_str());
            let pages = show(&s);
            if let Some(p) = &publisher {
                p.publish(pages());
            }
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

/// `rzk-redis`'s view, for ever; `beat` is its decision loop's.
pub async fn redis(publisher: Option<Publisher>, observer: &Observer, p: RedisPages, beat: &Beat) -> Infallible {
    each(observer, publisher, |snap| {
        let m = metrics();
        let view =
            redis_view(snap, &p.me, p.max_lag_s, p.priority).with_fence(m.fenced.get() == 1, m.frozen.get() == 1);
        m.set_role(view.node.role);
        m.set_engine(view.node.engine.zip(view.node.engine_version.as_deref()));
        m.record_matches.set(i64::from(view.record_matches));
        m.ready.set(i64::from(view.ready));
        m.repl_offset.set(view.node.offset.unwrap_or(0));
        m.repl_lag.set(view.node.lag_bytes.unwrap_or(0));
        m.promotable.set(i64::from(view.node.promotable == Some(true)));
        m.paused.set(i64::from(view.paused));
        m.pause_until.set(view.paused_until.map_or(0, |ms| (ms / 1000) as i64));
        let alive = beat.alive(Instant::now());
        move || redis_pages(&view, alive)
    })
    .await
}

/// `rzk-sentinel`'s view, for ever: its own Sentinel (asked at `own`,
/// announced as `me`), the record, quorum.
pub async fn sentinel(publisher: Option<Publisher>, observer: &Observer, own: &Endpoint, me: &Endpoint) -> Infallible {
    each(observer, publisher, |snap| {
        let (pages, ready) = sentinel_pages(snap, own, me);
        let m = metrics();
        m.ready.set(i64::from(ready));
        m.record_matches.set(i64::from(
            snap.answer_of(own).map(|a| &a.master) == snap.record.master(),
        ));
        || pages
    })
    .await
}

/// `rzk-watcher`'s view, for ever: the group as its reconciliation sees
/// it, and the Sentinels it is subscribed to.
pub async fn watcher(
    publisher: Option<Publisher>,
    observer: &Observer,
    subscribed: watch::Receiver<Vec<Endpoint>>,
) -> Infallible {
    each(observer, publisher, |snap| {
        let (pages, ready) = watcher_pages(snap, &subscribed.borrow());
        let m = metrics();
        m.ready.set(i64::from(ready));
        m.record_matches.set(i64::from(ready));
        || pages
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_beat_is_alive_while_the_loop_cycles_or_a_procedure_is_in_its_bound() {
        let beat = Beat::default();
        let t0 = Instant::now();
        let after = |d: Duration| t0 + d + Duration::from_secs(1);
        assert!(beat.alive(t0));
        assert!(!beat.alive(after(LIVENESS_AFTER)), "no cycle for longer than the bound");
        // A freeze bounded by 60 s blocks the loop: alive within its bound.
        beat.busy_until(Some(after(Duration::from_secs(60))));
        assert!(beat.alive(after(Duration::from_secs(60) + LIVENESS_AFTER)));
        assert!(
            !beat.alive(after(Duration::from_secs(61) + LIVENESS_AFTER)),
            "past its bound: stuck"
        );
        beat.busy_until(None);
        assert!(!beat.alive(after(Duration::from_secs(60))));
        assert!(beat.alive(Instant::now()));
    }
}
