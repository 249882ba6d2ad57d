//! Log setup: `tracing` events with fields, as text or one JSON object per
//! line on stderr (`LOG_FORMAT`), filtered by `RUST_LOG` (default `info`, with the ZooKeeper client's own
//! chatter at `warn`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogFormat};

/// Installs the global subscriber for a launcher (default level `info`). A
/// bad `RUST_LOG` is a configuration error.
pub fn init(format: LogFormat) -> Result<(), ConfigError> {
    init_with(format, "info")
}

/// [`init`] with another default level (`rzkctl` logs only warnings unless
/// asked: its output is its table).
pub fn init_with(format: LogFormat, default: &str) -> Result<(), ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) => EnvFilter::try_new(&v).map_err(|e| {
            ConfigError::new(
                "RUST_LOG",
                v.clone(),
                format!("a tracing filter such as info or redis_zk=debug ({e})"),
            )
        })?,
        Err(_) => EnvFilter::new(format!("{default},zookeeper_client=warn")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Only fails if a subscriber is already installed, which is harmless.
    let _ = result;
    Ok(())
}
