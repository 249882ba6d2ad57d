//! The shared `main` of the binaries: parse config, set up logs, run the
//! launcher on a single-threaded runtime, map the outcome to an exit code.
//!
//! Keeping this here keeps `bins/*.rs` a few lines each, and guarantees the
//! three binaries treat bad configuration the same way (exit 2, one line,
//! before any ZooKeeper call).

use std::future::Future;

use crate::config::{ConfigError, LogFormat};

/// Exit status for bad configuration.
pub const EXIT_CONFIG: i32 = 2;

/// Runs a binary: `parse` validates everything (a [`ConfigError`] exits 2
/// with one line on stderr), then `run` drives the launcher and returns the
/// exit code.
pub fn main<C, F>(
    name: &str,
    parse: impl FnOnce() -> Result<(C, LogFormat), ConfigError>,
    run: impl FnOnce(C) -> F,
) -> !
where
    F: Future<Output = i32>,
{
    main_with(name, "info", parse, run)
}

/// [`main`] with another default log level (`rzkctl`: `warn`, because its
/// output is its table).
pub fn main_with<C, F>(
    name: &str,
    default_level: &str,
    parse: impl FnOnce() -> Result<(C, LogFormat), ConfigError>,
    run: impl FnOnce(C) -> F,
) -> !
where
    F: Future<Output = i32>,
{
    let cfg = match parse().and_then(|(c, f)| crate::logging::init_with(f, default_level).map(|_| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run(cfg));
    // Do not wait for background tasks (ZooKeeper session I/O): the work is done.
    rt.shutdown_background();
    std::process::exit(code)
}
