//! `rzkctl`, the operator's command: the group's status from the same
//! snapshot the launchers decide on ([`crate::policy::status`]), and a
//! planned switchover ([`crate::policy::switchover`]).

use std::time::Duration;

use tokio::time::{Instant, sleep};
use tracing::{error, info, warn};

use crate::act::{Executor, LocalAction};
use crate::model::{Endpoint, Role};
use crate::policy::switchover::{Plan, plan};

use crate::config::CtlConfig;

pub mod args;
use crate::observe::{Scope, observe};
use crate::policy::status::{status as group_status, table};
use crate::probe::{PROBE_TIMEOUT, Probe};
use crate::zk::Zk;

/// Connects read-only and takes one look at the whole group, nodes
/// included; `None` (logged) when the group cannot be read.
async fn look(cfg: &CtlConfig) -> Option<(Zk, Probe, crate::observe::Snapshot)> {
    let zk = Zk::connect_read_only(&cfg.common.zk)
        .await
        .map_err(|e| error!(error = %e, "cannot read the group"))
        .ok()?;
    let probe = Probe::new(cfg.common.password.clone(), PROBE_TIMEOUT);
    let scope = Scope {
        nodes: true,
        ..Scope::default()
    };
    let snap = observe(&zk, &probe, &cfg.common.master_name, scope)
        .await
        .map_err(|e| error!(error = %e, "cannot read the group"))
        .ok()?;
    Some((zk, probe, snap))
}

/// `rzkctl status [--json]`: prints the table (or JSON) and returns the exit
/// code: 0 healthy, 1 degraded or unreadable.
pub async fn status(cfg: CtlConfig, json: bool) -> i32 {
    let Some((_zk, _probe, snap)) = look(&cfg).await else {
        return 1;
    };
    let s = group_status(&snap);
    if json {
        match serde_json::to_string_pretty(&s) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                error!(error = %e, "cannot encode the status");
                return 1;
            }
        }
    } else {
        print!("{}", table(&s));
    }
    if s.healthy { 0 } else { 1 }
}

/// How often the switchover looks while it waits.
const POLL: Duration = Duration::from_millis(50);

/// `rzkctl switchover [--to IP:PORT] [--timeout S]`: hands the master role
/// to a replica with no acknowledged write lost, as the SIGTERM hand-over
/// does, but nothing stops. Returns 0 once the record and every Sentinel
/// name the new master; 1 with the reason otherwise.
///
/// The steps: plan from one snapshot (a refusal changes nothing); with
/// `--to`, make the other replicas unpromotable (`replica-priority 0`) and
/// wait until a Sentinel has seen that (Sentinel picks from its own cached
/// view); pause writes on the master; wait until the target has every
/// write; ask that Sentinel to fail over; as soon as it names the new
/// master, make the old one its replica and lift the pause; wait for the
/// record and every Sentinel; restore the priorities, on every path.
pub async fn switchover(cfg: CtlConfig, to: Option<Endpoint>, timeout: Duration) -> i32 {
    let started = Instant::now();
    let deadline = started + timeout;
    let Some((zk, probe, snap)) = look(&cfg).await else {
        return 1;
    };
    let name = cfg.common.master_name.as_str();
    let p = match plan(&snap, to.as_ref()) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("rzkctl: switchover refused, nothing changed: {why}");
            return 1;
        }
    };
    let executor = Executor::new(&probe, name);
    let steps = Switchover {
        probe: &probe,
        executor: &executor,
        name,
        sentinels: snap.sentinels.clone(),
        plan: &p,
        deadline,
    };
    let result = steps.run(&zk).await;
    // Every path restores what it held back.
    for (r, priority) in &p.hold_back {
        if let Err(e) = executor
            .local(r, &LocalAction::SetPriority { priority: *priority })
            .await
        {
            warn!(replica = %r, error = %e, "could not restore replica-priority; set it by hand");
        }
    }
    match result {
        Ok((new, pause)) => {
            println!(
                "switched over from {} to {new} in {:.1} s (writes paused {} ms)",
                p.master,
                started.elapsed().as_secs_f32(),
                pause.as_millis()
            );
            0
        }
        Err(why) => {
            eprintln!("rzkctl: switchover failed: {why}");
            1
        }
    }
}

struct Switchover<'a> {
    probe: &'a Probe,
    executor: &'a Executor<'a>,
    name: &'a str,
    sentinels: Vec<Endpoint>,
    plan: &'a Plan,
    deadline: Instant,
}

impl Switchover<'_> {
    fn late(&self, what: &str) -> Result<(), String> {
        if Instant::now() >= self.deadline {
            Err(format!("timed out {what}"))
        } else {
            Ok(())
        }
    }

    /// Returns the new master and how long writes were paused.
    async fn run(&self, zk: &Zk) -> Result<(Endpoint, Duration), String> {
        let master = &self.plan.master;
        for (r, _) in &self.plan.hold_back {
            self.executor
                .local(r, &LocalAction::SetPriority { priority: 0 })
                .await
                .map_err(|e| format!("cannot hold {r} back: {e}"))?;
        }
        // A Sentinel whose view allows only the target (or, without --to,
        // any Sentinel): it picks from what its last INFO poll saw.
        let sentinel = loop {
            let mut found = None;
            for s in &self.sentinels {
                if self.sentinel_sees_plan(s).await {
                    found = Some(s.clone());
                    break;
                }
            }
            if let Some(s) = found {
                break s;
            }
            self.late("waiting for a Sentinel to see the held-back replicas (it polls every 10 s)")?;
            sleep(Duration::from_millis(200)).await;
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        let pause_ms = (left + Duration::from_secs(2)).as_millis();
        self.executor
            .local(master, &LocalAction::PauseWrites { ms: pause_ms })
            .await
            .map_err(|e| format!("cannot pause writes on {master}: {e}"))?;
        let paused = Instant::now();
        info!(master = %master, "writes paused");
        let result = self.fail_over(&sentinel).await;
        if let Err(why) = &result {
            // Before a failover was asked for, the master is still the
            // master: let it take writes again.
            if why.starts_with("before failover:") {
                let _ = self.executor.local(master, &LocalAction::Unpause).await;
            }
            return Err(why.clone());
        }
        let new = result?;
        // The old master follows the new one now, as Sentinel would do a
        // few seconds later; only then may it take requests again (its
        // writes now fail with READONLY instead of being lost).
        if let Err(e) = self
            .executor
            .local(master, &LocalAction::Follow { to: new.clone() })
            .await
        {
            warn!(old = %master, error = %e, "could not make the old master a replica; Sentinel will");
        } else {
            let _ = self.executor.local(master, &LocalAction::Unpause).await;
        }
        let pause = paused.elapsed();
        info!(new = %new, pause_ms = pause.as_millis() as u64, "new master promoted");
        // The record (the watcher) and every Sentinel.
        loop {
            let record = zk.read_master().await.ok();
            let mut agree = record.as_ref().and_then(|r| r.master()) == Some(&new);
            for s in &self.sentinels {
                agree &= matches!(self.probe.sentinel_master(s, self.name).await, Ok(Some(m)) if m == new);
            }
            if agree {
                return Ok((new, pause));
            }
            self.late("waiting for the record and every Sentinel to name the new master")?;
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether Sentinel `s` would pick as planned: with a target, the
    /// target healthy and promotable, every held-back replica at priority 0.
    async fn sentinel_sees_plan(&self, s: &Endpoint) -> bool {
        let Some(target) = &self.plan.target else { return true };
        let Ok(view) = self.probe.sentinel_replicas(s, self.name).await else {
            return false;
        };
        let target_ok = view.iter().any(|r| r.addr == *target && r.healthy && r.priority > 0);
        let others_held = self
            .plan
            .hold_back
            .iter()
            .all(|(h, _)| view.iter().all(|r| r.addr != *h || r.priority == 0));
        target_ok && others_held
    }

    /// With writes paused: wait for the target(s) to have every write, ask
    /// `sentinel` to fail over, wait for it to name a live new master.
    async fn fail_over(&self, sentinel: &Endpoint) -> Result<Endpoint, String> {
        let master = &self.plan.master;
        loop {
            if self.caught_up().await {
                break;
            }
            if Instant::now() >= self.deadline {
                return Err("before failover: the replica did not catch up in time".into());
            }
            sleep(POLL).await;
        }
        self.executor
            .request_failover(sentinel)
            .await
            .map_err(|e| format!("before failover: {sentinel} refused SENTINEL FAILOVER: {e}"))?;
        info!(sentinel = %sentinel, "failover requested");
        loop {
            if let Ok(Some(m)) = self.probe.sentinel_master(sentinel, self.name).await
                && m != *master
                && matches!(self.probe.role(&m).await, Ok(Role::Master))
            {
                if let Some(t) = &self.plan.target
                    && m != *t
                {
                    return Err(format!("Sentinel promoted {m}, not {t}"));
                }
                return Ok(m);
            }
            self.late("waiting for the Sentinel to promote the replica")?;
            sleep(POLL).await;
        }
    }

    /// Whether the target (any online replica without `--to`) has the
    /// master's offset.
    async fn caught_up(&self) -> bool {
        let Ok(info) = self.probe.info(&self.plan.master, "replication").await else {
            return false;
        };
        let Some(offset) = info
            .iter()
            .find(|(k, _)| k == "master_repl_offset")
            .and_then(|(_, v)| v.parse::<i64>().ok())
        else {
            return false;
        };
        info.iter()
            .filter(|(k, _)| k.starts_with("slave"))
            .filter_map(|(_, v)| crate::policy::promotion::ReplicaLine::parse(v))
            .any(|l| l.online && l.offset >= offset && self.plan.target.as_ref().is_none_or(|t| l.addr == *t))
    }
}
