//! `rzk-redis`: entrypoint of a Redis task. See `docs/contract.md`, "rzk-redis".
//! Arguments are passed through to `redis-server` unchanged.

use redis_zk::config::{RedisConfig, prepare_data_dir, process_env};
use redis_zk::endpoint;

fn main() {
    redis_zk::cli::main(
        "rzk-redis",
        || {
            let cfg = RedisConfig::from_vars(&process_env(), std::env::args().skip(1).collect())?;
            let id = endpoint::resolve(&cfg.listen)?;
            prepare_data_dir(&cfg.common.data_dir)?;
            let format = cfg.common.log_format;
            Ok(((cfg, id), format))
        },
        |(cfg, id)| redis_zk::node::run(cfg, id),
    )
}
