//! `rzkctl`: the operator's command.
//! - `rzkctl status [--json]` prints the group (record, nodes, Sentinels, a
//!   verdict) and exits 0 when healthy, 1 when degraded.
//! - `rzkctl switchover [--to IP:PORT] [--timeout S]` hands the master role
//!   to a replica with no acknowledged write lost; exits 0 once the record
//!   and every Sentinel name the new master, 1 with the reason otherwise.
//!
//! Bad configuration or usage exits 2. Configured by the same variables as
//! the launchers (`ZK_HOSTS`, `ZK_ROOT`, `MASTER_NAME`, `REDIS_PASSWORD`,
//! `ZK_DIGEST`).

use redis_zk::config::{ConfigError, CtlCommand, CtlConfig, parse_ctl_args, process_env};

fn main() {
    redis_zk::cli::main_with(
        "rzkctl",
        "warn",
        || {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let cmd = parse_ctl_args(&args)?;
            let cfg = CtlConfig::from_vars(&process_env())?;
            let format = cfg.common.log_format;
            Ok::<_, ConfigError>(((cfg, cmd), format))
        },
        |(cfg, cmd)| async move {
            match cmd {
                CtlCommand::Status { json } => redis_zk::ctl::status(cfg, json).await,
                CtlCommand::Switchover { to, timeout } => redis_zk::ctl::switchover(cfg, to, timeout).await,
            }
        },
    )
}
