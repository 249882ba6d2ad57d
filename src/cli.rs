//! The shared `main` of the binaries: answer `--help` and `--version`, parse
//! and check the configuration, set up logs, run on a single-threaded
//! runtime, map the outcome to an exit code.
//!
//! Keeping this here keeps `bins/*.rs` a few lines each, and guarantees the
//! binaries treat bad configuration the same way (exit 2, one line, before
//! anything is changed or any ZooKeeper call).

use std::ffi::OsString;
use std::future::Future;

use crate::config::vars::{help, version};
use crate::config::{Bin, Common, ConfigError};

/// Exit status for bad configuration.
pub const EXIT_CONFIG: i32 = 2;

/// The text `--help`/`-h` or `--version`/`-V` asks for, when one of them
/// is among `args`; these win over everything, before anything happens.
/// (`rzk-redis` passes its other arguments to `redis-server`, which never
/// takes these four as a value.)
pub fn early_answer(bin: Bin, args: &[OsString]) -> Option<String> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        Some(help(bin))
    } else if args.iter().any(|a| a == "--version" || a == "-V") {
        Some(version(bin))
    } else {
        None
    }
}

/// Runs binary `bin`: `--help`/`--version` print and exit 0; otherwise
/// `parse` validates everything and prepares the machine (a
/// [`ConfigError`] exits 2 with one line on stderr), then `run` drives the
/// launcher and returns the exit code.
pub fn main<C, F>(bin: Bin, parse: impl FnOnce() -> Result<(C, Common), ConfigError>, run: impl FnOnce(C) -> F) -> !
where
    F: Future<Output = i32>,
{
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let Some(text) = early_answer(bin, &args) {
        print!("{text}");
        std::process::exit(0);
    }
    let (cfg, common) = parse().unwrap_or_else(|e| {
        eprintln!("{}: {e}", bin.name());
        std::process::exit(EXIT_CONFIG)
    });
    // `rzkctl`'s output is its table: only warnings unless asked.
    let default_level = if bin == Bin::Ctl { "warn" } else { "info" };
    crate::logging::init(common.log_format, common.log_filter, default_level);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", bin.name());
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run(cfg));
    // Do not wait for background tasks (ZooKeeper session I/O): the work is done.
    rt.shutdown_background();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_version_win_anywhere() {
        let a = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(early_answer(Bin::Redis, &a(&["--help"])).unwrap().contains("Usage:"));
        assert!(early_answer(Bin::Redis, &a(&["--maxmemory", "1gb", "-h"])).is_some());
        assert_eq!(
            early_answer(Bin::Watcher, &a(&["-V"])).as_deref(),
            Some(concat!("rzk-watcher ", env!("CARGO_PKG_VERSION"), "\n"))
        );
        assert_eq!(early_answer(Bin::Redis, &a(&["--maxmemory", "1gb"])), None);
        assert_eq!(early_answer(Bin::Ctl, &a(&[])), None);
    }
}
