//! `rzk-redis`: bootstrap a Redis task under the ZooKeeper lock, then
//! supervise it.
//!
//! Bootstrap follows the contract (section 6.1): connect, lock, observe
//! and decide until there is a decision, start the server in that role,
//! publish the record if it is the master, release the lock only once the
//! server answers in its role, register.
//!
//! Then, while the server runs, one observer looks at the group and
//! publishes each snapshot; one duty loop decides from it (its own
//! replica's priority, a switchover asked for, the role guard), the fence
//! and the admin view read the same snapshots, and the first SIGTERM to a
//! master runs the hand-over, the same switchover procedure.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout_at};
use tracing::{debug, error, info, warn};
use zookeeper_client::{Error as ZkErr, LockClient};

use crate::act::{ActError, Action, Executor, Observed};
use crate::config::{Persistence, RedisConfig};
use crate::datadir;
use crate::launch::diverged::{self, Marks};
use crate::launch::switchover::carry_out;
use crate::launch::view::{self, RedisPages};
use crate::launch::{self as task, Own, Ready, fence, interrupted, pause};
use crate::metrics::metrics;
use crate::model::{Cause, Change, Endpoint, Identity, Intent, Record, Role, unix_ms};
use crate::observe::{Heard, Observer, Subscriptions, observe, server_state};
use crate::policy::bootstrap::{Decision, Observation, decide};
use crate::policy::engine::replication_refused;
use crate::policy::guard::{GuardAction, GuardMemory, guard};
use crate::policy::promotion::{desired_priority, preferred_successor};
use crate::policy::reconcile::{RecordWrite, cause, record_write};
use crate::policy::switchover::{Outcome, PAUSE_MARGIN, Procedure, crash_plan, plan};
use crate::probe::Probe;
use crate::render::{redis_conf, write_private};
use crate::reply::{FAILOVER_EVENTS, FailoverStep, parse_failover_event};
use crate::session::Keeper;
use crate::snapshot::{Scope, Snapshot};
use crate::supervise::{self, Child, Signals};
use crate::zk::Zk;

/// Pause between observations while waiting out the takeover grace.
const RECHECK: Duration = Duration::from_secs(1);
/// How long a `NOFAILOVER=true` launcher that found no master to follow
/// waits before it takes the bootstrap lock again.
const YIELD_PAUSE: Duration = Duration::from_secs(2);
/// How long a replica must be stranded before the guard re-points it; gives
/// Sentinel, which normally does it, the first chance.
const STRANDED_SETTLE: Duration = Duration::from_secs(5);
/// How often a replica in its first full sync is looked at: its priority
/// is restored within a moment of the sync's end.
const SYNC_CHECK: Duration = Duration::from_millis(100);
/// The least of a hand-over's budget left after waiting for a Sentinel to
/// see the preferred replica: pause, catch-up, failover and promotion took
/// up to 3.6 s here, so the preference never costs the hand-over itself.
const AFTER_PREFERENCE: Duration = Duration::from_secs(8);
/// How long after a pause ends a replica's launcher asks the Sentinels to
/// fail over a master that died during it.
const AFTER_PAUSE: Duration = Duration::from_secs(60);
/// How long a failover the Sentinels run on their own after a pause is
/// waited for before another is asked for at a Sentinel that runs none.
const STUCK_FAILOVER: Duration = Duration::from_secs(2);

/// Runs `rzk-redis` to completion and returns the process exit code.
pub async fn run(cfg: RedisConfig, id: Identity) -> i32 {
    let (admin, mut signals, zk) = match task::start(&cfg.common, "rzk-redis", Some(id.bind), view::REDIS_PATHS).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let child_tls = task::ChildTls::ConfigSet(id.loopback(), cfg.common.data_dir());
    tokio::spawn(task::follow_tls(cfg.common.clone(), child_tls.clone()));
    let probe = Probe::of(&cfg.common);
    let me = id.announce.clone();
    if cfg.nofailover {
        info!(addr = %me, "NOFAILOVER=true: this server is never promoted (replica-priority 0)");
    }
    let lock_data = me.to_record();
    let mut yields = 0u32;
    let (mut child, replica_of) = loop {
        info!(addr = %me, path = %zk.lock_dir(), "waiting for the bootstrap lock");
        let lock = tokio::select! {
            r = zk.lock(&lock_data) => match r {
                Ok(l) => l,
                Err(e) => {
                    error!(error = %e, path = %zk.lock_dir(), "could not take the bootstrap lock");
                    zk.release_contenders().await;
                    return 1;
                },
            },
            sig = signals.recv() => {
                // The lock future is gone; remove its node now rather than when
                // the session times out, so the next launcher is not held up.
                zk.release_contenders().await;
                return interrupted(sig);
            },
        };
        info!(addr = %me, path = %lock.lock_path(), "bootstrap lock taken");
        let outcome = bootstrap(&cfg, &id, &zk, &lock, &probe, &mut signals).await;
        // Released on every path, so the next launcher never waits for our
        // session to time out.
        zk.unlock(lock).await;
        match outcome {
            Ok(started) => break started,
            Err(Early::Exit(code)) => return code,
            Err(Early::Supervise(mut child)) => return supervise::supervise(&mut child, &mut signals).await,
            Err(Early::Yield) => {
                if yields.is_multiple_of(30) {
                    warn!(addr = %me, path = %zk.master_path(),
                        "NOFAILOVER=true and no live master to follow; lock released for a task that may become master, looking again");
                }
                yields += 1;
                if let Err(code) = pause(&mut signals, YIELD_PAUSE).await {
                    return code;
                }
            }
        }
    };
    info!(addr = %me, role = if replica_of.is_some() { "replica" } else { "master" }, "server ready; lock released");

    let keeper = task::keep_session(&cfg.common, zk, child_tls, "rzk-redis", Some(&me));
    let node_path = keeper.zk().node_path(cfg.nofailover);
    keeper.register(&node_path, &me.to_record());
    let own = Own {
        probe: &probe,
        local: id.loopback(),
        task: id.local(),
        me: me.clone(),
        name: &cfg.common.master_name,
        data_dir: cfg.common.data_dir(),
    };
    let observer = Observer::new(
        probe.clone(),
        &cfg.common.master_name,
        Scope {
            local_server: Some((id.loopback(), me.clone())),
            local_sentinel: None,
            nodes: true,
            sentinel_replicas: true,
        },
    );
    let duty = Duty {
        cfg: &cfg,
        own: &own,
        observer: &observer,
        keeper: &keeper,
        synced: Cell::new(replica_of.is_none()),
        priority_set: Cell::new(if replica_of.is_some() { 0 } else { cfg.replica_priority }),
        priority_set_at: Cell::new(Instant::now()),
        priority_by_hand: Cell::new(false),
        held_by_hand: Cell::new(None),
        was_paused: Cell::new(false),
        resumed_at: Cell::new(None),
        running_since: Cell::new(None),
        busy: Cell::new(false),
        beat: view::Beat::default(),
        finished: RefCell::new(vec![]),
        marks: Marks::new(cfg.common.data_dir(), cfg.persistence == Persistence::Aof),
    };
    let period = |s: &Snapshot| match s.local.as_ref() {
        Some(l) if !l.is_master() && !duty.synced.get() => SYNC_CHECK,
        Some(l) if l.is_master() => fence::look_every(cfg.fence_after, s),
        _ => view::EVERY,
    };
    let pages = RedisPages {
        me: me.clone(),
        max_lag_s: cfg.ready_max_lag.as_secs(),
        priority: cfg.replica_priority,
    };
    let mut handed_over = false;
    // Any signal forwarded means the launcher is stopping its server: its
    // exit is then no crash.
    let mut signalled = false;
    let before_forward = |sig: i32| {
        let first_term = sig == libc::SIGTERM && !handed_over;
        handed_over |= first_term;
        signalled = true;
        let duty = &duty;
        async move {
            if first_term {
                duty.hand_over().await;
            }
        }
    };
    let code = tokio::select! {
        code = supervise::supervise_with(&mut child, &mut signals, before_forward) => code,
        never = observer.run(keeper.subscribe(), period) => match never {},
        never = duty.run() => match never {},
        never = fence::run(&own, &observer, keeper.subscribe(), cfg.fence_after) => match never {},
        never = view::redis(admin, &observer, pages, &duty.beat) => match never {},
    };
    if !signalled {
        // The server died on its own (OOM killer, a crash, a SHUTDOWN).
        tokio::select! {
            () = duty.after_crash(code) => {},
            // The procedure asks for each look it needs.
            never = observer.run(keeper.subscribe(), |_| view::EVERY) => match never {},
        }
    }
    keeper.shutdown().await;
    code
}

/// What the supervising launcher decides from each snapshot.
struct Duty<'a> {
    cfg: &'a RedisConfig,
    own: &'a Own<'a>,
    observer: &'a Observer,
    keeper: &'a Keeper,
    /// The server has held the data since it started (a master has).
    synced: Cell<bool>,
    /// The priority this launcher last gave its server (or its generated
    /// config did).
    priority_set: Cell<u32>,
    /// When it last did.
    priority_set_at: Cell<Instant>,
    /// Someone else set the priority: leave it alone.
    priority_by_hand: Cell<bool>,
    /// That priority, while a pause holds it at 0.
    held_by_hand: Cell<Option<u32>>,
    /// The last look found the group paused.
    was_paused: Cell<bool>,
    /// When the last pause ended: for [`AFTER_PAUSE`], a failover of a
    /// master that died during it may be asked for.
    resumed_at: Cell<Option<Instant>>,
    /// Since when a failover the Sentinels run has been seen, after a pause.
    running_since: Cell<Option<Instant>>,
    /// A switchover or the hand-over is being carried out: nothing else
    /// acts meanwhile.
    busy: Cell<bool>,
    /// The duty loop's beat, for `/liveness`.
    beat: view::Beat,
    /// The intents this launcher has finished (their result may not have
    /// reached ZooKeeper).
    finished: RefCell<Vec<String>>,
    /// The replication mark (with `PERSISTENCE=aof`) and the kept copy.
    marks: Marks,
}

impl Duty<'_> {
    /// For ever: with each snapshot, its own replica's priority, a
    /// switchover asked for (on a master), and the role guard.
    async fn run(&self) -> std::convert::Infallible {
        let mut rx = self.observer.subscribe();
        let mut mem = GuardMemory::default();
        // The failover events of every registered Sentinel: the first sign
        // of a failover of this master freezes it at once.
        let mut events = Subscriptions::new(self.own.probe.clone(), FAILOVER_EVENTS, Duration::from_millis(100));
        loop {
            let heard = tokio::select! {
                changed = rx.changed() => match changed {
                    Ok(()) => None,
                    Err(_) => return std::future::pending().await,
                },
                heard = events.next() => Some(heard),
            };
            self.beat.mark();
            let Some(snap) = self.observer.latest() else { continue };
            match heard {
                None => events.follow(&snap.sentinels),
                // Pub/sub drops messages: a look right after every
                // (re)subscription catches what was missed.
                Some(Heard::Subscribed(_)) => self.observer.look_soon(),
                Some(Heard::Lost(..)) => {}
                Some(Heard::Event { channel, payload, .. }) => {
                    // A freeze under way looks every 50 ms.
                    if let Some(e) = parse_failover_event(&channel, &payload)
                        && e.name == *self.own.name
                        && e.master == self.own.me
                        && matches!(e.step, FailoverStep::Started | FailoverStep::Promoted(_))
                        && !self.busy.get()
                    {
                        self.freeze(&snap, &format!("{channel} from a Sentinel")).await;
                    }
                    continue;
                }
            }
            self.marks.look(&snap, self.keeper, &self.own.me).await;
            if self.busy.get() {
                continue;
            }
            // The cheap check behind the events: a failover of this master
            // that a Sentinel flags in the look.
            if snap.local.as_ref().is_some_and(|l| l.is_master())
                && snap
                    .registered_answers()
                    .any(|a| a.failover && a.monitored == self.own.me)
            {
                self.freeze(&snap, "a Sentinel flags a failover in progress").await;
                continue;
            }
            self.priority(&snap).await;
            self.after_pause(&snap).await;
            if let Some(intent) = snap.intent.clone()
                && intent.live(unix_ms())
                && intent.from == self.own.me
                && snap.local.as_ref().is_some_and(|l| l.is_master())
                && !self.finished.borrow().contains(&intent.id)
            {
                self.busy.set(true);
                self.switchover(&snap, intent).await;
                self.busy.set(false);
                continue;
            }
            self.guard(&snap, &mut mem).await;
        }
    }

    /// The freeze: a failover of this master that the launcher did not
    /// start (forced at a Sentinel, or the Sentinels' own). Writes are
    /// paused at once, before the chosen replica can be detached, and the
    /// switchover procedure takes it from there: done (this server follows
    /// the new master, the pause is lifted), or given up (the pause is
    /// lifted), bounded by the Sentinels' `failover-timeout`.
    async fn freeze(&self, snap: &Snapshot, why: &str) {
        // The look may be older than the event (a freeze that just ended
        // made this server a replica): ask the server itself, one round
        // trip on loopback.
        if !snap.local.as_ref().is_some_and(|l| l.is_master()) || !self.own.probe.is_master(&self.own.local).await {
            return;
        }
        self.busy.set(true);
        let bound = snap
            .registered_answers()
            .map(|a| Duration::from_millis(a.timing.failover_timeout_ms))
            .max()
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(60));
        let started = Instant::now();
        self.beat.busy_until(Some(started + bound + PAUSE_MARGIN));
        let pause = Action::PauseWrites(bound + PAUSE_MARGIN);
        let outcome = match self.own.executor().execute(&pause, None).await {
            Err(e) => {
                warn!(addr = %self.own.me, error = %e, reason = why, "could not freeze this master");
                None
            }
            Ok(()) => {
                metrics().frozen.set(1);
                warn!(addr = %self.own.me, reason = why, bound_ms = bound.as_millis() as u64,
                    "FROZEN: a failover of this master is under way; writes are paused until it ends");
                let p = Procedure::frozen(started, bound);
                Some(carry_out(self.own, self.observer, p, "freeze").await.0)
            }
        };
        metrics().frozen.set(0);
        self.beat.busy_until(None);
        if let Some(o) = outcome {
            info!(addr = %self.own.me, outcome = o.label(), ms = started.elapsed().as_millis() as u64, "freeze ended");
            metrics().failover_freezes.with_label_values(&[o.label()]).inc();
        }
        self.busy.set(false);
    }

    /// Gives the own server the priority [`desired_priority`] says. A
    /// replica's is read from its `INFO`; a master's is not shown there,
    /// so the last one set is remembered (a replica preferred or held back
    /// by a switchover may have been promoted meanwhile). A priority that
    /// someone else set (an operator making an unsynced replica
    /// promotable by hand) is left alone from then on, except that a pause
    /// holds it at 0 and gives it back after. While the group is paused
    /// every replica is held at 0, so that no Sentinel fails the master
    /// over.
    async fn priority(&self, snap: &Snapshot) {
        let Some(l) = snap.local.as_ref() else { return };
        let paused = snap.pause.is_some();
        // NOFAILOVER=true: 0, whoever set another value.
        if self.priority_by_hand.get() && !self.cfg.nofailover {
            if l.is_master() {
                return;
            }
            let want = match (paused, self.held_by_hand.get()) {
                (true, held) => {
                    self.held_by_hand.set(held.or(Some(l.priority)));
                    0
                }
                (false, Some(own)) => own,
                (false, None) => return,
            };
            if (l.priority == want
                || self
                    .set_priority(want, Some(l.priority), "replica-priority set (pause)")
                    .await)
                && !paused
            {
                self.held_by_hand.set(None);
            }
            return;
        }
        // Only a look that began after our last change can tell.
        if !l.is_master()
            && snap.taken > self.priority_set_at.get()
            && l.priority != self.priority_set.get()
            && !self.cfg.nofailover
        {
            self.priority_by_hand.set(true);
            warn!(addr = %self.own.me, priority = l.priority, was = self.priority_set.get(),
                "replica-priority was changed by someone else; this launcher leaves it alone from now on");
            return;
        }
        let first_sync = !self.synced.get() && l.has_the_data();
        if first_sync {
            self.synced.set(true);
        }
        let want = if paused {
            0
        } else {
            desired_priority(
                self.synced.get(),
                self.cfg.replica_priority,
                snap.intent.as_ref(),
                &self.own.me,
                unix_ms(),
            )
        };
        let now = if l.is_master() {
            self.priority_set.get()
        } else {
            l.priority
        };
        if now == want {
            return;
        }
        let what = match (first_sync, paused) {
            (true, false) => "first full sync done; replica-priority restored, this server may now be promoted",
            (_, true) => "the group is paused; replica-priority held at 0",
            _ => "replica-priority set",
        };
        self.set_priority(want, Some(now), what).await;
    }

    /// Once a pause ends (resumed, or expired): a master that died during
    /// it is failed over now. The Sentinels gave up on it for want of a
    /// promotable replica and would try again only after twice their
    /// failover timeout; a replica's launcher asks one that sees the master
    /// down and runs no failover itself, at each look while a majority sees
    /// it down, no server answers as master, and no failover runs (or one
    /// has run for [`STUCK_FAILOVER`]), for [`AFTER_PAUSE`]. (They read the
    /// restored priorities within a second while the master is down.)
    async fn after_pause(&self, snap: &Snapshot) {
        if snap.pause.is_some() {
            self.was_paused.set(true);
            return;
        }
        if self.was_paused.replace(false) {
            self.resumed_at.set(Some(Instant::now()));
            info!(addr = %self.own.me, "the pause has ended; replicas may be promoted again");
        }
        if self.resumed_at.get().is_none_or(|at| at.elapsed() > AFTER_PAUSE) {
            return;
        }
        let answers: Vec<_> = snap.registered_answers().collect();
        // A failover the Sentinels run on their own is given a moment: one
        // stuck in a split vote waits out its election timeout, and one
        // that started before the priorities came back gives up.
        let running = answers.iter().any(|a| a.failover);
        let since = running.then(|| self.running_since.get().unwrap_or_else(Instant::now));
        self.running_since.set(since);
        let stuck = since.is_some_and(|t| t.elapsed() >= STUCK_FAILOVER);
        let replica = snap.local.as_ref().is_some_and(|l| !l.is_master() && l.priority > 0);
        // Nothing to ask for once a server answers as master: a promotion
        // happened (the Sentinels name it at once).
        let promoted = snap.servers.iter().any(|s| s.is_master());
        let majority_down = answers.iter().filter(|a| a.master_down).count() * 2 > answers.len();
        let Some(ask) = answers.iter().find(|a| a.master_down && !a.failover) else {
            return;
        };
        if !replica || promoted || (running && !stuck) || !majority_down {
            return;
        }
        let action = Action::RequestFailover(ask.sentinel.clone());
        match self.own.executor().execute(&action, None).await {
            Ok(()) => warn!(addr = %self.own.me, sentinel = %ask.sentinel, master = %ask.monitored,
                "the master died during the pause; failover requested"),
            Err(e) => debug!(sentinel = %ask.sentinel, error = %e, "failover after the pause not accepted yet"),
        }
    }

    /// Sets the own server's priority; whether it was set.
    async fn set_priority(&self, want: u32, was: Option<u32>, what: &str) -> bool {
        match self.own.executor().execute(&Action::SetPriority(want), None).await {
            Ok(()) => {
                self.priority_set.set(want);
                self.priority_set_at.set(Instant::now());
                info!(addr = %self.own.me, priority = want, was = ?was, "{what}");
                true
            }
            Err(e) => {
                warn!(addr = %self.own.me, error = %e, "could not set replica-priority; retrying");
                false
            }
        }
    }

    /// The role guard's look ([`crate::policy::guard`]).
    async fn guard(&self, snap: &Snapshot, mem: &mut GuardMemory) {
        let Some(decided) = guard(snap, &self.own.me, mem, Instant::now(), STRANDED_SETTLE) else {
            return;
        };
        if let (GuardAction::Demote { to }, Some(p)) = (&decided, &snap.pause) {
            return warn!(addr = %self.own.me, master = %to, by = %p.by, until_ms = p.until_ms,
                "this server still acts as master although the Sentinels name another; the group is paused, so it is not demoted");
        }
        let action = match &decided {
            GuardAction::Repoint { to, .. } => Action::Repoint {
                server: self.own.local.clone(),
                to: to.clone(),
            },
            GuardAction::Demote { to } => Action::Demote {
                server: self.own.local.clone(),
                to: to.clone(),
            },
        };
        let zk = self.keeper.zk();
        let observed = Observed::new(&zk, snap.session);
        match (self.own.executor().execute(&action, Some(observed)).await, &decided) {
            (Ok(()), GuardAction::Repoint { from, to }) => {
                mem.stranded_since = None;
                metrics().guard_actions.with_label_values(&["repoint"]).inc();
                warn!(addr = %self.own.me, old = %from, master = %to, "replica followed a server that is no longer a master; re-pointed it");
            }
            (Ok(()), GuardAction::Demote { to }) => {
                metrics().guard_actions.with_label_values(&["demote"]).inc();
                warn!(addr = %self.own.me, master = %to,
                    "this server still acted as master although the Sentinels named another; demoted it to stop split-brain writes")
            }
            (Err(e), _) => warn!(addr = %self.own.me, action = ?decided, error = %e, "guard action not done"),
        }
    }

    /// Carries out the switchover `intent` asks of this master, and writes
    /// how it ended into the intent for `rzkctl`.
    async fn switchover(&self, snap: &Snapshot, intent: Intent) {
        info!(addr = %self.own.me, by = %intent.by, to = ?intent.to.as_ref().map(ToString::to_string), "switchover asked for");
        let (outcome, paused) = match plan(snap, intent.to.as_ref()) {
            Err(why) => (Outcome::Unsafe(why), None),
            Ok(_) => {
                let budget = Duration::from_millis(intent.deadline_ms.saturating_sub(unix_ms()));
                self.beat.busy_until(Some(Instant::now() + budget));
                let p = Procedure::new(
                    intent.to.clone(),
                    intent.exclusive,
                    Instant::now(),
                    budget,
                    AFTER_PREFERENCE,
                );
                carry_out(self.own, self.observer, p, "switchover").await
            }
        };
        let result = result_text(&outcome, paused);
        self.beat.busy_until(None);
        info!(addr = %self.own.me, result = %result, "switchover ended");
        self.finished.borrow_mut().push(intent.id.clone());
        self.write_result(&intent, result).await;
    }

    /// Writes `result` into the intent, if it is still the one carried out.
    async fn write_result(&self, intent: &Intent, result: String) {
        let zk = self.keeper.zk();
        let Ok(Some((data, version))) = zk.read_switchover().await else {
            return;
        };
        if Intent::parse(&data).ok().is_none_or(|i| i.id != intent.id) {
            return;
        }
        let done = Intent {
            result: Some(result),
            ..intent.clone()
        };
        let action = Action::WriteIntent {
            data: done.to_bytes(),
            expected: Some(version),
        };
        let observed = Observed::new(&zk, crate::observe::session_mark(&zk));
        if let Err(e) = self.own.executor().execute(&action, Some(observed)).await {
            warn!(error = %e, "could not write the switchover's result");
        }
    }

    /// The crash: the server exited with `code` while the launcher was not
    /// stopping it. If it was master and [`crash_plan`] allows, the
    /// Sentinels are asked for a failover at once, instead of after their
    /// `down-after`, and the launcher waits (at most
    /// `SHUTDOWN_FAILOVER_TIMEOUT_S`) until they name the new master, so
    /// that the orchestrator's restart of the task does not race it.
    async fn after_crash(&self, code: i32) {
        let Some(snap) = self.observer.latest() else { return };
        if !snap.local.as_ref().is_some_and(|l| l.is_master()) {
            return;
        }
        if let Some(p) = &snap.pause {
            warn!(addr = %self.own.me, code, by = %p.by, until_ms = p.until_ms,
                "the server died as master; the group is paused, so no failover is asked for");
            metrics().crash_failovers.with_label_values(&["skipped"]).inc();
            return;
        }
        let started = Instant::now();
        let deadline = started + self.cfg.shutdown_failover_timeout;
        let after = self.observer.fresh().await;
        let first = match crash_plan(&snap, &after, metrics().fenced.get() == 1) {
            Ok(s) => s,
            Err(why) => {
                warn!(addr = %self.own.me, code, reason = %why,
                    "the server died as master; no failover asked for, the Sentinels decide after their down-after");
                metrics().crash_failovers.with_label_values(&["skipped"]).inc();
                // Whoever moves the master now (the Sentinels, already
                // failing it over or after their down-after), the change
                // is the crash's: the history says so.
                if let Some(intent) = self.announce(&snap, None, Cause::Crash, deadline).await {
                    self.write_result(&intent, format!("not asked for: {why}")).await;
                }
                return;
            }
        };
        warn!(addr = %self.own.me, code, sentinel = %first,
            "CRASH: the server died as master; asking the Sentinels for a failover at once");
        let p = Procedure::after_crash(first, started, self.cfg.shutdown_failover_timeout);
        // The intent is for the history, written while the failover is
        // asked for, not before.
        let (announced, (outcome, _)) = tokio::join!(
            self.announce(&snap, None, Cause::Crash, deadline),
            carry_out(self.own, self.observer, p, "crash failover")
        );
        if let Some(intent) = &announced {
            self.write_result(intent, result_text(&outcome, None)).await;
        }
        let ms = started.elapsed().as_millis() as u64;
        match &outcome {
            Outcome::Done(new) => info!(addr = %self.own.me, master = %new, ms, "crash failover done"),
            other => {
                warn!(addr = %self.own.me, outcome = other.label(), reason = ?other, ms, "crash failover did not complete")
            }
        }
        metrics().crash_failovers.with_label_values(&[outcome.label()]).inc();
    }

    /// The planned hand-over of a master whose task is asked to stop: the
    /// switchover procedure, bounded by `SHUTDOWN_FAILOVER_TIMEOUT_S`,
    /// preferring the replica that started last.
    async fn hand_over(&self) {
        let started = Instant::now();
        let deadline = started + self.cfg.shutdown_failover_timeout;
        // A switchover under way finishes first (within the budget).
        while self.busy.get() && Instant::now() < deadline {
            sleep(Duration::from_millis(50)).await;
        }
        self.busy.set(true);
        let snap = self.observer.fresh().await;
        let master = snap.local.as_ref().is_some_and(|l| l.is_master());
        let (announced, outcome) = match snap.pause.as_ref().filter(|_| master) {
            // A paused group keeps its master: the hand-over refuses.
            Some(p) => (
                None,
                Outcome::Unsafe(format!(
                    "the group is paused (by {}, until {} ms: {}); resume it first for a hand-over",
                    p.by, p.until_ms, p.reason
                )),
            ),
            None => {
                // Without a preferred replica, an intent all the same, so
                // that the history says hand-over.
                let (preferred, announced) = match self.prefer(&snap, deadline).await {
                    Some((to, intent)) => (Some(to), Some(intent)),
                    None if master => (None, self.announce(&snap, None, Cause::HandOver, deadline).await),
                    None => (None, None),
                };
                let p = Procedure::new(
                    preferred,
                    false,
                    Instant::now(),
                    deadline.saturating_duration_since(Instant::now()),
                    AFTER_PREFERENCE,
                );
                let outcome = timeout_at(deadline, carry_out(self.own, self.observer, p, "hand-over"))
                    .await
                    .map_or_else(|_| Outcome::TimedOut("SHUTDOWN_FAILOVER_TIMEOUT_S".into()), |(o, _)| o);
                (announced, outcome)
            }
        };
        // Ended, not removed: the watcher that moves the record may read it
        // after this launcher is gone.
        if let Some(intent) = &announced {
            self.write_result(intent, result_text(&outcome, None)).await;
        }
        if matches!(outcome, Outcome::Done(_)) && self.marks.marking {
            self.marks
                .mark_followed(self.own.probe, &self.own.local, deadline.into_std())
                .await;
        }
        match &outcome {
            Outcome::Done(new) => info!(addr = %self.own.me, master = %new, ms = started.elapsed().as_millis() as u64,
                "hand-over done; stopping the old master"),
            Outcome::Skipped(why) => info!(addr = %self.own.me, reason = %why, "no hand-over; stopping the server"),
            Outcome::Unsafe(why) | Outcome::Aborted(why) => error!(addr = %self.own.me, reason = %why,
                "no safe hand-over; stopping the server WITHOUT a failover"),
            Outcome::TimedOut(why) => {
                warn!(addr = %self.own.me, budget_s = self.cfg.shutdown_failover_timeout.as_secs(), reason = %why,
                "hand-over did not finish within SHUTDOWN_FAILOVER_TIMEOUT_S; stopping the server anyway")
            }
        }
        // A master that stops waits for its replicas to catch up, 10 s by
        // default: the stop must end by the deadline all the same.
        if !matches!(outcome, Outcome::Done(_) | Outcome::Skipped(_)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = self.own.executor().execute(&Action::ShutdownTimeout(left), None).await {
                warn!(addr = %self.own.me, error = %e, "could not bound the server's shutdown-timeout");
            }
        }
        let m = metrics();
        m.handovers.with_label_values(&[outcome.label()]).inc();
        if !matches!(outcome, Outcome::Skipped(_)) {
            m.handover_seconds.observe(started.elapsed().as_secs_f64());
        }
    }

    /// When several replicas could take over, prefers the one that started
    /// last (in a rolling restart the others are old tasks about to be
    /// stopped): an intent naming it, which its launcher reads and answers
    /// by making it Sentinel's first choice. Best effort: without
    /// ZooKeeper, Sentinel picks.
    async fn prefer(&self, snap: &Snapshot, deadline: Instant) -> Option<(Endpoint, Intent)> {
        let local = snap.local.as_ref().filter(|l| l.role == Role::Master)?;
        let uptimes: Vec<(Endpoint, u64)> = local
            .replicas
            .iter()
            .filter(|l| l.online && !snap.nofailover.contains(&l.addr))
            .filter_map(|l| Some((l.addr.clone(), snap.server(&l.addr)?.uptime_s?)))
            .collect();
        let young = preferred_successor(&uptimes)?.clone();
        let intent = self
            .announce(snap, Some(young.clone()), Cause::HandOver, deadline)
            .await?;
        info!(addr = %self.own.me, replica = %young, "hand-over prefers the youngest replica; waiting for a Sentinel to see it");
        Some((young, intent))
    }

    /// Writes an intent addressed to this master, until `deadline`: the
    /// replica `to` preferred (or none), and the `cause` the history will
    /// give the change of master (the watcher that writes the record reads
    /// it). Best effort: `None` when a live intent is there, or on failure.
    async fn announce(&self, snap: &Snapshot, to: Option<Endpoint>, cause: Cause, deadline: Instant) -> Option<Intent> {
        let left = deadline.saturating_duration_since(Instant::now());
        let intent = Intent {
            id: uuid::Uuid::new_v4().to_string(),
            from: self.own.me.clone(),
            to,
            exclusive: false,
            deadline_ms: unix_ms() + left.as_millis() as u64,
            by: format!("{} of {}", cause.as_str(), self.own.me),
            result: None,
            cause,
        };
        let zk = self.keeper.zk();
        let expected = match zk.read_switchover().await {
            Ok(None) => None,
            // A finished or expired intent is replaced; a live one is not.
            Ok(Some((data, v))) if Intent::parse(&data).map_or(true, |i| !i.live(unix_ms())) => Some(v),
            _ => return None,
        };
        let action = Action::WriteIntent {
            data: intent.to_bytes(),
            expected,
        };
        let observed = Observed::new(&zk, snap.session);
        match self.own.executor().execute(&action, Some(observed)).await {
            Ok(()) => Some(intent),
            Err(e) => {
                warn!(error = %e, cause = cause.as_str(), "could not write the intent; Sentinel picks, and the history says failover");
                None
            }
        }
    }
}

/// How a procedure ended, as an intent's `result` says it.
fn result_text(outcome: &Outcome, paused: Option<Duration>) -> String {
    match outcome {
        Outcome::Done(new) => format!(
            "done {new}; writes paused {} ms",
            paused.unwrap_or_default().as_millis()
        ),
        Outcome::Skipped(why) | Outcome::Unsafe(why) | Outcome::Aborted(why) | Outcome::TimedOut(why) => {
            format!("failed: {why}")
        }
    }
}

/// Why bootstrap ended without a ready server.
enum Early {
    /// Leave with this exit code.
    Exit(i32),
    /// A signal was forwarded to the starting child: supervise it to its end.
    Supervise(Box<Child>),
    /// `NOFAILOVER=true` and no master to follow: release the lock and
    /// look again later.
    Yield,
}

/// Everything done under the lock: decide, start the server, wait until it
/// answers in its role, publish the record if it is the master. Returns the
/// child and the master it replicates from (`None`: it is the master).
async fn bootstrap(
    cfg: &RedisConfig,
    id: &Identity,
    zk: &Zk,
    lock: &LockClient<'_>,
    probe: &Probe,
    signals: &mut Signals,
) -> Result<(Child, Option<Endpoint>), Early> {
    let me = &id.announce;
    let (decision, record) = decide_under_lock(cfg, zk, lock, probe, me, signals)
        .await
        .map_err(Early::Exit)?;
    let replica_of = match &decision {
        Decision::Replicate { master, .. } => Some(master.clone()),
        Decision::Yield => return Err(Early::Yield),
        _ => None,
    };
    if let Some(master) = &replica_of {
        engines_compatible(cfg, probe, master).await.map_err(Early::Exit)?;
    }
    let mut child = start_server(cfg, id, replica_of.as_ref()).await.map_err(|e| {
        error!(error = %e, "could not start redis-server");
        Early::Exit(1)
    })?;
    let intended = |r: &Role| match r {
        Role::Master => replica_of.is_none(),
        Role::Replica { master, .. } => replica_of.as_ref() == Some(master),
        Role::Sentinel => false,
    };
    match task::wait_ready(probe, &id.local(), intended, &mut child, signals).await {
        Ready::Yes => {}
        Ready::ChildExited(code) => return Err(Early::Exit(code)),
        Ready::Signalled => return Err(Early::Supervise(Box::new(child))),
    }
    if let Decision::BecomeMaster { takeover } = decision {
        let (expected, old) = match &record {
            Record::Missing => (None, None),
            Record::Unusable { version } => (Some(*version), None),
            Record::Valid { version, master } => (Some(*version), Some(master.clone())),
        };
        let change = Change {
            at_ms: unix_ms(),
            old,
            new: me.clone(),
            epoch: None,
            cause: if takeover { Cause::Takeover } else { Cause::Bootstrap },
        };
        if let Err(e) = zk.write_master(Some(lock), me, expected, change).await {
            // The record changed under us although we hold the lock: our view
            // is stale. A new master with no data loses nothing by stopping;
            // Marathon restarts the task and it decides again.
            error!(error = %e, addr = %me, "could not publish this master; stopping the server");
            child.signal(libc::SIGTERM);
            child.wait().await;
            return Err(Early::Exit(1));
        }
    }
    Ok((child, replica_of))
}

/// Refuses, before the server starts and touches any data, to run it as
/// a replica of `master` when its engine cannot load that master's data
/// (a Redis replica of a Valkey master, [`replication_refused`]). An
/// engine that cannot be told (a master that does not answer now, a
/// program whose `--version` names neither) is let through, with a warning.
async fn engines_compatible(cfg: &RedisConfig, probe: &Probe, master: &Endpoint) -> Result<(), i32> {
    let own = supervise::program_engine(&cfg.server_bin).await;
    let theirs = server_state(probe, master, master).await.and_then(|s| s.engine);
    match (&own, &theirs) {
        (Ok(own), Some(theirs)) => match replication_refused(theirs, own) {
            Some(why) => {
                error!(master = %master, master_engine = %theirs, engine = %own, server_bin = %cfg.server_bin.display(),
                    reason = %why, "REFUSED: not starting as a replica; this server's data is untouched");
                Err(1)
            }
            None => {
                info!(master = %master, master_engine = %theirs, engine = %own, "engines can replicate");
                Ok(())
            }
        },
        (own, theirs) => {
            warn!(master = %master, master_engine = ?theirs.as_ref().map(ToString::to_string),
                engine = ?own.as_ref().map(ToString::to_string), "engine of this server or of its master unknown; not checked");
            Ok(())
        }
    }
}

/// Observes and decides until the decision is final, waiting out the
/// takeover grace and repairing a stale record. Returns the decision with
/// the record it was based on (for the CAS), or an exit code.
async fn decide_under_lock(
    cfg: &RedisConfig,
    zk: &Zk,
    lock: &LockClient<'_>,
    probe: &Probe,
    me: &Endpoint,
    signals: &mut Signals,
) -> Result<(Decision, Record), i32> {
    let mut lost_since: Option<Instant> = None;
    let mut last_log: Option<Instant> = None;
    // The replica this launcher promoted in a takeover.
    let mut promoted: Option<Endpoint> = None;
    let executor = Executor::new(probe, &cfg.common.master_name);
    let scope = Scope {
        nodes: true,
        ..Scope::default()
    };
    loop {
        let grace_elapsed = lost_since.map_or(cfg.takeover_grace.is_zero(), |t| t.elapsed() >= cfg.takeover_grace);
        let snap = match observe(zk, probe, &cfg.common.master_name, &scope).await {
            Ok(s) => s,
            Err(e) if zk.client().state().is_terminated() => {
                error!(error = %e, "ZooKeeper session lost during bootstrap");
                return Err(1);
            }
            Err(e) => {
                warn!(error = %e, "observation failed; retrying");
                pause(signals, RECHECK).await?;
                continue;
            }
        };
        // A pause holds every takeover off: the grace never ends during it.
        let obs = Observation {
            nofailover: cfg.nofailover,
            promoted: promoted.clone().filter(|r| snap.is_live_master(r)),
            ..Observation::from_snapshot(&snap, me, grace_elapsed && snap.pause.is_none())
        };
        let record = snap.record.clone();
        let observed = Observed {
            lock: Some(lock),
            ..Observed::new(zk, snap.session)
        };
        match decide(&obs) {
            d @ Decision::Yield => return Ok((d, record)),
            Decision::Wait => {
                let since = *lost_since.get_or_insert_with(Instant::now);
                if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    last_log = Some(Instant::now());
                    let left = cfg.takeover_grace.saturating_sub(since.elapsed());
                    if let Some(p) = &snap.pause {
                        warn!(record = ?obs.record, by = %p.by, reason = %p.reason, until_ms = p.until_ms,
                            "no live master found; the group is paused, so no takeover until it is resumed");
                    } else {
                        warn!(record = ?obs.record, path = %zk.master_path(), left_s = left.as_secs(),
                            "no live master found; waiting for a failover before taking over");
                    }
                }
                pause(signals, RECHECK).await?;
            }
            Decision::Replicate {
                master,
                fix_record: true,
            } => {
                info!(master = %master, path = %zk.master_path(), "record is stale; correcting it");
                let Some(write) = record_write(&record, &master) else {
                    continue;
                };
                // A replica this launcher promoted is its takeover; else an
                // intent may tell why the master moved.
                let otherwise = if promoted.as_ref() == Some(&master) {
                    Cause::Takeover
                } else {
                    Cause::Repair
                };
                let write = RecordWrite {
                    cause: cause(snap.intent.as_ref(), write.old.as_ref(), unix_ms(), otherwise),
                    epoch: snap.epoch_of(&master),
                    ..write
                };
                match executor.execute(&Action::WriteRecord(write), Some(observed)).await {
                    Ok(()) => {
                        return Ok((
                            Decision::Replicate {
                                master,
                                fix_record: false,
                            },
                            record,
                        ));
                    }
                    Err(ActError::Zk(ZkErr::BadVersion | ZkErr::NodeExists)) => continue,
                    Err(e) => {
                        error!(error = %e, "could not correct the record");
                        return Err(1);
                    }
                }
            }
            Decision::Replicate { master, fix_record } => {
                info!(master = %master, addr = %me, role = "replica", "joining the live master");
                return Ok((Decision::Replicate { master, fix_record }, record));
            }
            Decision::Promote { replica } => {
                warn!(addr = %me, replica = %replica, record = ?obs.record, grace_s = cfg.takeover_grace.as_secs(),
                    "TAKEOVER: the group lost its master and no Sentinel replaced it; promoting the most up-to-date live replica");
                let action = Action::Promote {
                    replica: replica.clone(),
                };
                if let Err(e) = executor.execute(&action, Some(observed)).await {
                    warn!(replica = %replica, error = %e, "promotion failed; deciding again");
                    pause(signals, RECHECK).await?;
                    continue;
                }
                metrics().takeovers.inc();
                promoted = Some(replica.clone());
                // The record is then corrected by the Replicate branch (CAS).
            }
            d @ Decision::BecomeMaster { takeover } => {
                if takeover {
                    metrics().takeovers.inc();
                    warn!(addr = %me, record = ?obs.record, grace_s = cfg.takeover_grace.as_secs(),
                        "TAKEOVER: the group lost its master and no Sentinel replaced it; becoming master with this node's data. Writes the old master had may be lost");
                } else {
                    info!(addr = %me, role = "master", "no group yet; bootstrapping as master");
                }
                return Ok((d, record));
            }
        }
    }
}

/// Writes `redis.conf` and starts `redis-server` with it, followed by the
/// pass-through arguments.
async fn start_server(cfg: &RedisConfig, id: &Identity, replica_of: Option<&Endpoint>) -> std::io::Result<Child> {
    let dir = std::fs::canonicalize(cfg.common.data_dir())?;
    if let Some(master) = replica_of
        && cfg.persistence == Persistence::Aof
    {
        let probe = Probe::of(&cfg.common);
        diverged::keep_before_sync(&probe, &dir, master).await;
    }
    let conf_path = dir.join("redis.conf");
    // A new replica holds nothing until its first full sync is done: it
    // starts unpromotable, and the role guard restores the priority then.
    let priority = if replica_of.is_some() { 0 } else { cfg.replica_priority };
    let mut conf = redis_conf(
        id,
        &dir,
        cfg.common.password.as_ref(),
        replica_of,
        priority,
        cfg.persistence,
        datadir::data_size(&dir),
    );
    conf += &task::tls_conf(&cfg.common, &dir, id.port)?;
    write_private(&conf_path, &conf)?;
    let mut args = vec![conf_path.to_string_lossy().into_owned()];
    args.extend(cfg.extra_args.iter().cloned());
    let child = supervise::spawn(&cfg.server_bin, &args, &dir).await?;
    info!(pid = child.pid(), addr = %id.announce, role = if replica_of.is_some() { "replica" } else { "master" }, "redis-server started");
    Ok(child)
}
