//! `rzk-redis`: entrypoint of a Redis task. See `docs/contract.md`, "rzk-redis".
//! Arguments are passed through to `redis-server` unchanged.

use redis_zk::config::{RedisConfig, process_env};
use redis_zk::startup;

fn main() {
    redis_zk::cli::main(
        "rzk-redis",
        || {
            let mut cfg = RedisConfig::from_vars(&process_env(), std::env::args().skip(1).collect())?;
            startup::drop_root(Some(&cfg.common.data_dir))?;
            cfg.server_bin = startup::program("REDIS_SERVER_BIN", &cfg.server_bin, "redis-server")?;
            let id = startup::resolve(&cfg.listen)?;
            startup::prepare_data_dir(&cfg.common.data_dir)?;
            let format = cfg.common.log_format;
            Ok(((cfg, id), format))
        },
        |(cfg, id)| redis_zk::launch::redis::run(cfg, id),
    )
}
