//! `rzk-watcher`: keeps `<root>/master` equal to the Sentinels' view. See
//! `docs/contract.md`, "rzk-watcher". `rzk-watcher --check` is its health check: exit 0
//! when the record matches the master the Sentinels confirm.

use redis_zk::config::{Bin, ConfigError, WatcherConfig, process_env};
use redis_zk::startup::{self, DataDir};

fn main() {
    redis_zk::cli::main(
        Bin::Watcher,
        || {
            let check = match std::env::args().nth(1).as_deref() {
                None => false,
                Some("--check") => true,
                Some(other) => return Err(ConfigError::new("args", other, "no arguments, or --check")),
            };
            let cfg = WatcherConfig::from_vars(&process_env())?;
            startup::run_as_redis(DataDir::NotUsed)?;
            let common = cfg.common.clone();
            Ok(((cfg, check), common))
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
