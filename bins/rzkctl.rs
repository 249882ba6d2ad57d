//! `rzkctl`: the operator's command.
//! - `rzkctl status [--json]` prints the group (record, nodes, Sentinels, a
//!   verdict) and exits 0 when healthy, 1 when degraded.
//! - `rzkctl switchover [--to IP:PORT] [--timeout S]` hands the master role
//!   to a replica with no acknowledged write lost; exits 0 once the record
//!   and every Sentinel name the new master, 1 with the reason otherwise.
//! - `rzkctl pause [--for DURATION] [--reason TEXT]` and `rzkctl resume`
//!   hold automatic failovers off for maintenance, and lift that hold.
//! - `rzkctl history [--json]` lists the record's past masters and why
//!   each change happened.
//! - `rzkctl tls on|off` tells a group in transition what to speak.
//!
//! Bad configuration or usage exits 2. Configured by the same variables as
//! the launchers (`rzkctl --help` lists them).

use redis_zk::config::{Bin, CtlConfig, process_env};
use redis_zk::ctl::{self, args::Command};

fn main() {
    redis_zk::cli::main(
        Bin::Ctl,
        || {
            let cmd = ctl::args::parse(std::env::args_os().skip(1))?;
            let cfg = CtlConfig::from_vars(&process_env())?;
            let common = cfg.common.clone();
            Ok(((cfg, cmd), common))
        },
        |(cfg, cmd)| async move {
            match cmd {
                Command::Status { json } => ctl::status(cfg, json).await,
                Command::Switchover { to, timeout } => ctl::switchover(cfg, to, timeout).await,
                Command::Pause { duration, reason } => ctl::pause(cfg, duration, reason).await,
                Command::Resume => ctl::resume(cfg).await,
                Command::History { json } => ctl::history(cfg, json).await,
                Command::Tls { on } => ctl::tls(cfg, on).await,
            }
        },
    )
}
