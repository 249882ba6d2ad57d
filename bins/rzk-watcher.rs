//! `rzk-watcher`: keeps `<root>/master` equal to the Sentinels' view. See
//! SPEC "rzk-watcher".

use redis_zk::config::{WatcherConfig, process_env};

fn main() {
    redis_zk::cli::main(
        "rzk-watcher",
        || {
            let cfg = WatcherConfig::from_vars(&process_env())?;
            let format = cfg.common.log_format;
            Ok((cfg, format))
        },
        redis_zk::watcher::run,
    )
}
