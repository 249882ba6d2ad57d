//! Log setup: `tracing` events with fields, as text or one JSON object per
//! line on stderr (`LOG_FORMAT`), filtered by `RUST_LOG` (parsed with the
//! rest of the configuration; default `info`, with the ZooKeeper client's
//! own chatter at `warn`).

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber: `filter` is `RUST_LOG` when it was set,
/// else `default` (a level) with the ZooKeeper client at `warn`.
pub fn init(format: LogFormat, filter: Option<Targets>, default: &str) {
    // `Targets` takes `RUST_LOG`'s usual `level` and `target=level` lists.
    // It is the filter without span and field matching, and without the
    // regex engine behind them: that engine was a sixth of each binary,
    // and a binary's pages are most of a launcher's resident memory.
    let filter = filter.unwrap_or_else(|| {
        format!("{default},zookeeper_client=warn")
            .parse::<Targets>()
            .expect("the default filter parses")
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // Only fails if a subscriber is already installed, which is harmless.
    let _ = match format {
        LogFormat::Text => tracing_subscriber::registry().with(fmt).with(filter).try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(fmt.json().flatten_event(true))
            .with(filter)
            .try_init(),
    };
}
