//! `rzk-redis`: bootstrap a Redis task under the ZooKeeper lock, then
//! supervise it.
//!
//! The steps follow the contract (`docs/contract.md`), rzk-redis bootstrap: connect, lock, observe and
//! decide until there is a decision, start the server in that role, publish
//! the record if it is the master, release the lock only once the server
//! answers in its role, register, supervise.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, info, warn};
use zookeeper_client::{Error as ZkErr, LockClient};

use crate::act::{ActError, Action, Executor};
use crate::admin::listen_addrs;
use crate::config::RedisConfig;
use crate::launch::fence::Fence;
use crate::launch::guard::RoleGuard;
use crate::launch::handover::HandOver;
use crate::launch::monitor;
use crate::launch::{self as task, OwnServer, Ready, interrupted, pause};
use crate::metrics::metrics;
use crate::model::Record;
use crate::model::Role;
use crate::model::{Endpoint, Identity};
use crate::observe::{Scope, observe};
use crate::policy::bootstrap::{Decision, Observation, decide};
use crate::policy::reconcile::record_write;
use crate::probe::{PROBE_TIMEOUT, Probe};
use crate::render::{redis_conf, write_private};
use crate::session::Keeper;
use crate::supervise::{self, Child, Signals};
use crate::zk::Zk;

/// Pause between observations while waiting out the takeover grace.
const RECHECK: Duration = Duration::from_secs(1);

/// Runs `rzk-redis` to completion and returns the process exit code.
pub async fn run(cfg: RedisConfig, id: Identity) -> i32 {
    let admin = match monitor::start(
        cfg.common.admin_port,
        |p| listen_addrs(Some(id.bind), p),
        monitor::REDIS_PATHS,
    )
    .await
    {
        Ok(a) => a,
        Err(code) => return code,
    };
    let (mut signals, zk) = match task::start(&cfg.common).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let probe = Probe::new(cfg.common.password.clone(), PROBE_TIMEOUT);
    let me = id.announce.clone();
    info!(addr = %me, path = %zk.lock_dir(), "waiting for the bootstrap lock");
    let lock_data = me.to_record();
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
    let (mut child, replica_of) = match outcome {
        Ok(started) => started,
        Err(Early::Exit(code)) => return code,
        Err(Early::Supervise(mut child)) => return supervise::supervise(&mut child, &mut signals).await,
    };
    let role = if replica_of.is_some() { "replica" } else { "master" };
    info!(addr = %me, role, "server ready; lock released");

    let keeper = Keeper::spawn(zk);
    let node_path = format!("{}/{}", keeper.zk().nodes_dir(), uuid::Uuid::new_v4());
    keeper.register(&node_path, &me.to_record());
    let own = OwnServer {
        probe: &probe,
        local: id.local(),
        me: me.clone(),
        name: &cfg.common.master_name,
    };
    let view_own = own.clone();
    let view = async {
        match admin {
            Some(p) => monitor::redis(p, keeper.subscribe(), view_own, cfg.ready_max_lag).await,
            None => std::future::pending().await,
        }
    };
    let guard = RoleGuard {
        own: own.clone(),
        priority: cfg.replica_priority,
        synced: replica_of.is_none(),
    };
    let fence = Fence {
        own: own.clone(),
        after: cfg.fence_after,
    };
    let hand_over = HandOver {
        own,
        budget: cfg.shutdown_failover_timeout,
    };
    let mut handed_over = false;
    let before_forward = |sig: i32| {
        let first_term = sig == libc::SIGTERM && !handed_over;
        handed_over |= first_term;
        let (zk, hand_over) = (keeper.zk(), &hand_over);
        async move {
            if first_term {
                hand_over.run(&zk).await;
            }
        }
    };
    let code = tokio::select! {
        code = supervise::supervise_with(&mut child, &mut signals, before_forward) => code,
        never = guard.run(keeper.subscribe()) => match never {},
        never = fence.run(keeper.subscribe()) => match never {},
        never = view => match never {},
    };
    keeper.shutdown().await;
    code
}

/// Why bootstrap ended without a ready server.
enum Early {
    /// Leave with this exit code.
    Exit(i32),
    /// A signal was forwarded to the starting child: supervise it to its end.
    Supervise(Box<Child>),
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
        _ => None,
    };
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
    if replica_of.is_none() {
        let expected = match record {
            Record::Missing => None,
            Record::Unusable { version } | Record::Valid { version, .. } => Some(version),
        };
        if let Err(e) = zk.write_master(Some(lock), me, expected).await {
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
    let executor = Executor::new(probe, &cfg.common.master_name);
    let scope = Scope {
        nodes: true,
        ..Scope::default()
    };
    loop {
        let grace_elapsed = lost_since.map_or(cfg.takeover_grace.is_zero(), |t| t.elapsed() >= cfg.takeover_grace);
        let snap = match observe(zk, probe, &cfg.common.master_name, scope).await {
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
        let obs = Observation::from_snapshot(&snap, me, grace_elapsed);
        let record = snap.record.clone();
        match decide(&obs) {
            Decision::Wait => {
                let since = *lost_since.get_or_insert_with(Instant::now);
                if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    last_log = Some(Instant::now());
                    let left = cfg.takeover_grace.saturating_sub(since.elapsed());
                    warn!(record = ?obs.record, path = %zk.master_path(), left_s = left.as_secs(),
                        "no live master found; waiting for a failover before taking over");
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
                match executor
                    .execute(zk, Some(lock), snap.session, &Action::WriteRecord(write))
                    .await
                {
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
            d @ Decision::Replicate { .. } => {
                if let Decision::Replicate { master, .. } = &d {
                    info!(master = %master, addr = %me, role = "replica", "joining the live master");
                }
                return Ok((d, record));
            }
            Decision::Promote { replica } => {
                warn!(addr = %me, replica = %replica, record = ?obs.record, grace_s = cfg.takeover_grace.as_secs(),
                    "TAKEOVER: the group lost its master and no Sentinel replaced it; promoting the most up-to-date live replica");
                let action = Action::Promote {
                    replica: replica.clone(),
                };
                if let Err(e) = executor.execute(zk, Some(lock), snap.session, &action).await {
                    warn!(replica = %replica, error = %e, "promotion failed; deciding again");
                    pause(signals, RECHECK).await?;
                    continue;
                }
                metrics().takeovers.inc();
                // The record is then corrected by the Replicate branch (CAS).
                continue;
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

/// Bytes of data the server will load at start: its RDB and append-only
/// files in `dir` (Redis's default names). Unreadable counts as none.
fn data_on_disk(dir: &std::path::Path) -> u64 {
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let aof: u64 = std::fs::read_dir(dir.join("appendonlydir"))
        .map(|d| d.flatten().map(|e| size(e.path())).sum())
        .unwrap_or(0);
    size(dir.join("dump.rdb")) + aof
}

/// Writes `redis.conf` and starts `redis-server` with it, followed by the
/// pass-through arguments.
async fn start_server(cfg: &RedisConfig, id: &Identity, replica_of: Option<&Endpoint>) -> std::io::Result<Child> {
    let dir = &cfg.common.data_dir();
    let dir = std::fs::canonicalize(dir)?;
    let conf_path = dir.join("redis.conf");
    // A new replica holds nothing until its first full sync is done: it
    // starts unpromotable, and the role guard restores the priority then.
    let priority = if replica_of.is_some() { 0 } else { cfg.replica_priority };
    write_private(
        &conf_path,
        &redis_conf(
            id,
            &dir,
            cfg.common.password.as_ref(),
            replica_of,
            priority,
            cfg.persistence,
            data_on_disk(&dir),
        ),
    )?;
    let mut args = vec![conf_path.to_string_lossy().into_owned()];
    args.extend(cfg.extra_args.iter().cloned());
    let child = supervise::spawn(&cfg.server_bin, &args, &dir).await?;
    info!(pid = child.pid(), addr = %id.announce, role = if replica_of.is_some() { "replica" } else { "master" }, "redis-server started");
    Ok(child)
}
