//! `rzk-sentinel`: entrypoint of a Sentinel task. See `docs/contract.md`, "rzk-sentinel".

use redis_zk::config::{SentinelConfig, prepare_data_dir, process_env};
use redis_zk::endpoint;

fn main() {
    redis_zk::cli::main(
        "rzk-sentinel",
        || {
            let cfg = SentinelConfig::from_vars(&process_env())?;
            let id = endpoint::resolve(&cfg.listen)?;
            prepare_data_dir(&cfg.common.data_dir)?;
            let format = cfg.common.log_format;
            Ok(((cfg, id), format))
        },
        |(cfg, id)| redis_zk::sentinel::run(cfg, id),
    )
}
