//! `rzk-sentinel`: wait for a master, run `redis-sentinel` on it, register
//! it, supervise it, and re-point it after a takeover.
//!
//! Follows the contract (`docs/contract.md`), "rzk-sentinel". The waiting uses a ZooKeeper watch on the
//! record, not a poll; the supervision is the same as `rzk-redis`'s.

use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until};
use tracing::{error, info, warn};

use crate::act::{Action, Executor, Observed};
use crate::config::SentinelConfig;
use crate::launch::{self as task, Ready, interrupted, view};
use crate::model::{Endpoint, Identity, Role};
use crate::observe::{Observer, observe};
use crate::policy::follow::{Follow, also_behind, follow};
use crate::policy::reconcile::confirmed_master;
use crate::probe::Probe;
use crate::render::{self, existing_myid, sentinel_args, sentinel_conf, write_private};
use crate::session::Keeper;
use crate::snapshot::Scope;
use crate::supervise::{self, Signals};
use crate::zk::Zk;

/// While the record names a master that does not answer, re-check this often
/// (a master being restarted); a missing record is waited for by watch alone.
const DEAD_RECORD_RECHECK: Duration = Duration::from_secs(2);
/// A record and this Sentinel must disagree this long before the Sentinel is
/// re-pointed: after a normal failover the watcher writes the record at once,
/// and the other Sentinels learn the new master by gossip within seconds.
const FOLLOW_SETTLE: Duration = Duration::from_secs(3);
/// How often this Sentinel reads its replicas' `INFO` (Sentinel's own
/// default is 10 s): a replica whose launcher restored or changed its
/// priority is known promotable, or preferred, within about a second,
/// instead of up to ten (`SENTINEL DEBUG info-period`).
const INFO_PERIOD: Duration = Duration::from_millis(1000);
/// Below this `SENTINEL_DOWN_AFTER_MS`, Sentinel now and then declares a
/// master it has just promoted down (its fresh link has not had a PONG yet)
/// and fails over a second time. Seen in our tests at 1000 ms; upstream
/// reports it at 500 ms and its cure at 2000 ms (redis/redis#8607).
const SAFE_DOWN_AFTER_MS: u64 = 2000;

/// Runs `rzk-sentinel` to completion and returns the process exit code.
pub async fn run(cfg: SentinelConfig, id: Identity) -> i32 {
    run_to_exit(cfg, id).await.unwrap_or_else(|code| code)
}

/// [`run`]; `Err` is the exit code of a start that failed.
async fn run_to_exit(cfg: SentinelConfig, id: Identity) -> Result<i32, i32> {
    let (admin, mut signals, zk) =
        task::start(&cfg.common, "rzk-sentinel", Some(id.bind), view::SENTINEL_PATHS).await?;
    if cfg.monitor.down_after_ms < SAFE_DOWN_AFTER_MS {
        warn!(
            down_after_ms = cfg.monitor.down_after_ms,
            "SENTINEL_DOWN_AFTER_MS is below {SAFE_DOWN_AFTER_MS}: Sentinel may fail over a master it has just promoted, a needless second failover; use {SAFE_DOWN_AFTER_MS} or more"
        );
    }
    let probe = Probe::of(&cfg.common);
    let master = wait_for_master(&cfg, &zk, &probe, &mut signals).await?;
    let dir = std::fs::canonicalize(cfg.common.data_dir()).map_err(|e| {
        error!(error = %e, "DATA_DIR is not usable");
        1
    })?;
    let conf_path = dir.join("sentinel.conf");
    let mut conf = sentinel_conf(
        &id,
        &dir,
        &cfg.common.master_name,
        &master,
        &cfg.monitor,
        cfg.common.password.as_ref(),
        existing_myid(&conf_path).as_deref(),
    );
    conf += &task::tls_conf(&cfg.common, &dir, id.port).map_err(|e| {
        error!(error = %e, "cannot copy the TLS files into DATA_DIR");
        1
    })?;
    let (restart, mut restarts) = tokio::sync::watch::channel(0u32);
    let child_tls = task::ChildTls::Restart(restart, dir.clone());
    tokio::spawn(task::follow_tls(cfg.common.clone(), child_tls.clone()));
    if let Err(e) = write_private(&conf_path, &conf) {
        error!(error = %e, path = %conf_path.display(), "cannot write sentinel.conf; DATA_DIR must be writable because Sentinel rewrites it");
        return Err(1);
    }
    let mut child = supervise::spawn(&cfg.sentinel_bin, &sentinel_args(&conf_path), &dir)
        .await
        .map_err(|e| {
            error!(error = %e, "could not start redis-sentinel");
            1
        })?;
    info!(pid = child.pid(), sentinel = %id.announce, master = %master, "redis-sentinel started");
    match task::wait_ready(&probe, &id.local(), |r| *r == Role::Sentinel, &mut child, &mut signals).await {
        Ready::Yes => {}
        Ready::ChildExited(code) => return Ok(code),
        Ready::Signalled => return Ok(supervise::supervise(&mut child, &mut signals).await),
    }
    let own = id.local();
    let executor = Executor::with_local(&probe, &cfg.common.master_name, &own);
    let period = Action::SentinelInfoPeriod(INFO_PERIOD);
    if let Err(e) = executor.execute(&period, None).await {
        warn!(error = %e, "could not shorten this Sentinel's INFO period; replicas' priorities reach it within 10 s");
    }
    let keeper = task::keep_session(&cfg.common, zk, child_tls, "rzk-sentinel", Some(&id.announce));
    let path = format!("{}/{}", keeper.zk().sentinels_dir(), uuid::Uuid::new_v4());
    keeper.register(&path, &id.announce.to_record());
    let observer = Observer::new(
        probe.clone(),
        &cfg.common.master_name,
        Scope {
            local_sentinel: Some(own.clone()),
            ..Scope::default()
        },
    );
    let supervised = async {
        loop {
            tokio::select! {
                code = supervise::supervise(&mut child, &mut signals) => return code,
                Ok(()) = restarts.changed() => {
                    // Sentinel cannot load a new certificate, or switch
                    // between plain text and TLS, while it runs: it is
                    // restarted in place, with its config (and id), its
                    // port and TLS lines made to say what the task speaks.
                    info!(pid = child.pid(), "restarting redis-sentinel for its new TLS certificate or a switch of the group");
                    child.stop(Duration::from_secs(5)).await;
                    let rewritten = std::fs::read_to_string(&conf_path).and_then(|c| {
                        let lines = task::tls_conf(&cfg.common, &dir, id.port)?;
                        write_private(&conf_path, &render::with_tls_lines(&c, &lines))
                    });
                    if let Err(e) = rewritten {
                        error!(error = %e, path = %conf_path.display(), "cannot rewrite sentinel.conf for TLS");
                        return 1;
                    }
                    match supervise::spawn(&cfg.sentinel_bin, &sentinel_args(&conf_path), &dir).await {
                        Ok(c) => child = c,
                        Err(e) => {
                            error!(error = %e, "could not start redis-sentinel again");
                            return 1;
                        }
                    }
                    // Its short INFO period is not in its config: set it
                    // again once it answers.
                    let again = async {
                        while executor.execute(&period, None).await.is_err() {
                            sleep(Duration::from_millis(100)).await;
                        }
                    };
                    if tokio::time::timeout(Duration::from_secs(10), again).await.is_err() {
                        warn!("could not shorten the restarted Sentinel's INFO period");
                    }
                }
            }
        }
    };
    let code = tokio::select! {
        code = supervised => code,
        never = observer.run(keeper.subscribe(), |_| view::EVERY) => match never {},
        never = follow_takeovers(&cfg, &probe, &own, &observer, &keeper) => match never {},
        never = view::sentinel(admin, &observer, &own, &id.announce) => match never {},
    };
    keeper.shutdown().await;
    Ok(code)
}

/// Waits for a live master: the registered Sentinels' answer first, then the
/// record (confirmed by ROLE). Waits on a watch of `<root>/master`.
async fn wait_for_master(cfg: &SentinelConfig, zk: &Zk, probe: &Probe, signals: &mut Signals) -> Result<Endpoint, i32> {
    let deadline = Instant::now() + cfg.master_wait_timeout;
    let mut logged = false;
    loop {
        // The watch first, then the look: a change after the look fires it.
        let (_, watcher) = match zk.watch_master().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, path = %zk.master_path(), "cannot read the master record; retrying");
                task::pause(signals, Duration::from_secs(1)).await?;
                continue;
            }
        };
        let snap = match observe(zk, probe, &cfg.common.master_name, &Scope::default()).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot look at the group; retrying");
                task::pause(signals, Duration::from_secs(1)).await?;
                continue;
            }
        };
        if let Some(m) = confirmed_master(&snap) {
            info!(master = %m, "the registered sentinels name a live master");
            return Ok(m);
        }
        let record = &snap.record;
        if let Some(m) = record.master().filter(|m| snap.is_live_master(m)) {
            info!(master = %m, path = %zk.master_path(), "the record names a live master");
            return Ok(m.clone());
        }
        if !logged {
            logged = true;
            info!(path = %zk.master_path(), timeout_s = cfg.master_wait_timeout.as_secs(), "waiting for a live master");
        }
        let recheck = if record.master().is_some() {
            DEAD_RECORD_RECHECK
        } else {
            cfg.master_wait_timeout
        };
        tokio::select! {
            _ = watcher.changed() => {},
            _ = sleep(recheck) => {},
            _ = sleep_until(deadline) => {
                error!(path = %zk.master_path(), timeout_s = cfg.master_wait_timeout.as_secs(),
                    "no live master appeared in {} within MASTER_WAIT_TIMEOUT_S={}s; is rzk-redis running with the same ZK_HOSTS and ZK_ROOT?",
                    zk.master_path(), cfg.master_wait_timeout.as_secs());
                return Err(1);
            },
            sig = signals.recv() => return Err(interrupted(sig)),
        }
    }
}

/// Re-points this Sentinel (`own`: its local address) after a takeover
/// ([`crate::policy::follow`]), for ever: with each snapshot, decide and,
/// if the policy says so, re-point the Sentinel.
async fn follow_takeovers(
    cfg: &SentinelConfig,
    probe: &Probe,
    own: &Endpoint,
    observer: &Observer,
    keeper: &Keeper,
) -> std::convert::Infallible {
    let executor = Executor {
        monitor: Some((&cfg.monitor, cfg.common.password.as_ref())),
        ..Executor::new(probe, &cfg.common.master_name)
    };
    let mut mismatch_since: Option<Instant> = None;
    let mut rx = observer.subscribe();
    while rx.changed().await.is_ok() {
        let Some(snap) = rx.borrow_and_update().clone() else {
            continue;
        };
        let Follow::Repoint(to) = follow(&snap, own, &mut mismatch_since, Instant::now(), FOLLOW_SETTLE) else {
            continue;
        };
        // This Sentinel first, then the others still behind, at once.
        let others = also_behind(&snap, own, &to);
        let zk = keeper.zk();
        for s in std::iter::once(own).chain(&others) {
            let old = snap.answer_of(s).map(|a| a.master.clone());
            let action = Action::RepointSentinel {
                sentinel: s.clone(),
                to: to.clone(),
            };
            let observed = Observed::new(&zk, snap.session);
            match executor.execute(&action, Some(observed)).await {
                Ok(()) => warn!(sentinel = %s, old = ?old, master = %to, "re-pointed a sentinel after a takeover"),
                Err(e) => warn!(error = %e, sentinel = %s, master = %to, "re-pointing failed; retrying"),
            }
        }
    }
    std::future::pending().await
}
