//! `rzk-sentinel`: entrypoint of a Sentinel task. See SPEC "rzk-sentinel".

use redis_zk::config::{ConfigError, SentinelConfig, process_env};
use redis_zk::endpoint;

fn main() {
    redis_zk::cli::main(
        "rzk-sentinel",
        || {
            let cfg = SentinelConfig::from_vars(&process_env())?;
            let id = endpoint::resolve(&cfg.listen)?;
            std::fs::create_dir_all(&cfg.common.data_dir).map_err(|e| {
                ConfigError::new(
                    "DATA_DIR",
                    cfg.common.data_dir.display().to_string(),
                    format!("a writable directory ({e})"),
                )
            })?;
            let format = cfg.common.log_format;
            Ok(((cfg, id), format))
        },
        |(cfg, id)| redis_zk::sentinel::run(cfg, id),
    )
}
