//! `rzkctl`: the operator's command. `rzkctl status [--json]` prints the
//! group (record, nodes, Sentinels, a verdict) and exits 0 when healthy, 1
//! when degraded, 2 on bad configuration or usage. Configured by the same
//! variables as the launchers (`ZK_HOSTS`, `ZK_ROOT`, `MASTER_NAME`,
//! `REDIS_PASSWORD`, `ZK_DIGEST`).

use redis_zk::config::{ConfigError, CtlConfig, process_env};

fn main() {
    redis_zk::cli::main_with(
        "rzkctl",
        "warn",
        || {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let json = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["status"] => false,
                ["status", "--json"] => true,
                _ => return Err(ConfigError::new("args", args.join(" "), "status [--json]")),
            };
            let cfg = CtlConfig::from_vars(&process_env())?;
            let format = cfg.common.log_format;
            Ok(((cfg, json), format))
        },
        |(cfg, json)| redis_zk::ctl::status(cfg, json),
    )
}
