//! `rzk-sentinel`: entrypoint of a Sentinel task. See `docs/contract.md`, "rzk-sentinel".

use redis_zk::config::{Bin, SentinelConfig, process_env};
use redis_zk::startup::{self, DataDir};

fn main() {
    redis_zk::cli::main(
        Bin::Sentinel,
        || {
            let mut cfg = SentinelConfig::from_vars(&process_env())?;
            cfg.sentinel_bin = startup::program("REDIS_SENTINEL_BIN", &cfg.sentinel_bin, "redis-sentinel")?;
            let id = startup::resolve(&cfg.listen)?;
            startup::check_tls_names(&mut cfg.common, &id)?;
            // Every check above changed nothing; from here on, as root,
            // DATA_DIR is handed over (when it is clearly this task's).
            startup::run_as_redis(cfg.common.data_dir.as_deref().map_or(DataDir::Unset, DataDir::Set))?;
            startup::prepare_data_dir(&cfg.common.data_dir())?;
            let common = cfg.common.clone();
            Ok(((cfg, id), common))
        },
        |(cfg, id)| redis_zk::launch::sentinel::run(cfg, id),
    )
}
