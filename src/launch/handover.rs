//! The planned hand-over: when the master's task is asked to stop (a
//! Marathon restart, scale-down or upgrade), give the role to a replica
//! before stopping, so no acknowledged write is lost.
//!
//! Order matters. First, with writes still flowing, it waits for a replica
//! that may be promoted: one that finished its full sync and whose restored
//! priority the Sentinels have seen (see [`crate::promotion`]). In a rolling
//! restart that moved on before the replacements synced, handing over to an
//! unsynced replica would leave the group an empty master; if none finishes
//! in time the server stops without a failover, and Sentinel, which can't
//! promote a replica with priority 0, can't make that mistake either. Then
//! writes are paused, so the replicas can catch up to a fixed offset; only then is a Sentinel asked to fail over, and the server
//! is stopped once the Sentinels name another master. The pause outlasts the
//! demotion, so a write can never be acknowledged by the old master after the
//! promotion. Everything is bounded by `SHUTDOWN_FAILOVER_TIMEOUT_S`: the
//! server always stops by then, hand-over or not.

use std::time::Duration;

use tokio::time::{Instant, sleep, timeout_at};
use tracing::{error, info, warn};

use crate::act::{Executor, LocalAction};
use crate::launch::OwnServer;
use crate::model::Endpoint;
use crate::model::Role;
use crate::model::SentinelReplica;
use crate::policy::promotion::{HandOverStep, ReplicaLine, handover_step, preferred_successor};
use crate::probe::ProbeError;
use crate::zk::Zk;

/// How often the replicas are looked at while waiting for one to finish
/// its sync (writes still flow meanwhile).
const SYNC_POLL: Duration = Duration::from_millis(200);
/// How often offsets are compared while writes are paused.
const CATCH_UP_POLL: Duration = Duration::from_millis(20);
/// The most of the budget kept for the steps after a synced replica was
/// found: pause, catch up, failover, the Sentinels naming the new master.
const RESERVE: Duration = Duration::from_secs(2);
/// The least of the budget left after waiting for a Sentinel to see the
/// preferred replica: pause, catch-up, failover and promotion took up to
/// 3.6 s here, so the preference never costs the hand-over itself.
const AFTER_PREFERENCE: Duration = Duration::from_secs(8);

/// What the hand-over needs to know.
pub struct HandOver<'a> {
    /// The server it looks after.
    pub own: OwnServer<'a>,
    /// `SHUTDOWN_FAILOVER_TIMEOUT_S`.
    pub budget: Duration,
}

/// Why no hand-over happened.
enum NoHandOver {
    /// Nothing to hand over (a replica, or no Sentinels): routine.
    Skip(String),
    /// A hand-over was needed but could not be done safely; the operator
    /// must hear about it.
    Unsafe(String),
}

impl From<String> for NoHandOver {
    fn from(e: String) -> Self {
        NoHandOver::Unsafe(e)
    }
}

impl From<ProbeError> for NoHandOver {
    fn from(e: ProbeError) -> Self {
        NoHandOver::Unsafe(e.to_string())
    }
}

impl HandOver<'_> {
    /// Runs the hand-over if this server is a master and Sentinels are
    /// registered; returns at the latest when the budget is spent.
    pub async fn run(&self, zk: &Zk) {
        let started = Instant::now();
        let deadline = started + self.budget;
        let mut preferred = None;
        let result = timeout_at(deadline, self.steps(zk, deadline, &mut preferred)).await;
        // Whatever happened, the preferred replica gets its priority back.
        if let Some((r, priority)) = preferred {
            let executor = Executor::new(self.own.probe, self.own.name);
            if let Err(e) = executor.local(&r, &LocalAction::SetPriority { priority }).await {
                warn!(replica = %r, priority, error = %e, "could not restore the preferred replica's priority");
            }
        }
        let outcome = match result {
            Ok(Ok(new)) => {
                info!(addr = %self.own.me, master = %new, ms = started.elapsed().as_millis() as u64,
                "hand-over done; stopping the old master");
                "done"
            }
            Ok(Err(NoHandOver::Skip(why))) => {
                info!(addr = %self.own.me, reason = why, "no hand-over; stopping the server");
                "skipped"
            }
            Ok(Err(NoHandOver::Unsafe(why))) => {
                error!(addr = %self.own.me, reason = why,
                "no safe hand-over; stopping the server WITHOUT a failover");
                "unsafe"
            }
            Err(_) => {
                warn!(addr = %self.own.me, budget_s = self.budget.as_secs(),
                "hand-over did not finish within SHUTDOWN_FAILOVER_TIMEOUT_S; stopping the server anyway");
                "timeout"
            }
        };
        let m = crate::metrics::metrics();
        m.handovers.with_label_values(&[outcome]).inc();
        if outcome != "skipped" {
            m.handover_seconds.observe(started.elapsed().as_secs_f64());
        }
    }

    async fn steps(
        &self,
        zk: &Zk,
        deadline: Instant,
        preferred: &mut Option<(Endpoint, u32)>,
    ) -> Result<Endpoint, NoHandOver> {
        if !matches!(self.own.probe.role(&self.own.local).await, Ok(Role::Master)) {
            return Err(NoHandOver::Skip("not a master".into()));
        }
        let sentinels: Vec<Endpoint> = zk
            .registered(&zk.sentinels_dir())
            .await
            .map_err(|e| format!("cannot list sentinels: {e}"))?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        if sentinels.is_empty() {
            return Err(NoHandOver::Skip("no sentinel registered".into()));
        }
        // 1. With writes still flowing, wait for a replica the Sentinels may
        //    promote: one that finished its sync, whose restored priority
        //    the Sentinels have seen. Handing over to any other would give
        //    the group an empty master. Each Sentinel caches a replica's
        //    priority from its own INFO poll (every 10 s, at its own phase),
        //    so the first Sentinel that has seen the restored priority is
        //    the one asked to fail over.
        let left = deadline.saturating_duration_since(Instant::now());
        let ready_by = deadline - RESERVE.min(left / 2);
        let mut last_log: Option<Instant> = None;
        let sentinel = loop {
            let (lines, offset) = self.replica_lines().await?;
            // Nothing connected and nothing registered that could connect:
            // a lone master, or a whole group being stopped. There is no
            // one to wait for.
            if lines.is_empty() && !self.other_nodes_registered(zk).await {
                return Err(NoHandOver::Skip("no replica to hand over to".into()));
            }
            let mut ready = None;
            let mut why = vec![];
            for s in &sentinels {
                let seen = self.sentinel_view(s).await;
                match handover_step(&lines, &seen, offset, true) {
                    HandOverStep::WaitForSyncedReplica(w) => why = w,
                    _ => {
                        ready = Some(s.clone());
                        break;
                    }
                }
            }
            match ready {
                Some(s) => break s,
                None => {
                    let why: Vec<String> = why.iter().map(|(r, w)| format!("{r}: {}", w.as_str())).collect();
                    let why = if why.is_empty() {
                        "no replica".to_string()
                    } else {
                        why.join("; ")
                    };
                    if Instant::now() >= ready_by {
                        return Err(NoHandOver::Unsafe(format!(
                            "no replica finished its sync within SHUTDOWN_FAILOVER_TIMEOUT_S ({why}); \
                             a failover now would promote a replica without the data"
                        )));
                    }
                    if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
                        last_log = Some(Instant::now());
                        info!(addr = %self.own.me, reasons = %why, "hand-over waits for a replica to finish its sync");
                    }
                    sleep(SYNC_POLL).await;
                }
            }
        };
        // 1b. Several replicas may take over: prefer the youngest (see
        //     `preferred_successor`), by making it Sentinel's first choice
        //     (the lowest non-zero priority wins) and waiting, writes still
        //     flowing, for a Sentinel to have seen that. Left at 1 by a
        //     killed hand-over, it is only ever preferred, never excluded.
        let sentinel = self
            .prefer_youngest(
                &sentinels,
                sentinel,
                deadline.checked_sub(AFTER_PREFERENCE).unwrap_or(deadline),
                preferred,
            )
            .await;
        // 2. Pause writes until the deadline (plus a margin: the server is
        //    stopped before the pause could lapse).
        let pause_ms = (deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5)).as_millis();
        let executor = Executor::new(self.own.probe, self.own.name);
        executor
            .local(&self.own.local, &LocalAction::PauseWrites { ms: pause_ms })
            .await
            .map_err(|e| e.to_string())?;
        info!(addr = %self.own.me, pause_ms = pause_ms as u64, "writes paused for the hand-over");
        // 3. Let the candidates reach the master's offset. One that lags
        //    past `patience` is left behind if another is complete
        //    (Sentinel prefers the replica with the higher offset).
        let patience = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
        let caught_up = loop {
            let (lines, offset) = self.replica_lines().await?;
            let seen = self.sentinel_view(&sentinel).await;
            if let HandOverStep::Failover(r) = handover_step(&lines, &seen, offset, Instant::now() >= patience) {
                break r;
            }
            sleep(CATCH_UP_POLL).await;
        };
        info!(addr = %self.own.me, replica = %caught_up, "a promotable replica has every write");
        // 4. Ask that Sentinel (then the others) to fail over. A refusal
        //    (another failover still running, a view a moment old) is
        //    retried until the deadline.
        let order: Vec<&Endpoint> = std::iter::once(&sentinel)
            .chain(sentinels.iter().filter(|s| **s != sentinel))
            .collect();
        let asked = loop {
            let mut asked = None;
            for s in &order {
                match executor.request_failover(s).await {
                    Ok(_) => {
                        asked = Some((*s).clone());
                        break;
                    }
                    Err(e) => warn!(sentinel = %s, error = %e, "SENTINEL FAILOVER refused"),
                }
            }
            match asked {
                Some(s) => break s,
                None if Instant::now() >= deadline => {
                    return Err("no sentinel accepted SENTINEL FAILOVER".to_string().into());
                }
                None => sleep(SYNC_POLL).await,
            }
        };
        info!(sentinel = %asked, "failover requested");
        // 5. Wait until the Sentinels name another live master.
        loop {
            for s in &sentinels {
                if let Ok(Some(m)) = self.own.probe.sentinel_master(s, self.own.name).await
                    && m != self.own.me
                    && self.own.probe.is_master(&m).await
                {
                    return Ok(m);
                }
            }
            if Instant::now() >= deadline {
                return Err("the sentinels did not name another master in time".to_string().into());
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Step 1b; returns the Sentinel to ask (one that has seen the
    /// preference, else `sentinel`) and records the changed priority.
    async fn prefer_youngest(
        &self,
        sentinels: &[Endpoint],
        sentinel: Endpoint,
        prefer_by: Instant,
        preferred: &mut Option<(Endpoint, u32)>,
    ) -> Endpoint {
        if Instant::now() >= prefer_by {
            return sentinel;
        }
        let Ok((lines, _)) = self.replica_lines().await else {
            return sentinel;
        };
        // Every replica that finished its sync, known to the Sentinels or
        // not yet: the youngest is typically the replacement a rolling
        // restart just started, whose restored priority no Sentinel has
        // polled yet.
        let mut uptimes = vec![];
        for l in lines.iter().filter(|l| l.online) {
            if let Ok(info) = self.own.probe.info(&l.addr, "server").await
                && let Some(up) = info
                    .iter()
                    .find(|(k, _)| k == "uptime_in_seconds")
                    .and_then(|(_, v)| v.parse::<u64>().ok())
            {
                uptimes.push((l.addr.clone(), up));
            }
        }
        let Some(young) = preferred_successor(&uptimes).cloned() else {
            return sentinel;
        };
        // Its own priority: 0 means never promote it (the operator's
        // choice, or a sync not yet done), and is respected.
        let old = match self.own.probe.cmd(&young, &["CONFIG", "GET", "replica-priority"]).await {
            Ok(v) => crate::probe::fields(&v)
                .first()
                .and_then(|(_, p)| p.parse::<u32>().ok())
                .unwrap_or(0),
            Err(_) => 0,
        };
        if old <= 1 {
            return sentinel;
        }
        let executor = Executor::new(self.own.probe, self.own.name);
        if executor
            .local(&young, &LocalAction::SetPriority { priority: 1 })
            .await
            .is_err()
        {
            return sentinel;
        }
        *preferred = Some((young.clone(), old));
        info!(addr = %self.own.me, replica = %young, "hand-over prefers the youngest replica; waiting for a Sentinel to see it");
        while Instant::now() < prefer_by {
            for s in sentinels {
                let seen = self.sentinel_view(s).await;
                if seen.iter().any(|r| r.addr == young && r.priority == 1 && r.healthy) {
                    return s.clone();
                }
            }
            sleep(SYNC_POLL).await;
        }
        info!(addr = %self.own.me, replica = %young, "no Sentinel saw the preference in time; Sentinel picks");
        sentinel
    }

    /// Whether a redis node other than this one is registered (a replica
    /// that may connect in a moment). A failed read counts as yes: waiting
    /// is the safe side.
    async fn other_nodes_registered(&self, zk: &Zk) -> bool {
        match zk.registered(&zk.nodes_dir()).await {
            Ok(nodes) => nodes.iter().any(|(_, e)| *e != self.own.me),
            Err(_) => true,
        }
    }

    /// The master's `slaveN` lines and its own offset.
    async fn replica_lines(&self) -> Result<(Vec<ReplicaLine>, i64), String> {
        let info = self.own.probe.info(&self.own.local, "replication").await?;
        let offset: i64 = info
            .iter()
            .find(|(k, _)| k == "master_repl_offset")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or("INFO replication without master_repl_offset")?;
        let lines = info
            .iter()
            .filter(|(k, _)| k.starts_with("slave"))
            .filter_map(|(_, v)| ReplicaLine::parse(v))
            .collect();
        Ok((lines, offset))
    }

    /// The replicas as `sentinel` sees them; empty when it does not answer
    /// (then nothing counts as promotable through it).
    async fn sentinel_view(&self, sentinel: &Endpoint) -> Vec<SentinelReplica> {
        self.own
            .probe
            .sentinel_replicas(sentinel, self.own.name)
            .await
            .unwrap_or_else(|e| {
                warn!(sentinel = %sentinel, error = %e, "cannot ask for the replicas");
                vec![]
            })
    }
}
