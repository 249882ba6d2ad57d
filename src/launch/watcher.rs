//! `rzk-watcher`: keeps `<root>/master` equal to the Sentinels' view.
//!
//! Follows the contract (`docs/contract.md`), "rzk-watcher": subscribe to `+promoted-slave` and
//! `+switch-master` on every registered Sentinel and act on the first event, reconcile on every (re)connect and on a timer
//! (pub/sub loses messages), write only with CAS and only when the record
//! differs from a master confirmed by `ROLE`, and clear dead Sentinels from
//! the live ones' memory one at a time, never during a failover.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};
use tracing::{debug, error, info, warn};
use zookeeper_client::Error as ZkErr;

use crate::act::{ActError, Action, Executor, Observed};
use crate::backoff::Backoff;
use crate::config::WatcherConfig;
use crate::launch::{self as task, view};
use crate::model::{Cause, Endpoint, Intent, unix_ms};
use crate::observe::{Heard, Observer, Subscriptions, observe, session_mark};
use crate::policy::ghosts::{GhostMemory, ghost_reset};
use crate::policy::reconcile::{RecordWrite, cause, confirmed_master, reconcile, record_write};
use crate::probe::Probe;
use crate::reply::{FailoverStep, SentinelAnswer, fields, parse_failover_event, parse_new_epoch};
use crate::snapshot::{Scope, Snapshot};
use crate::zk::Zk;

/// Pause between two `SENTINEL RESET`s, so a reset Sentinel has relearned its
/// live peers (hello messages every 2 s) before the next one forgets them.
const RESET_SPACING: Duration = Duration::from_secs(6);
/// The failover leader publishes `+promoted-slave` as soon as the chosen
/// replica answers as master, and `+switch-master` only once the other
/// replicas follow it (up to a second later: each is seen by its `INFO`).
const CHANNELS: &[&str] = &["+promoted-slave", "+switch-master", "+new-epoch"];

/// Runs `rzk-watcher` until a signal stops it; returns the exit code (0 on
/// SIGTERM/SIGINT, 1 when ZooKeeper cannot be reached at start).
pub async fn run(cfg: WatcherConfig) -> i32 {
    let (admin, mut signals, zk) = match task::start(&cfg.common, "rzk-watcher", None, view::WATCHER_PATHS).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    tokio::spawn(task::follow_tls(cfg.common.clone(), task::ChildTls::None));
    let keeper = task::keep_session(&cfg.common, zk, task::ChildTls::None, "rzk-watcher", None);
    let (subscribed, following) = watch::channel(vec![]);
    let probe = Probe::of(&cfg.common);
    // The ghost gate needs the registered nodes (how many replicas the
    // Sentinels should know).
    let scope = Scope {
        nodes: true,
        ..Scope::default()
    };
    let observer = Observer::new(probe.clone(), &cfg.common.master_name, scope);
    // Once a second for the admin pages; else at the reconcile pace.
    let every = if admin.is_some() {
        view::EVERY
    } else {
        cfg.reconcile_interval
    };
    let mut watcher = Watcher {
        probe,
        cfg,
        ghosts: GhostMemory::default(),
        subscribed,
        epochs: Default::default(),
    };
    let code = tokio::select! {
        never = observer.run(keeper.subscribe(), |_| every) => match never {},
        never = watcher.run(keeper.subscribe(), &observer) => match never {},
        never = view::watcher(admin, &observer, following) => match never {},
        sig = signals.recv() => {
            info!(sig, "stopping");
            0
        },
    };
    keeper.shutdown().await;
    code
}

/// `rzk-watcher --check`: a health check for Docker and Marathon. Exits 0
/// when the record names the master the Sentinels confirm (or when there is
/// nothing to compare yet: no Sentinel, or none with a live master), 1 when
/// the record is wrong or ZooKeeper cannot be read. It writes nothing.
pub async fn check(cfg: WatcherConfig) -> i32 {
    let zk = match Zk::connect(&cfg.common.zk).await {
        Ok(zk) => zk,
        Err(e) => {
            error!(error = %e, "check: ZooKeeper unreachable");
            return 1;
        }
    };
    if let Err(e) = zk.speak_as_group(cfg.common.tls.as_ref()).await {
        error!(error = %e, path = %zk.tls_path(), "check: cannot read what the group speaks");
        return 1;
    }
    let probe = Probe::of(&cfg.common);
    let snap = match observe(&zk, &probe, &cfg.common.master_name, &Scope::default()).await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, path = %zk.master_path(), "check: cannot read the record");
            return 1;
        }
    };
    match confirmed_master(&snap) {
        Some(m) if snap.record.master() != Some(&m) => {
            error!(path = %zk.master_path(), record = ?snap.record, master = %m, "check: the record differs from the sentinels");
            1
        }
        Some(m) => {
            info!(path = %zk.master_path(), master = %m, "check: the record matches the sentinels");
            0
        }
        None => {
            info!(path = %zk.master_path(), record = ?snap.record, "check: no confirmed master from the sentinels to compare");
            0
        }
    }
}

struct Watcher {
    cfg: WatcherConfig,
    probe: Probe,
    /// What the ghost-reset gate remembers.
    ghosts: GhostMemory,
    /// The Sentinels it is subscribed to, for the admin view.
    subscribed: watch::Sender<Vec<Endpoint>>,
    /// The last epoch each Sentinel announced (`+new-epoch`): a failover's
    /// own, for the history, when the Sentinel announces the promotion.
    epochs: std::collections::HashMap<Endpoint, u64>,
}

impl Watcher {
    /// Lists the registered Sentinels and follows all of them, until the
    /// session changes or the list can't be read; for ever.
    async fn run(&mut self, mut sessions: watch::Receiver<Zk>, observer: &Observer) -> std::convert::Infallible {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let zk = sessions.borrow_and_update().clone();
            let dir = zk.sentinels_dir();
            let (list, children) = match zk.watch_registered(&dir).await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, path = %dir, "cannot list sentinels; retrying");
                    tokio::select! {
                        _ = sleep(Duration::from_secs(1)) => {},
                        _ = sessions.changed() => {},
                    }
                    continue;
                }
            };
            if list.is_empty() {
                let pause = backoff.next_pause();
                info!(path = %dir, retry_ms = pause.as_millis() as u64, "no sentinel registered; waiting");
                tokio::select! {
                    _ = children.changed() => {},
                    _ = sessions.changed() => {},
                    _ = sleep(pause) => {},
                }
                continue;
            }
            backoff.reset();
            let list: Vec<Endpoint> = list.into_iter().map(|(_, e)| e).collect();
            let reason = self.follow(&zk, list, children, &mut sessions, observer).await;
            self.subscribed.send_replace(vec![]);
            info!(reason, "reading the sentinels again");
        }
    }

    /// Follows every registered Sentinel at once: only the failover leader
    /// publishes `+switch-master` at once, the others up to ~2 s later
    /// (hello messages), so listening to one would often wait for a
    /// follower. Each subscription is its own task; the first event wins
    /// and the later copies find the record already right. Reconciles on
    /// start and on a timer, and cleans ghosts. Returns why it stopped.
    async fn follow(
        &mut self,
        zk: &Zk,
        list: Vec<Endpoint>,
        children: zookeeper_client::OneshotWatcher,
        sessions: &mut watch::Receiver<Zk>,
        observer: &Observer,
    ) -> &'static str {
        let mut subs = Subscriptions::new(self.probe.clone(), CHANNELS, Duration::from_secs(1));
        subs.follow(&list);
        self.reconcile(zk, &*observer.fresh().await).await;
        warm_history(zk);
        // Tests and operators read this line as "this watcher is working".
        info!(sentinels = list.len(), "reconciled after subscribing");
        let mut tick = interval(self.cfg.reconcile_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        let dir = zk.sentinels_dir();
        let mut children = Box::pin(children.changed());
        loop {
            tokio::select! {
                heard = subs.next() => match heard {
                    Heard::Event { sentinel, channel, payload } if channel == "+new-epoch" => {
                        if let Some(e) = parse_new_epoch(&payload) {
                            self.epochs.insert(sentinel, e);
                        }
                    }
                    Heard::Event { sentinel, channel, payload } => self.on_event(zk, &sentinel, &channel, &payload).await,
                    Heard::Subscribed(sentinel) => {
                        info!(sentinel = %sentinel, channels = ?CHANNELS, "subscribed");
                        self.subscribed.send_modify(|subscribed| {
                            if let Err(at) = subscribed.binary_search(&sentinel) {
                                subscribed.insert(at, sentinel);
                            }
                        });
                    }
                    Heard::Lost(sentinel, reason) => {
                        info!(sentinel = %sentinel, reason, "subscription ended; retrying");
                        self.subscribed.send_modify(|subscribed| subscribed.retain(|s| *s != sentinel));
                    }
                },
                _ = tick.tick() => {
                    let snap = observer.fresh().await;
                    self.reconcile(zk, &snap).await;
                    self.clean_ghosts(zk, &snap).await;
                    warm_history(zk);
                },
                _ = &mut children => match zk.watch_registered(&dir).await {
                    Ok((list, w)) => {
                        let registered: Vec<Endpoint> = list.into_iter().map(|(_, e)| e).collect();
                        subs.follow(&registered);
                        self.subscribed.send_modify(|subscribed| subscribed.retain(|s| registered.contains(s)));
                        children = Box::pin(w.changed());
                    },
                    Err(_) => return "cannot list sentinels",
                },
                _ = sessions.changed() => return "new ZooKeeper session",
            }
        }
    }

    async fn on_event(&self, zk: &Zk, sentinel: &Endpoint, channel: &str, payload: &[u8]) {
        let Some(event) = parse_failover_event(channel, payload) else {
            warn!(sentinel = %sentinel, channel, "ignoring a malformed event");
            return;
        };
        if event.name != self.cfg.common.master_name {
            info!(sentinel = %sentinel, channel, name = %event.name, "ignoring an event for another master name");
            return;
        }
        let FailoverStep::Promoted(new) = event.step else {
            return;
        };
        info!(sentinel = %sentinel, old = %event.master, new = %new, "{channel}");
        // Sentinel announces a promotion once the replica answered as
        // master, so ROLE confirms at once; allow a little slack all the
        // same.
        for _ in 0..10 {
            if self.probe.is_master(&new).await {
                self.ensure_record(zk, &new, sentinel).await;
                return;
            }
            sleep(Duration::from_millis(200)).await;
        }
        warn!(new = %new, "promoted server does not answer as master; leaving it to reconciliation");
    }

    fn executor(&self) -> Executor<'_> {
        Executor::new(&self.probe, &self.cfg.common.master_name)
    }

    /// Corrects the record when it differs from the live master the
    /// Sentinels confirm in `snap` ([`crate::policy::reconcile`]).
    async fn reconcile(&self, zk: &Zk, snap: &Snapshot) {
        let Some(w) = reconcile(snap, unix_ms()) else {
            return debug!(views = ?snap.sentinel_views(), "record matches the sentinels, or none confirmed");
        };
        let old = snap.record.master().map(ToString::to_string).unwrap_or_default();
        let observed = Observed::new(zk, snap.session);
        let action = Action::WriteRecord(w.clone());
        match self.executor().execute(&action, Some(observed)).await {
            Ok(()) => info!(path = %zk.master_path(), old = %old, master = %w.master, "record follows the sentinels"),
            Err(e) => warn!(error = %e, master = %w.master, "reconcile: record not written"),
        }
    }

    /// CAS-writes `master` unless the record already names it. A lost race
    /// re-reads: N watchers make one version bump per failover. The
    /// history's epoch is the one `sentinel`, which announced it, gives.
    async fn ensure_record(&self, zk: &Zk, master: &Endpoint, sentinel: &Endpoint) {
        // The failover's epoch, as `sentinel` announced it; else its
        // config epoch once it monitors the new master (while the failover
        // runs, it still shows the old master's).
        let name = &self.cfg.common.master_name;
        let epoch = match self.epochs.get(sentinel) {
            Some(e) => Some(*e),
            None => match self.probe.cmd(sentinel, &["SENTINEL", "MASTER", name]).await {
                Ok(v) => SentinelAnswer::from_fields(sentinel, &fields(&v), None)
                    .filter(|a| a.monitored == *master)
                    .map(|a| a.epoch),
                Err(_) => None,
            },
        };
        for _ in 0..3 {
            let record = match zk.read_master().await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, path = %zk.master_path(), "cannot read the record");
                    return;
                }
            };
            let Some(w) = record_write(&record, master) else { return };
            let intent = match zk.read_switchover().await {
                Ok(Some((data, _))) => Intent::parse(&data).ok(),
                _ => None,
            };
            let w = RecordWrite {
                cause: cause(intent.as_ref(), w.old.as_ref(), unix_ms(), Cause::Failover),
                epoch,
                ..w
            };
            let observed = Observed::new(zk, session_mark(zk));
            match self.executor().execute(&Action::WriteRecord(w), Some(observed)).await {
                Ok(()) => {
                    let old = record.master().map(ToString::to_string).unwrap_or_default();
                    info!(path = %zk.master_path(), old = %old, master = %master, "record follows the sentinels");
                    return;
                }
                Err(ActError::Zk(ZkErr::BadVersion | ZkErr::NodeExists)) => continue,
                // The reconcile tries again within its period.
                Err(e) => return warn!(error = %e, master = %master, "record not written"),
            }
        }
    }

    /// Sends `SENTINEL RESET` to one Sentinel that remembers dead peers,
    /// when the gate ([`crate::policy::ghosts`]) allows it.
    async fn clean_ghosts(&mut self, zk: &Zk, snap: &Snapshot) {
        let spacing = RESET_SPACING.max(self.cfg.reconcile_interval);
        let Some(s) = ghost_reset(snap, &mut self.ghosts, Instant::now(), spacing) else {
            return;
        };
        let known = snap.answer_of(&s).map(|a| a.peers).unwrap_or(0);
        let action = Action::SentinelReset { sentinel: s.clone() };
        let observed = Observed::new(zk, snap.session);
        match self.executor().execute(&action, Some(observed)).await {
            Ok(()) => {
                crate::metrics::metrics().ghost_resets.inc();
                info!(sentinel = %s, known, registered = snap.sentinels.len(), "reset a sentinel that remembers dead peers")
            }
            Err(e) => warn!(sentinel = %s, error = %e, "SENTINEL RESET failed"),
        }
        self.ghosts.last_reset = Some(Instant::now());
    }
}

/// Reads the history into the watched copy, where a failover's write of
/// the record finds it: the write then waits for its transaction alone.
/// Served from the copy, a request only after the history changed. On a
/// task of its own, so that a slow or lost ZooKeeper never holds up the
/// watcher's events.
fn warm_history(zk: &Zk) {
    let zk = zk.clone();
    tokio::spawn(async move {
        if let Err(e) = zk.read_history().await {
            debug!(error = %e, "cannot read the history");
        }
    });
}
