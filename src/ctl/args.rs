//! `rzkctl`'s command line: a subcommand and its flags (lexopt).

use std::ffi::OsString;
use std::time::Duration;

use crate::config::ConfigError;
use crate::model::{Endpoint, Pause};

/// What `rzkctl` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `status [--json]`.
    Status { json: bool },
    /// `switchover [--to IP:PORT] [--timeout S]`.
    Switchover {
        /// `--to`: the replica that must become master.
        to: Option<Endpoint>,
        /// `--timeout` (default 30 s).
        timeout: Duration,
    },
    /// `pause [--for DURATION] [--reason TEXT]`.
    Pause {
        /// `--for` (default [`Pause::DEFAULT`], at most [`Pause::LONGEST`]).
        duration: Duration,
        reason: String,
    },
    /// `resume`.
    Resume,
    /// `history [--json]`.
    History { json: bool },
    /// `tls on|off`: what the group speaks (`<root>/tls`).
    Tls { on: bool },
}

/// What a bad command line is answered with.
const USAGE: &str = "status [--json] | switchover [--to IP:PORT] [--timeout SECONDS] | pause [--for DURATION] [--reason TEXT] | resume | history [--json] | tls on|off (or --help)";

/// Parses the arguments after the program name (`--help` and `--version`
/// are answered before, by [`crate::cli`]).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, ConfigError> {
    let args: Vec<OsString> = args.into_iter().collect();
    let shown = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let usage = || ConfigError::new("args", shown.clone(), USAGE);
    use lexopt::Arg::{Long, Value};
    let mut p = lexopt::Parser::from_args(args);
    let sub = match p.next() {
        Ok(Some(Value(v))) => v.to_string_lossy().into_owned(),
        _ => return Err(usage()),
    };
    let value = |p: &mut lexopt::Parser| -> Result<String, ConfigError> {
        p.value().ok().and_then(|v| v.into_string().ok()).ok_or_else(usage)
    };
    match sub.as_str() {
        "status" | "history" => {
            let mut json = false;
            while let Some(arg) = p.next().map_err(|_| usage())? {
                match arg {
                    Long("json") => json = true,
                    _ => return Err(usage()),
                }
            }
            Ok(if sub == "status" {
                Command::Status { json }
            } else {
                Command::History { json }
            })
        }
        "switchover" => {
            let (mut to, mut timeout) = (None, Duration::from_secs(30));
            while let Some(arg) = p.next().map_err(|_| usage())? {
                match arg {
                    Long("to") => {
                        let v = value(&mut p)?;
                        let addr = v.parse::<std::net::SocketAddrV4>().ok().filter(|a| a.port() > 0);
                        let ep = addr.map(|a| Endpoint::new(a.ip().to_string(), a.port()));
                        to = Some(ep.ok_or_else(|| {
                            ConfigError::new("--to", v, "IPv4:PORT of a replica, e.g. 10.0.3.7:31457")
                        })?);
                    }
                    Long("timeout") => {
                        let v = value(&mut p)?;
                        let secs = v.trim().parse::<u64>().ok().filter(|s| (1..=3600).contains(s));
                        timeout = Duration::from_secs(
                            secs.ok_or_else(|| ConfigError::new("--timeout", v, "whole seconds from 1 to 3600"))?,
                        );
                    }
                    _ => return Err(usage()),
                }
            }
            Ok(Command::Switchover { to, timeout })
        }
        "pause" => {
            let (mut duration, mut reason) = (Pause::DEFAULT, String::new());
            while let Some(arg) = p.next().map_err(|_| usage())? {
                match arg {
                    Long("for") => {
                        let v = value(&mut p)?;
                        duration = humantime::parse_duration(v.trim())
                            .ok()
                            .filter(|d| !d.is_zero() && *d <= Pause::LONGEST)
                            .ok_or_else(|| ConfigError::new("--for", v, "a duration up to 24h, e.g. 30m, 2h, 1h30m"))?;
                    }
                    Long("reason") => reason = value(&mut p)?,
                    _ => return Err(usage()),
                }
            }
            Ok(Command::Pause { duration, reason })
        }
        "resume" => match p.next() {
            Ok(None) => Ok(Command::Resume),
            _ => Err(usage()),
        },
        "tls" => {
            let on = match p.next() {
                Ok(Some(Value(v))) if v == "on" => true,
                Ok(Some(Value(v))) if v == "off" => false,
                _ => return Err(usage()),
            };
            match p.next() {
                Ok(None) => Ok(Command::Tls { on }),
                _ => Err(usage()),
            }
        }
        _ => Err(usage()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Result<Command, ConfigError> {
        parse(v.iter().map(OsString::from))
    }

    #[test]
    fn commands_and_flags() {
        assert_eq!(a(&["status"]), Ok(Command::Status { json: false }));
        assert_eq!(a(&["status", "--json"]), Ok(Command::Status { json: true }));
        assert_eq!(
            a(&["switchover", "--to", "10.0.0.2:6379", "--timeout", "9"]),
            Ok(Command::Switchover {
                to: Some(Endpoint::new("10.0.0.2", 6379)),
                timeout: Duration::from_secs(9)
            })
        );
        assert_eq!(
            a(&["switchover", "--timeout=9"]),
            Ok(Command::Switchover {
                to: None,
                timeout: Duration::from_secs(9)
            })
        );
    }

    #[test]
    fn pause_and_resume() {
        assert_eq!(
            a(&["pause"]),
            Ok(Command::Pause {
                duration: Pause::DEFAULT,
                reason: String::new()
            })
        );
        assert_eq!(
            a(&["pause", "--for", "1h30m", "--reason", "kernel upgrade"]),
            Ok(Command::Pause {
                duration: Duration::from_secs(5400),
                reason: "kernel upgrade".into()
            })
        );
        assert_eq!(a(&["resume"]), Ok(Command::Resume));
        assert_eq!(a(&["history", "--json"]), Ok(Command::History { json: true }));
        assert!(a(&["history", "extra"]).is_err());
        for bad in [
            &["pause", "--for", "25h"][..],
            &["pause", "--for", "0s"],
            &["pause", "--for", "soon"],
        ] {
            assert_eq!(a(bad).unwrap_err().var, "--for", "{bad:?}");
        }
        assert!(a(&["resume", "now"]).is_err());
        assert_eq!(a(&["tls", "on"]), Ok(Command::Tls { on: true }));
        assert_eq!(a(&["tls", "off"]), Ok(Command::Tls { on: false }));
        for bad in [&["tls"][..], &["tls", "yes"], &["tls", "on", "now"]] {
            assert!(a(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_usage_names_what_is_wrong() {
        for bad in [
            &["switchover", "--to", "host:1"][..],
            &["switchover", "--to", "10.0.0.2"],
            &["switchover", "--to", "10.0.0.2:0"],
            &["switchover", "--timeout", "0"],
            &["switchover", "--to"],
            &["status", "--xml"],
            &["status", "extra"],
            &["promote"],
            &[],
        ] {
            assert!(a(bad).is_err(), "{bad:?}");
        }
        assert_eq!(a(&["switchover", "--to", "x"]).unwrap_err().var, "--to");
        assert_eq!(a(&["promote"]).unwrap_err().var, "args");
    }
}
