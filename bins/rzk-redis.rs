//! `rzk-redis`: entrypoint of a Redis task. See `docs/contract.md`, "rzk-redis".
//! Arguments are passed through to `redis-server` unchanged.

use redis_zk::config::{Bin, RedisConfig, process_env};
use redis_zk::startup::{self, DataDir};

fn main() {
    redis_zk::cli::main(
        Bin::Redis,
        || {
            let mut cfg = RedisConfig::from_vars(&process_env(), std::env::args().skip(1).collect())?;
            cfg.server_bin = startup::program("REDIS_SERVER_BIN", &cfg.server_bin, "redis-server")?;
            let id = startup::resolve(&cfg.listen)?;
            startup::check_tls_names(&mut cfg.common, &id)?;
            // Every check above changed nothing; from here on, as root,
            // DATA_DIR is handed over (when it is clearly this task's).
            startup::run_as_redis(cfg.common.data_dir.as_deref().map_or(DataDir::Unset, DataDir::Set))?;
            startup::prepare_data_dir(&cfg.common.data_dir())?;
            let common = cfg.common.clone();
            Ok(((cfg, id), common))
        },
        |(cfg, id)| redis_zk::launch::redis::run(cfg, id),
    )
}
