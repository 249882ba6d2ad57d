//! The three launchers, and what they do the same way before their child
//! runs: connect to ZooKeeper unless a signal says stop, and pause
//! interruptibly. Waiting for a new child to answer in its role is in
//! [`ready`].

pub mod diverged;
pub mod fence;
pub mod ready;
pub mod redis;
pub mod sentinel;
pub mod switchover;
pub mod view;
pub mod watcher;

pub use ready::{Ready, STARTUP_TIMEOUT, wait_ready};

/// A launcher's own server: where it probes it, and how peers name it.
#[derive(Debug, Clone)]
pub struct Own<'a> {
    /// Probes with the group's password.
    pub probe: &'a Probe,
    /// The local server as the launcher's own probes reach it (its
    /// 127.0.0.1 listener).
    pub local: Endpoint,
    /// The server's listener on the task address, where clients connect:
    /// when the server is demoted, its normal clients there are dropped.
    pub task: Endpoint,
    /// This task's announced address (what peers and Sentinels call it).
    pub me: Endpoint,
    /// `MASTER_NAME`.
    pub name: &'a str,
    /// `DATA_DIR`: a demotion keeps there what only this server has.
    pub data_dir: std::path::PathBuf,
}

impl Own<'_> {
    /// The executor of this launcher, for actions on its own server too.
    pub fn executor(&self) -> Executor<'_> {
        Executor {
            clients: Some(&self.task),
            keep_in: Some(&self.data_dir),
            ..Executor::with_local(self.probe, self.name, &self.local)
        }
    }
}

use std::time::Duration;

use tokio::time::sleep;
use tracing::{error, info, warn};

use crate::act::Executor;
use crate::config::Common;
use crate::model::Endpoint;
use crate::probe::Probe;
use crate::supervise::Signals;
use crate::zk::Zk;
use crate::zk::ZkConfig;

/// Exit code for a signal that stopped the launcher before its child ran.
pub fn interrupted(sig: i32) -> i32 {
    info!(sig, "signal before the child started; leaving");
    128 + sig
}

/// The start every launcher shares: warn once when the group has no
/// password, install the signal handlers (so a signal that arrives before
/// the child runs is seen), then connect to ZooKeeper. Returns the exit
/// code to leave with when either fails.
pub async fn start(common: &Common, binary: &str) -> Result<(Signals, Zk), i32> {
    let group = format!("{}{}", common.zk.chroot.as_deref().unwrap_or(""), common.zk.root);
    crate::metrics::metrics().set_info(binary, &group);
    if common.password.is_none() {
        // Not an error: a private network may be the operator's choice. But
        // anyone who reaches a port can then read every key, and anyone
        // who reaches a Sentinel can move the master.
        warn!(
            "REDIS_PASSWORD is not set: this group is open to anyone who can reach it (any client can read and write every key, and SENTINEL FAILOVER needs no password); set REDIS_PASSWORD or REDIS_PASSWORD_FILE on every app of the group"
        );
    }
    let cfg = &common.zk;
    let mut signals = Signals::new().map_err(|e| {
        error!(error = %e, "cannot install signal handlers");
        1
    })?;
    let zk = connect(cfg, &mut signals).await?;
    Ok((signals, zk))
}

/// Connects to ZooKeeper within `ZK_CONNECT_TIMEOUT_S`; returns the exit
/// code (1, or 128+signal) when that fails or a signal comes first.
pub async fn connect(cfg: &ZkConfig, signals: &mut Signals) -> Result<Zk, i32> {
    tokio::select! {
        r = Zk::connect(cfg) => r.map_err(|e| {
            error!(error = %e, "giving up");
            1
        }),
        sig = signals.recv() => Err(interrupted(sig)),
    }
}

/// Sleeps, unless a signal arrives first (then the launcher leaves).
pub async fn pause(signals: &mut Signals, d: Duration) -> Result<(), i32> {
    tokio::select! {
        _ = sleep(d) => Ok(()),
        sig = signals.recv() => Err(interrupted(sig)),
    }
}
