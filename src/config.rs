//! Configuration from environment variables, validated before anything else.
//!
//! Every launcher reads its whole configuration first and refuses to start on
//! any bad value (exit 2), before it touches ZooKeeper. A half-started task is
//! worse than one that never started: it may hold a lock or a registration that
//! nothing serves. Each error names the variable, the value and what was
//! expected, so an operator can fix the Marathon app definition from the log
//! line alone.
//!
//! envy collects the variables into a struct of raw strings; the parsing is ours
//! so that every message has the same shape.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::model::Secret;
pub use crate::zk::settings::ZkConfig;
use crate::zk::settings::{is_valid_zk_path, parse_zk_hosts};

/// A bad configuration value. Displayed as the one line the launcher prints
/// before it exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable (or `args` for command-line arguments).
    pub var: &'static str,
    /// The offending value, already redacted when it is a secret.
    pub value: String,
    /// What would have been accepted.
    pub expected: String,
}

impl ConfigError {
    /// Builds an error; `value` is shown quoted so empty values are visible.
    pub fn new(var: &'static str, value: impl Into<String>, expected: impl Into<String>) -> Self {
        ConfigError {
            var,
            value: value.into(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}={:?}: expected {}", self.var, self.value, self.expected)
    }
}

impl std::error::Error for ConfigError {}

/// Log output format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Settings every binary shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// ZooKeeper access.
    pub zk: ZkConfig,
    /// `MASTER_NAME`: the Sentinel master name.
    pub master_name: String,
    /// `REDIS_PASSWORD`.
    pub password: Option<Secret>,
    /// `DATA_DIR`: working directory of the child and home of generated configs.
    pub data_dir: PathBuf,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `ADMIN_PORT`: where the admin HTTP API listens; unset opens no port.
    /// Marathon gives it as the second port (`PORT1`).
    pub admin_port: Option<u16>,
}

/// Where a launcher's child listens and how peers reach it. The watcher
/// binds nothing and never reads these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// `NET_IFACE`: used when `BIND_IP` is unset. `None` means the
    /// interface of the default IPv4 route: an agent's interface may be
    /// `ens5` or `bond0`, and the default route's is the one other hosts
    /// reach it on.
    pub iface: Option<String>,
    /// `BIND_IP`: an explicit IPv4 literal.
    pub bind_ip: Option<Ipv4Addr>,
    /// `PORT0`.
    pub port: u16,
    /// `ANNOUNCE_IP`: an IPv4 literal.
    pub announce_ip: Option<String>,
    /// `ANNOUNCE_PORT`.
    pub announce_port: Option<u16>,
}

/// Configuration of `rzk-redis`.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Shared settings.
    pub common: Common,
    /// Address settings.
    pub listen: Listen,
    /// `REDIS_SERVER_BIN` as given; start-up resolves it against `PATH`.
    pub server_bin: PathBuf,
    /// `TAKEOVER_GRACE_S`.
    pub takeover_grace: Duration,
    /// `SHUTDOWN_FAILOVER_TIMEOUT_S`.
    pub shutdown_failover_timeout: Duration,
    /// Arguments passed through to `redis-server` unchanged, except
    /// `--replica-priority`, which the launcher owns (see `replica_priority`).
    pub extra_args: Vec<String>,
    /// The failover priority this server gets once it holds the data: the
    /// value of a pass-through `--replica-priority` (or its old name
    /// `--slave-priority`), else Redis' default 100. Until its first full
    /// sync has finished, a replica runs with priority 0 so that Sentinel
    /// can never promote it with an empty or partial dataset.
    pub replica_priority: u32,
    /// `READY_MAX_LAG_S`: the most seconds since a replica last heard from
    /// its master (`master_last_io_seconds_ago`) for `/ready` to be 200.
    pub ready_max_lag: Duration,
    /// `PERSISTENCE`.
    pub persistence: Persistence,
    /// `FENCE_AFTER_MS`: how long a master may go without a witness
    /// (ZooKeeper or a Sentinel majority) confirming it before it refuses
    /// writes ([`crate::policy::fence`]); `None` (0) never fences.
    pub fence_after: Option<Duration>,
}

/// `PERSISTENCE`: what a Redis server keeps on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing: no RDB snapshots, no AOF, and replicas load their full sync
    /// straight into memory. Marathon's sandbox is thrown away with the
    /// task, so writes there only cost I/O; the replicas are the redundancy.
    None,
    /// An append-only file fsynced every second in `DATA_DIR`, which must
    /// then be a persistent volume, so that a group that lost every task
    /// comes back with its data.
    Aof,
}

/// `FENCE_AFTER_MS`'s default. A fence must come before the Sentinels
/// promote another server, or the old master acknowledges writes after the
/// new one took over, and those are lost. The Sentinels promote no sooner
/// than `SENTINEL_DOWN_AFTER_MS` (5000 in the Marathon files) after the
/// master's last answer, plus the vote; the fence comes at most this plus
/// one check (1 s) plus the witnesses' timeouts (1 s) after the last
/// confirmation. 3000 keeps that below 5000.
pub const DEFAULT_FENCE_AFTER: Duration = Duration::from_millis(3000);

/// Redis' own default `replica-priority`.
pub const DEFAULT_REPLICA_PRIORITY: u32 = 100;

/// Takes `--replica-priority N` (or `--slave-priority N`, any case) out of
/// the pass-through arguments and returns its value, so that the launcher
/// alone decides when the server may be promoted. Redis reads a later
/// argument over the config file, so leaving it in would undo the
/// "not promotable before the first sync" rule.
pub fn take_replica_priority(args: &mut Vec<String>) -> Result<u32, ConfigError> {
    let mut priority = DEFAULT_REPLICA_PRIORITY;
    let mut i = 0;
    while i < args.len() {
        let name = args[i].to_ascii_lowercase();
        if name == "--replica-priority" || name == "--slave-priority" {
            let value = args.get(i + 1).cloned().unwrap_or_default();
            priority = value.trim().parse::<u32>().map_err(|_| {
                ConfigError::new(
                    "args",
                    format!("{} {value}", args[i]),
                    "--replica-priority followed by a whole number from 0 (never promote) up",
                )
            })?;
            args.drain(i..(i + 2).min(args.len()));
        } else {
            i += 1;
        }
    }
    Ok(priority)
}

/// Configuration of `rzk-sentinel`.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    /// Shared settings.
    pub common: Common,
    /// Address settings (`PORT0` defaults to 26379).
    pub listen: Listen,
    /// `REDIS_SENTINEL_BIN` as given; start-up resolves it against `PATH`.
    pub sentinel_bin: PathBuf,
    /// The Sentinel settings for the monitored master.
    pub monitor: MonitorSettings,
    /// `MASTER_WAIT_TIMEOUT_S`.
    pub master_wait_timeout: Duration,
}

/// What `sentinel monitor` and `SENTINEL SET` are given, both in the
/// generated config and when a Sentinel is re-pointed after a takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSettings {
    /// `SENTINEL_QUORUM`.
    pub quorum: u32,
    /// `SENTINEL_DOWN_AFTER_MS`.
    pub down_after_ms: u64,
    /// `SENTINEL_FAILOVER_TIMEOUT_MS`.
    pub failover_timeout_ms: u64,
    /// `SENTINEL_PARALLEL_SYNCS`.
    pub parallel_syncs: u32,
}

/// Configuration of `rzkctl`: the shared variables only.
#[derive(Debug, Clone)]
pub struct CtlConfig {
    /// Shared settings.
    pub common: Common,
}

impl CtlConfig {
    /// Reads and validates the configuration of `rzkctl`.
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        Ok(CtlConfig {
            common: common(&raw(vars), vars)?,
        })
    }
}

/// What `rzkctl` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlCommand {
    /// `status [--json]`.
    Status {
        /// `--json`.
        json: bool,
    },
    /// `switchover [--to IP:PORT] [--timeout S]`.
    Switchover {
        /// `--to`: the replica that must become master.
        to: Option<crate::model::Endpoint>,
        /// `--timeout` (default 30 s).
        timeout: Duration,
    },
}

/// The usage line of `rzkctl`.
pub const CTL_USAGE: &str = "status [--json] | switchover [--to IP:PORT] [--timeout SECONDS]";

/// Parses `rzkctl`'s arguments.
pub fn parse_ctl_args(args: &[String]) -> Result<CtlCommand, ConfigError> {
    let usage = || ConfigError::new("args", args.join(" "), CTL_USAGE);
    let mut it = args.iter().map(String::as_str);
    match it.next() {
        Some("status") => match it.collect::<Vec<_>>().as_slice() {
            [] => Ok(CtlCommand::Status { json: false }),
            ["--json"] => Ok(CtlCommand::Status { json: true }),
            _ => Err(usage()),
        },
        Some("switchover") => {
            let (mut to, mut timeout) = (None, Duration::from_secs(30));
            while let Some(flag) = it.next() {
                let value = it.next().ok_or_else(usage)?;
                match flag {
                    "--to" => {
                        let ep = value
                            .rsplit_once(':')
                            .and_then(|(h, p)| {
                                Some(crate::model::Endpoint::new(
                                    h,
                                    p.parse::<u16>().ok().filter(|p| *p > 0)?,
                                ))
                            })
                            .filter(|e| value.parse::<std::net::SocketAddrV4>().is_ok() && e.port > 0)
                            .ok_or_else(|| {
                                ConfigError::new("--to", value, "IPv4:PORT of a replica, e.g. 10.0.3.7:31457")
                            })?;
                        to = Some(ep);
                    }
                    "--timeout" => {
                        timeout = int_in(1u64, 3600)(value)
                            .map(Duration::from_secs)
                            .ok_or_else(|| ConfigError::new("--timeout", value, "whole seconds from 1 to 3600"))?;
                    }
                    _ => return Err(usage()),
                }
            }
            Ok(CtlCommand::Switchover { to, timeout })
        }
        _ => Err(usage()),
    }
}

/// Configuration of `rzk-watcher`. It binds nothing, so it ignores
/// `NET_IFACE`, `BIND_IP`, `PORT0` and `ANNOUNCE_*`.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    /// Shared settings.
    pub common: Common,
    /// `RECONCILE_INTERVAL_S`.
    pub reconcile_interval: Duration,
}

/// Variables all three binaries read.
pub const COMMON_VARS: &[&str] = &[
    "ZK_HOSTS",
    "ZK_ROOT",
    "ZK_SESSION_TIMEOUT_MS",
    "ZK_CONNECT_TIMEOUT_S",
    "ZK_DIGEST",
    "MASTER_NAME",
    "REDIS_PASSWORD",
    "REDIS_PASSWORD_FILE",
    "ZK_DIGEST_FILE",
    "DATA_DIR",
    "LOG_FORMAT",
    "RUST_LOG",
    "ADMIN_PORT",
];
/// Variables only the two launchers read (the watcher binds nothing).
pub const LISTEN_VARS: &[&str] = &["NET_IFACE", "BIND_IP", "PORT0", "ANNOUNCE_IP", "ANNOUNCE_PORT"];
/// Variables only `rzk-redis` reads.
pub const REDIS_VARS: &[&str] = &[
    "REDIS_SERVER_BIN",
    "TAKEOVER_GRACE_S",
    "SHUTDOWN_FAILOVER_TIMEOUT_S",
    "READY_MAX_LAG_S",
    "PERSISTENCE",
    "FENCE_AFTER_MS",
];
/// Variables only `rzk-sentinel` reads.
pub const SENTINEL_VARS: &[&str] = &[
    "REDIS_SENTINEL_BIN",
    "SENTINEL_QUORUM",
    "SENTINEL_DOWN_AFTER_MS",
    "SENTINEL_FAILOVER_TIMEOUT_MS",
    "SENTINEL_PARALLEL_SYNCS",
    "MASTER_WAIT_TIMEOUT_S",
];
/// Variables only `rzk-watcher` reads.
pub const WATCHER_VARS: &[&str] = &["RECONCILE_INTERVAL_S"];

/// Every variable `binary` (`rzk-redis`, `rzk-sentinel`, `rzk-watcher`)
/// reads, so that deployment files can be checked against it.
pub fn vars_read_by(binary: &str) -> Vec<&'static str> {
    let own: &[&[&str]] = match binary {
        "rzk-redis" => &[LISTEN_VARS, REDIS_VARS],
        "rzk-sentinel" => &[LISTEN_VARS, SENTINEL_VARS],
        "rzk-watcher" => &[WATCHER_VARS],
        _ => &[],
    };
    COMMON_VARS
        .iter()
        .chain(own.iter().flat_map(|v| v.iter()))
        .copied()
        .collect()
}

/// Raw variables as envy collects them: everything optional, everything a
/// string, so that the parsing and its messages stay in one place.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Raw {
    zk_hosts: Option<String>,
    zk_root: Option<String>,
    zk_session_timeout_ms: Option<String>,
    zk_connect_timeout_s: Option<String>,
    zk_digest: Option<String>,
    zk_digest_file: Option<String>,
    master_name: Option<String>,
    redis_password: Option<String>,
    redis_password_file: Option<String>,
    net_iface: Option<String>,
    bind_ip: Option<String>,
    announce_ip: Option<String>,
    announce_port: Option<String>,
    data_dir: Option<String>,
    log_format: Option<String>,
    port0: Option<String>,
    redis_server_bin: Option<String>,
    takeover_grace_s: Option<String>,
    shutdown_failover_timeout_s: Option<String>,
    redis_sentinel_bin: Option<String>,
    sentinel_quorum: Option<String>,
    sentinel_down_after_ms: Option<String>,
    sentinel_failover_timeout_ms: Option<String>,
    sentinel_parallel_syncs: Option<String>,
    master_wait_timeout_s: Option<String>,
    reconcile_interval_s: Option<String>,
    admin_port: Option<String>,
    ready_max_lag_s: Option<String>,
    persistence: Option<String>,
    fence_after_ms: Option<String>,
}

/// The environment as (name, value) pairs. Variables that are not valid
/// UTF-8 are skipped instead of panicking; none of ours can be such.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Whether `name` (already ASCII upper-cased) is a variable some binary reads.
fn is_known_var(name: &str) -> bool {
    [COMMON_VARS, LISTEN_VARS, REDIS_VARS, SENTINEL_VARS, WATCHER_VARS]
        .iter()
        .any(|list| list.contains(&name))
}

fn raw(vars: &[(String, String)]) -> Raw {
    // envy lower-cases names with Unicode rules and panics on a duplicate
    // field, so `ZK_HOSTS` beside `Z\u{212A}_HOSTS` (a Kelvin sign, which
    // folds to `k`) would crash the launcher. Only our own names reach it:
    // matched ASCII-case-insensitively, one value per name (the later wins,
    // as in a real environment); every other variable is ignored.
    let mut seen = std::collections::BTreeMap::new();
    for (k, v) in vars {
        let name = k.to_ascii_uppercase();
        if is_known_var(&name) {
            seen.insert(name, v.clone());
        }
    }
    // Cannot fail: every field is an optional string and every name is unique.
    envy::from_iter(seen).expect("optional string fields always deserialize")
}

/// Reads one variable with a default, parsing it with `parse`, which returns
/// `None` for a value outside what `expected` describes.
fn var<T>(
    name: &'static str,
    value: &Option<String>,
    default: T,
    expected: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => parse(v).ok_or_else(|| ConfigError::new(name, v.clone(), expected)),
    }
}

fn int_in<T: std::str::FromStr + PartialOrd>(lo: T, hi: T) -> impl Fn(&str) -> Option<T> {
    move |s| s.trim().parse::<T>().ok().filter(|n| *n >= lo && *n <= hi)
}

fn port_var(name: &'static str, value: &Option<String>, default: u16) -> Result<u16, ConfigError> {
    var(name, value, default, "a TCP port from 1 to 65535", int_in(1u16, 65535))
}

fn secs_var(name: &'static str, value: &Option<String>, default: u64, lo: u64) -> Result<Duration, ConfigError> {
    let expected = format!("a whole number of seconds from {lo} to 86400");
    var(name, value, default, &expected, int_in(lo, 86_400)).map(Duration::from_secs)
}

/// A secret given either as `name` or as a file named by `file_name` (the
/// `*_FILE` convention of the official database images, which lets Docker
/// and DC/OS secrets arrive as files instead of environment variables).
/// Returns the secret and the variable it came from, so that a later
/// complaint about its content names the variable the operator set. One
/// trailing newline is stripped: `echo secret > file` is the usual way to
/// make one. Both forms at once is an error rather than a silent choice.
fn secret_var(
    name: &'static str,
    file_name: &'static str,
    value: &Option<String>,
    file: &Option<String>,
) -> Result<Option<(String, &'static str)>, ConfigError> {
    match (value, file) {
        (None, None) => Ok(None),
        (Some(_), Some(path)) => Err(ConfigError::new(
            file_name,
            path.clone(),
            format!("{name} or {file_name}, not both; unset one of them"),
        )),
        (Some(v), None) => Ok(Some((v.clone(), name))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    file_name,
                    path.clone(),
                    format!("a file this user can read, holding {name} in UTF-8 ({e})"),
                )
            })?;
            let text = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            Ok(Some((text.to_string(), file_name)))
        }
    }
}

fn is_valid_master_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `ADMIN_PORT`: a port, or `$PORT0` … `$PORT9`, the port Marathon gave
/// that index (Marathon sets `env` values literally, without expanding
/// variables, so the admin port can only be named this way).
fn admin_port(value: &Option<String>, vars: &[(String, String)]) -> Result<Option<u16>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    let expected = "a TCP port from 1 to 65535, or $PORT0 to $PORT9 naming a port Marathon assigned";
    let bad = || ConfigError::new("ADMIN_PORT", v.clone(), expected);
    let literal = match v.strip_prefix('$') {
        None => v.clone(),
        Some(name) if name.len() == 5 && name.starts_with("PORT") && name.as_bytes()[4].is_ascii_digit() => vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, val)| val.clone())
            .ok_or_else(|| ConfigError::new("ADMIN_PORT", v.clone(), format!("{expected}; {name} is not set")))?,
        Some(_) => return Err(bad()),
    };
    int_in(1u16, 65535)(&literal).map(Some).ok_or_else(bad)
}

fn common(r: &Raw, vars: &[(String, String)]) -> Result<Common, ConfigError> {
    let hosts_raw = r.zk_hosts.clone().unwrap_or_else(|| "localhost:2181".into());
    let (hosts, chroot) = parse_zk_hosts(&hosts_raw).ok_or_else(|| {
        ConfigError::new(
            "ZK_HOSTS",
            hosts_raw.clone(),
            "a comma-separated list of host[:port] with an optional /chroot suffix, e.g. zk1:2181,zk2:2181/dcos",
        )
    })?;
    let root = var(
        "ZK_ROOT",
        &r.zk_root,
        "/redis".to_string(),
        "an absolute ZooKeeper path such as /redis, without a trailing slash",
        |s| is_valid_zk_path(s).then(|| s.to_string()),
    )?;
    let session_timeout = var(
        "ZK_SESSION_TIMEOUT_MS",
        &r.zk_session_timeout_ms,
        10_000,
        "milliseconds from 1000 to 600000",
        int_in(1000u64, 600_000),
    )
    .map(Duration::from_millis)?;
    let connect_timeout = secs_var("ZK_CONNECT_TIMEOUT_S", &r.zk_connect_timeout_s, 30, 1)?;
    let digest = match secret_var("ZK_DIGEST", "ZK_DIGEST_FILE", &r.zk_digest, &r.zk_digest_file)? {
        None => None,
        Some((d, from)) => match d.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() && !d.contains(['\n', '\r', '\0']) => {
                Some(Secret::new(d.clone()))
            }
            _ => {
                return Err(ConfigError::new(
                    from,
                    "<redacted>",
                    "user:password with a non-empty user and password",
                ));
            }
        },
    };
    let master_name = var(
        "MASTER_NAME",
        &r.master_name,
        "mymaster".to_string(),
        "1 to 128 letters, digits, '.', '_' or '-'",
        |s| is_valid_master_name(s).then(|| s.to_string()),
    )?;
    let password = match secret_var(
        "REDIS_PASSWORD",
        "REDIS_PASSWORD_FILE",
        &r.redis_password,
        &r.redis_password_file,
    )? {
        None => None,
        Some((p, from)) if p.is_empty() || p.contains(['\n', '\r', '\0']) => {
            return Err(ConfigError::new(
                from,
                "<redacted>",
                "a non-empty password on one line, or leave it unset",
            ));
        }
        Some((p, _)) => Some(Secret::new(p)),
    };
    let data_dir = PathBuf::from(r.data_dir.clone().unwrap_or_else(|| ".".into()));
    if data_dir.as_os_str().is_empty() || (data_dir.exists() && !data_dir.is_dir()) {
        return Err(ConfigError::new(
            "DATA_DIR",
            data_dir.display().to_string(),
            "a directory (it is created when missing)",
        ));
    }
    let log_format = var(
        "LOG_FORMAT",
        &r.log_format,
        LogFormat::Text,
        "text or json",
        |s| match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        },
    )?;
    Ok(Common {
        zk: ZkConfig {
            hosts,
            chroot,
            root,
            session_timeout,
            connect_timeout,
            digest,
            create: true,
        },
        master_name,
        password,
        data_dir,
        log_format,
        admin_port: admin_port(&r.admin_port, vars)?,
    })
}

fn listen(r: &Raw, default_port: u16) -> Result<Listen, ConfigError> {
    let iface = r.net_iface.clone();
    if iface
        .as_deref()
        .is_some_and(|i| i.is_empty() || i.len() > 15 || i.contains(['/', ' ']))
    {
        return Err(ConfigError::new(
            "NET_IFACE",
            iface.unwrap_or_default(),
            "a network interface name such as eth0 (or unset, for the default route's interface)",
        ));
    }
    let bind_ip = match &r.bind_ip {
        None => None,
        Some(s) => Some(
            s.parse::<Ipv4Addr>()
                .map_err(|_| ConfigError::new("BIND_IP", s.clone(), "an IPv4 address literal such as 10.0.3.7"))?,
        ),
    };
    let announce_ip = match &r.announce_ip {
        None => None,
        // An IPv4 literal only: Sentinel answers with IP addresses, so a
        // hostname here would make the same task appear under two names.
        Some(s) if s.parse::<Ipv4Addr>().is_ok() => Some(s.clone()),
        Some(s) => {
            return Err(ConfigError::new("ANNOUNCE_IP", s.clone(), "an IPv4 address literal"));
        }
    };
    Ok(Listen {
        iface,
        bind_ip,
        port: port_var("PORT0", &r.port0, default_port)?,
        announce_ip,
        announce_port: r
            .announce_port
            .as_ref()
            .map(|_| port_var("ANNOUNCE_PORT", &r.announce_port, 0))
            .transpose()?,
    })
}

impl RedisConfig {
    /// Reads and validates the configuration of `rzk-redis` from `vars`
    /// (normally [`process_env`]) and the pass-through arguments.
    pub fn from_vars(vars: &[(String, String)], mut args: Vec<String>) -> Result<Self, ConfigError> {
        let r = raw(vars);
        let replica_priority = take_replica_priority(&mut args)?;
        Ok(RedisConfig {
            common: common(&r, vars)?,
            listen: listen(&r, 6379)?,
            server_bin: PathBuf::from(r.redis_server_bin.as_deref().unwrap_or("redis-server")),
            takeover_grace: secs_var("TAKEOVER_GRACE_S", &r.takeover_grace_s, 30, 0)?,
            shutdown_failover_timeout: secs_var("SHUTDOWN_FAILOVER_TIMEOUT_S", &r.shutdown_failover_timeout_s, 20, 1)?,
            extra_args: args,
            replica_priority,
            ready_max_lag: secs_var("READY_MAX_LAG_S", &r.ready_max_lag_s, 10, 1)?,
            fence_after: var(
                "FENCE_AFTER_MS",
                &r.fence_after_ms,
                Some(DEFAULT_FENCE_AFTER),
                "0 (never fence) or milliseconds from 500 to 600000",
                |s| match s.trim().parse::<u64>().ok()? {
                    0 => Some(None),
                    ms @ 500..=600_000 => Some(Some(Duration::from_millis(ms))),
                    _ => None,
                },
            )?,
            persistence: var(
                "PERSISTENCE",
                &r.persistence,
                Persistence::None,
                "none or aof",
                |s| match s {
                    "none" => Some(Persistence::None),
                    "aof" => Some(Persistence::Aof),
                    _ => None,
                },
            )?,
        })
    }
}

impl SentinelConfig {
    /// Reads and validates the configuration of `rzk-sentinel`.
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let r = raw(vars);
        Ok(SentinelConfig {
            common: common(&r, vars)?,
            listen: listen(&r, 26379)?,
            sentinel_bin: PathBuf::from(r.redis_sentinel_bin.as_deref().unwrap_or("redis-sentinel")),
            monitor: MonitorSettings {
                quorum: var(
                    "SENTINEL_QUORUM",
                    &r.sentinel_quorum,
                    2,
                    "a whole number from 1 to 100",
                    int_in(1u32, 100),
                )?,
                down_after_ms: var(
                    "SENTINEL_DOWN_AFTER_MS",
                    &r.sentinel_down_after_ms,
                    5000,
                    "milliseconds from 100 to 3600000",
                    int_in(100u64, 3_600_000),
                )?,
                failover_timeout_ms: var(
                    "SENTINEL_FAILOVER_TIMEOUT_MS",
                    &r.sentinel_failover_timeout_ms,
                    60_000,
                    "milliseconds from 1000 to 86400000",
                    int_in(1000u64, 86_400_000),
                )?,
                parallel_syncs: var(
                    "SENTINEL_PARALLEL_SYNCS",
                    &r.sentinel_parallel_syncs,
                    1,
                    "a whole number from 1 to 100",
                    int_in(1u32, 100),
                )?,
            },
            master_wait_timeout: secs_var("MASTER_WAIT_TIMEOUT_S", &r.master_wait_timeout_s, 60, 1)?,
        })
    }
}

impl WatcherConfig {
    /// Reads and validates the configuration of `rzk-watcher`.
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let r = raw(vars);
        Ok(WatcherConfig {
            common: common(&r, vars)?,
            reconcile_interval: secs_var("RECONCILE_INTERVAL_S", &r.reconcile_interval_s, 5, 1)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        v.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
        if !pairs.iter().any(|(k, _)| *k == "REDIS_SERVER_BIN") {
            v.push(("REDIS_SERVER_BIN".into(), "/bin/sh".into()));
        }
        v
    }

    fn err(pairs: &[(&str, &str)]) -> ConfigError {
        RedisConfig::from_vars(&env(pairs), vec![]).unwrap_err()
    }

    #[test]
    fn defaults() {
        let c = RedisConfig::from_vars(&env(&[]), vec!["--maxmemory".into(), "1gb".into()]).unwrap();
        assert_eq!(c.common.zk.hosts, "localhost:2181");
        assert_eq!(c.common.zk.chroot, None);
        assert_eq!(c.common.zk.root, "/redis");
        assert_eq!(c.common.zk.session_timeout, Duration::from_secs(10));
        assert_eq!(c.common.zk.connect_timeout, Duration::from_secs(30));
        assert_eq!(c.common.master_name, "mymaster");
        assert_eq!(c.listen.port, 6379);
        assert_eq!(c.listen.iface, None, "the default route's interface");
        assert_eq!(c.takeover_grace, Duration::from_secs(30));
        assert_eq!(c.shutdown_failover_timeout, Duration::from_secs(20));
        assert_eq!(c.extra_args, ["--maxmemory", "1gb"]);
        assert_eq!(c.common.log_format, LogFormat::Text);
        assert_eq!(c.common.admin_port, None);
        assert_eq!(c.ready_max_lag, Duration::from_secs(10));
        assert_eq!(c.persistence, Persistence::None);
        assert_eq!(c.fence_after, Some(Duration::from_millis(3000)));
        assert!(c.common.password.is_none());
    }

    #[test]
    fn fence_after_values() {
        let c = RedisConfig::from_vars(&env(&[("FENCE_AFTER_MS", "0")]), vec![]).unwrap();
        assert_eq!(c.fence_after, None, "0 disables");
        let c = RedisConfig::from_vars(&env(&[("FENCE_AFTER_MS", "1500")]), vec![]).unwrap();
        assert_eq!(c.fence_after, Some(Duration::from_millis(1500)));
        for bad in ["100", "600001", "-1", "fast", ""] {
            let e = err(&[("FENCE_AFTER_MS", bad)]);
            assert_eq!((e.var, e.value.as_str()), ("FENCE_AFTER_MS", bad));
            assert!(e.expected.contains("never fence"), "{e}");
        }
    }

    #[test]
    fn persistence_values() {
        let c = RedisConfig::from_vars(&env(&[("PERSISTENCE", "aof")]), vec![]).unwrap();
        assert_eq!(c.persistence, Persistence::Aof);
        let e = err(&[("PERSISTENCE", "rdb")]);
        assert_eq!((e.var, e.value.as_str()), ("PERSISTENCE", "rdb"));
        assert!(e.expected.contains("none or aof"), "{e}");
    }

    #[test]
    fn secrets_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        let digest = dir.path().join("digest");
        std::fs::write(&pw, "s3cret\n").unwrap();
        std::fs::write(&digest, "rzk:d1gest").unwrap();
        let pw_s = pw.display().to_string();
        let digest_s = digest.display().to_string();
        let c = RedisConfig::from_vars(
            &env(&[("REDIS_PASSWORD_FILE", &pw_s), ("ZK_DIGEST_FILE", &digest_s)]),
            vec![],
        )
        .unwrap();
        // One trailing newline is stripped, nothing else.
        assert_eq!(c.common.password.as_ref().map(|p| p.expose()), Some("s3cret"));
        assert_eq!(c.common.zk.digest.as_ref().map(|p| p.expose()), Some("rzk:d1gest"));

        // Both forms at once, a missing file, a file that is a directory.
        let e = err(&[("REDIS_PASSWORD", "x"), ("REDIS_PASSWORD_FILE", &pw_s)]);
        assert_eq!(e.var, "REDIS_PASSWORD_FILE");
        assert!(e.expected.contains("not both"), "{e}");
        let e = err(&[("ZK_DIGEST", "a:b"), ("ZK_DIGEST_FILE", &digest_s)]);
        assert_eq!(e.var, "ZK_DIGEST_FILE");
        let e = err(&[("REDIS_PASSWORD_FILE", "/nonexistent/pw")]);
        assert_eq!((e.var, e.value.as_str()), ("REDIS_PASSWORD_FILE", "/nonexistent/pw"));
        assert!(e.expected.contains("can read"), "{e}");
        let dir_s = dir.path().display().to_string();
        assert_eq!(err(&[("ZK_DIGEST_FILE", &dir_s)]).var, "ZK_DIGEST_FILE");

        // A bad content is blamed on the file variable, and not echoed.
        std::fs::write(&pw, "two\nlines\n").unwrap();
        let e = err(&[("REDIS_PASSWORD_FILE", &pw_s)]);
        assert_eq!((e.var, e.value.as_str()), ("REDIS_PASSWORD_FILE", "<redacted>"));
        std::fs::write(&digest, "no-colon-s3cret\n").unwrap();
        let e = err(&[("ZK_DIGEST_FILE", &digest_s)]);
        assert_eq!(e.var, "ZK_DIGEST_FILE");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        std::fs::write(&pw, "\n").unwrap();
        assert_eq!(err(&[("REDIS_PASSWORD_FILE", &pw_s)]).var, "REDIS_PASSWORD_FILE");
    }

    #[test]
    fn rzkctl_arguments() {
        let a = |v: &[&str]| parse_ctl_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&["status"]), Ok(CtlCommand::Status { json: false }));
        assert_eq!(a(&["status", "--json"]), Ok(CtlCommand::Status { json: true }));
        assert_eq!(
            a(&["switchover", "--to", "10.0.0.2:6379", "--timeout", "9"]),
            Ok(CtlCommand::Switchover {
                to: Some(crate::model::Endpoint::new("10.0.0.2", 6379)),
                timeout: Duration::from_secs(9)
            })
        );
        assert_eq!(
            a(&["switchover"]),
            Ok(CtlCommand::Switchover {
                to: None,
                timeout: Duration::from_secs(30)
            })
        );
        for bad in [
            &["switchover", "--to", "host:1"][..],
            &["switchover", "--to", "10.0.0.2"],
            &["switchover", "--to", "10.0.0.2:0"],
            &["switchover", "--timeout", "0"],
            &["switchover", "--to"],
            &["status", "--xml"],
            &["promote"],
            &[],
        ] {
            assert!(a(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn admin_port_may_name_a_marathon_port() {
        let c = RedisConfig::from_vars(&env(&[("ADMIN_PORT", "$PORT1"), ("PORT1", "31002")]), vec![]).unwrap();
        assert_eq!(c.common.admin_port, Some(31002));
        let c = RedisConfig::from_vars(&env(&[("ADMIN_PORT", "8080")]), vec![]).unwrap();
        assert_eq!(c.common.admin_port, Some(8080));
        let e = err(&[("ADMIN_PORT", "$PORT1"), ("PORT1", "x")]);
        assert_eq!((e.var, e.value.as_str()), ("ADMIN_PORT", "$PORT1"));
        let e = err(&[("ADMIN_PORT", "$PORT1")]);
        assert!(e.to_string().contains("PORT1 is not set"), "{e}");
    }

    #[test]
    fn replica_priority_is_taken_out_of_the_pass_through_args() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = RedisConfig::from_vars(&env(&[]), args(&["--maxmemory", "1gb"])).unwrap();
        assert_eq!((c.replica_priority, c.extra_args), (100, args(&["--maxmemory", "1gb"])));
        let c = RedisConfig::from_vars(
            &env(&[]),
            args(&["--replica-priority", "7", "--maxmemory", "1gb", "--SLAVE-PRIORITY", "9"]),
        )
        .unwrap();
        assert_eq!((c.replica_priority, c.extra_args), (9, args(&["--maxmemory", "1gb"])));
        let c = RedisConfig::from_vars(&env(&[]), args(&["--replica-priority", "0"])).unwrap();
        assert_eq!((c.replica_priority, c.extra_args.len()), (0, 0));
        for bad in [
            &["--replica-priority"][..],
            &["--replica-priority", "high"],
            &["--replica-priority", "-1"],
        ] {
            let e = RedisConfig::from_vars(&env(&[]), args(bad)).unwrap_err();
            assert_eq!(e.var, "args", "{bad:?}: {e}");
        }
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            ("PORT0", "abc"),
            ("PORT0", "70000"),
            ("PORT0", "0"),
            ("ZK_HOSTS", ""),
            ("ZK_ROOT", "redis"),
            ("ZK_ROOT", "/redis/"),
            ("ZK_ROOT", "/"),
            ("ZK_SESSION_TIMEOUT_MS", "10"),
            ("ZK_CONNECT_TIMEOUT_S", "-1"),
            ("ZK_DIGEST", "nopassword"),
            ("MASTER_NAME", "my master"),
            ("REDIS_PASSWORD", ""),
            ("NET_IFACE", ""),
            ("BIND_IP", "10.0.0.300"),
            ("BIND_IP", "myhost"),
            ("ANNOUNCE_IP", "bad host!"),
            ("ANNOUNCE_IP", "redis.example.com"),
            ("ANNOUNCE_PORT", "65536"),
            ("LOG_FORMAT", "xml"),
            ("TAKEOVER_GRACE_S", "soon"),
            ("SHUTDOWN_FAILOVER_TIMEOUT_S", "0"),
            ("ADMIN_PORT", "0"),
            ("ADMIN_PORT", "http"),
            ("ADMIN_PORT", "$PORT1"),
            ("ADMIN_PORT", "$HOME"),
            ("ADMIN_PORT", "$PORT12"),
            ("READY_MAX_LAG_S", "0"),
        ];
        for (k, v) in cases {
            let e = err(&[(k, v)]);
            assert_eq!(e.var, *k, "{k}={v:?} gave {e}");
            let line = e.to_string();
            assert!(line.contains(k) && line.contains("expected"), "{line}");
        }
    }

    #[test]
    fn secrets_are_not_echoed() {
        let e = err(&[("ZK_DIGEST", "user-without-colon-secret")]);
        assert!(!e.to_string().contains("secret"), "{e}");
        let c = RedisConfig::from_vars(
            &env(&[("REDIS_PASSWORD", "hunter2"), ("ZK_DIGEST", "u:hunter3")]),
            vec![],
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("hunter3"), "{dbg}");
    }

    #[test]
    fn sentinel_and_watcher_values() {
        let path = ("PATH".to_string(), std::env::var("PATH").unwrap_or_default());
        let sbin = ("REDIS_SENTINEL_BIN".to_string(), "/bin/sh".to_string());
        let ok = SentinelConfig::from_vars(&[path.clone(), sbin.clone()]).unwrap();
        assert_eq!(ok.listen.port, 26379);
        assert_eq!(
            ok.monitor,
            MonitorSettings {
                quorum: 2,
                down_after_ms: 5000,
                failover_timeout_ms: 60_000,
                parallel_syncs: 1
            }
        );
        assert_eq!(ok.master_wait_timeout, Duration::from_secs(60));
        for (k, v) in [
            ("SENTINEL_QUORUM", "0"),
            ("SENTINEL_DOWN_AFTER_MS", "soon"),
            ("SENTINEL_FAILOVER_TIMEOUT_MS", "5"),
            ("SENTINEL_PARALLEL_SYNCS", "0"),
            ("MASTER_WAIT_TIMEOUT_S", "0"),
            ("PORT0", "abc"),
        ] {
            let e = SentinelConfig::from_vars(&[path.clone(), sbin.clone(), (k.into(), v.into())]).unwrap_err();
            assert_eq!(e.var, k, "{e}");
        }
        let w = WatcherConfig::from_vars(&[("PORT0".into(), "abc".into())]).unwrap();
        assert_eq!(
            w.reconcile_interval,
            Duration::from_secs(5),
            "the watcher ignores PORT0"
        );
        let e = WatcherConfig::from_vars(&[("RECONCILE_INTERVAL_S".into(), "0".into())]).unwrap_err();
        assert_eq!(e.var, "RECONCILE_INTERVAL_S");
    }

    #[test]
    fn published_variable_lists_match_what_is_parsed() {
        let all: Vec<&str> = ["rzk-redis", "rzk-sentinel", "rzk-watcher"]
            .iter()
            .flat_map(|b| vars_read_by(b))
            .collect();
        for var in all.iter().filter(|v| **v != "RUST_LOG") {
            let r = raw(&[(var.to_string(), "x".to_string())]);
            let json = serde_json::to_value(&r).unwrap();
            assert_eq!(json[var.to_lowercase()], "x", "{var} is listed but not parsed");
        }
        let json = serde_json::to_value(Raw::default()).unwrap();
        for field in json.as_object().unwrap().keys() {
            assert!(
                all.contains(&field.to_uppercase().as_str()),
                "{field} is parsed but not listed"
            );
        }
    }

    #[test]
    fn odd_environments_do_not_panic() {
        let vars = vec![
            ("zk_hosts".to_string(), "a".to_string()),
            ("ZK_HOSTS".to_string(), "b".to_string()),
        ];
        let r = raw(&vars);
        assert_eq!(r.zk_hosts.as_deref(), Some("b"));
        // The Kelvin sign folds to `k` under Unicode lower-casing: the name
        // is not ours, so it is ignored instead of colliding with ZK_HOSTS.
        let vars = vec![
            ("ZK_HOSTS".to_string(), "b".to_string()),
            ("Z\u{212A}_HOSTS".to_string(), "c".to_string()),
            ("\u{212A}".to_string(), "d".to_string()),
        ];
        assert_eq!(raw(&vars).zk_hosts.as_deref(), Some("b"));
    }

    /// Names close to ours: case variants, Unicode look-alikes that fold to
    /// ASCII (Kelvin sign, long s, dotted capital I), and arbitrary text.
    fn odd_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let ours: Vec<&'static str> = [COMMON_VARS, LISTEN_VARS, REDIS_VARS, SENTINEL_VARS, WATCHER_VARS].concat();
        let mangled = (proptest::sample::select(ours), any::<u64>()).prop_map(|(name, bits)| {
            name.chars()
                .enumerate()
                .map(|(i, c)| match (bits >> (i % 64)) & 3 {
                    0 => c.to_ascii_lowercase().to_string(),
                    1 if c == 'K' => "\u{212A}".to_string(),
                    1 if c == 'S' => "\u{17F}".to_string(),
                    1 if c == 'I' => "\u{130}".to_string(),
                    _ => c.to_string(),
                })
                .collect::<String>()
        });
        prop_oneof![mangled, any::<String>(), "[A-Za-z_\u{212A}\u{17F}\u{130}]{1,24}"]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// No extra variable, however named, makes reading the configuration
        /// panic: it either parses or returns a `ConfigError` (exit 2).
        #[test]
        fn random_extra_variables_never_panic(
            extra in proptest::collection::vec((odd_name(), ".{0,12}"), 0..8),
        ) {
            let mut vars = env(&[("ZK_HOSTS", "zk1:2181"), ("REDIS_SENTINEL_BIN", "/bin/sh")]);
            vars.extend(extra);
            let _ = RedisConfig::from_vars(&vars, vec![]);
            let _ = SentinelConfig::from_vars(&vars);
            let _ = WatcherConfig::from_vars(&vars);
        }
    }

    #[test]
    fn data_dir_must_be_a_directory() {
        let e = err(&[("DATA_DIR", "/etc/hostname")]);
        assert_eq!(e.var, "DATA_DIR");
    }
}
