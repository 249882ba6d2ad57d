//! `rzk-watcher`: keeps `<root>/master` equal to the Sentinels' view. See
//! `docs/contract.md`, "rzk-watcher". `rzk-watcher --check` is its health check: exit 0
//! when the record matches the master the Sentinels confirm.

use redis_zk::config::{ConfigError, WatcherConfig, process_env};

fn main() {
    redis_zk::cli::main(
        "rzk-watcher",
        || {
            let check = match std::env::args().nth(1).as_deref() {
                None => false,
                Some("--check") => true,
                Some(other) => return Err(ConfigError::new("args", other, "no arguments, or --check")),
            };
            let cfg = WatcherConfig::from_vars(&process_env())?;
            redis_zk::startup::drop_root(None)?;
            let format = cfg.common.log_format;
            Ok(((cfg, check), format))
        },
        |(cfg, check)| async move {
            if check {
                redis_zk::launch::watcher::check(cfg).await
            } else {
                redis_zk::launch::watcher::run(cfg).await
            }
        },
    )
}
