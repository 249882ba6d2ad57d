//! `rzk-sentinel`: entrypoint of a Sentinel task. See `docs/contract.md`, "rzk-sentinel".

use redis_zk::config::{SentinelConfig, process_env};
use redis_zk::startup;

fn main() {
    redis_zk::cli::main(
        "rzk-sentinel",
        || {
            let mut cfg = SentinelConfig::from_vars(&process_env())?;
            startup::drop_root(Some(&cfg.common.data_dir))?;
            cfg.sentinel_bin = startup::program("REDIS_SENTINEL_BIN", &cfg.sentinel_bin, "redis-sentinel")?;
            let id = startup::resolve(&cfg.listen)?;
            startup::prepare_data_dir(&cfg.common.data_dir)?;
            let format = cfg.common.log_format;
            Ok(((cfg, id), format))
        },
        |(cfg, id)| redis_zk::launch::sentinel::run(cfg, id),
    )
}
