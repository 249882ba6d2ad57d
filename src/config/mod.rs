//! Configuration from environment variables, validated before anything else.
//!
//! Every launcher reads its whole configuration first and refuses to start on
//! any bad value (exit 2), before it touches ZooKeeper. A half-started task is
//! worse than one that never started: it may hold a lock or a registration that
//! nothing serves. Each error names the variable, the value and what was
//! expected, so an operator can fix the Marathon app definition from the log
//! line alone.
//!
//! The variables are declared once, in [`vars::VARS`], which every read goes through.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use tracing_subscriber::filter::Targets;

use crate::model::EngineKind;
pub use crate::model::Secret;
use crate::tls::{AuthClients, Tls};
pub use crate::zk::settings::ZkConfig;
use crate::zk::settings::{is_valid_zk_path, parse_zk_hosts};

pub mod vars;

pub use vars::Bin;

/// A bad configuration value. Displayed as the one line the launcher prints
/// before it exits with status 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: expected {expected}")]
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
    /// `DATA_DIR` when it was set (the two task launchers read it): the
    /// working directory of the child and home of generated configs.
    /// Unset means the working directory, which a launcher started as
    /// root refuses (it would hand it to the `redis` user).
    pub data_dir: Option<PathBuf>,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `RUST_LOG`, parsed; `None`: the binary's default.
    pub log_filter: Option<Targets>,
    /// `ADMIN_PORT`: where the admin HTTP API listens; unset opens no port.
    /// Marathon gives it as the second port (`PORT1`).
    pub admin_port: Option<u16>,
    /// `TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CA_CERT_FILE`: TLS on every
    /// Redis and Sentinel link; `None`: plain TCP.
    pub tls: Option<Tls>,
    /// `TLS_AUTH_CLIENTS` (read by the task launchers).
    pub tls_auth_clients: AuthClients,
}

impl Common {
    /// The directory the child runs in: `DATA_DIR`, else the working
    /// directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from("."))
    }
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
    pub common: Common,
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
    /// `NOFAILOVER`: this server is never promoted; `replica_priority`
    /// is then 0.
    pub nofailover: bool,
    /// `FENCE_AFTER_MS`: how long a master may go without a witness
    /// (ZooKeeper or a Sentinel majority) confirming it before it refuses
    /// writes ([`crate::policy::fence`]); `None` (0) never fences.
    pub fence_after: Option<Duration>,
}

/// `PERSISTENCE`: what a Redis server keeps on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing: no RDB snapshots, no AOF, and replicas load their full sync
    /// through a file deleted once loaded. Marathon's sandbox is thrown
    /// away with the task, so writes there only cost I/O; the replicas are
    /// the redundancy.
    None,
    /// An append-only file fsynced every second in `DATA_DIR`, which must
    /// then be a persistent volume, so that a group that lost every task
    /// comes back with its data.
    Aof,
}

/// Redis' own default `replica-priority`.
pub const DEFAULT_REPLICA_PRIORITY: u32 = 100;

/// Takes `--replica-priority N` (or `--slave-priority N`, any case) out of
/// the pass-through arguments and returns its value, so that the launcher
/// alone decides when the server may be promoted. Redis reads a later
/// argument over the config file, so leaving it in would undo the
/// "not promotable before the first sync" rule.
pub fn take_replica_priority(args: &mut Vec<String>) -> Result<u32, ConfigError> {
    let mut priority = DEFAULT_REPLICA_PRIORITY;
    let is_priority = |a: &String| {
        ["--replica-priority", "--slave-priority"]
            .iter()
            .any(|n| a.eq_ignore_ascii_case(n))
    };
    while let Some(i) = args.iter().position(is_priority) {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        priority = value.trim().parse::<u32>().map_err(|_| {
            ConfigError::new(
                "args",
                format!("{} {value}", args[i]),
                "--replica-priority followed by a whole number from 0 (never promote) up",
            )
        })?;
        args.drain(i..(i + 2).min(args.len()));
    }
    Ok(priority)
}

/// Configuration of `rzk-sentinel`.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
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

/// Configuration of `rzkctl`: the shared variables it reads.
#[derive(Debug, Clone)]
pub struct CtlConfig {
    pub common: Common,
}

/// Configuration of `rzk-watcher`. It binds nothing, so it ignores
/// `NET_IFACE`, `BIND_IP`, `PORT0` and `ANNOUNCE_*`.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    pub common: Common,
    /// `RECONCILE_INTERVAL_S`.
    pub reconcile_interval: Duration,
}

/// The environment as (name, value) pairs. Variables that are not valid
/// UTF-8 are skipped instead of panicking; none of ours can be such.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The variables one binary reads, as set. Every read goes through the
/// table ([`vars::var`]), which gives the default and the message.
struct Env<'a> {
    bin: Bin,
    set: BTreeMap<&'static str, String>,
    /// The whole environment, for `ADMIN_PORT=$PORTn`.
    all: &'a [(String, String)],
    /// The names asked for, so a test can check that a binary reads
    /// exactly the variables the table says.
    asked: RefCell<BTreeSet<&'static str>>,
}

impl<'a> Env<'a> {
    /// Names are matched ASCII-case-insensitively, one value per name (the
    /// later wins, as in a real environment); variables `bin` does not
    /// read are ignored, however they are spelled.
    fn new(bin: Bin, all: &'a [(String, String)]) -> Env<'a> {
        let mut set = BTreeMap::new();
        for (k, v) in all {
            let name = k.to_ascii_uppercase();
            if let Some(var) = vars::VARS.iter().find(|x| x.name == name && x.read_by(bin)) {
                set.insert(var.name, v.clone());
            }
        }
        Env {
            bin,
            set,
            all,
            asked: RefCell::new(BTreeSet::new()),
        }
    }

    /// The value of `name`, when it is set.
    fn value(&self, name: &'static str) -> Option<&str> {
        let var = vars::var(name);
        debug_assert!(var.read_by(self.bin), "{} does not read {name}", self.bin.name());
        self.asked.borrow_mut().insert(var.name);
        self.set.get(name).map(String::as_str)
    }

    /// The error for a bad `value` of `name`, in the table's words.
    fn bad(&self, name: &'static str, value: &str) -> ConfigError {
        let var = vars::var(name);
        let shown = if var.secret { "<redacted>" } else { value };
        ConfigError::new(var.name, shown, var.expected)
    }

    /// `name` parsed by `parse`, or its default (parsed the same way);
    /// `None` when it is unset and has no default value.
    fn opt<T>(&self, name: &'static str, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, ConfigError> {
        match self.value(name) {
            Some(v) => parse(v).map(Some).ok_or_else(|| self.bad(name, v)),
            None => Ok(vars::var(name)
                .default_for(self.bin)
                .map(|d| parse(d).unwrap_or_else(|| panic!("the default of {name} parses")))),
        }
    }

    /// `name` parsed by `parse`, or its default; for variables that have one.
    fn get<T>(&self, name: &'static str, parse: impl Fn(&str) -> Option<T>) -> Result<T, ConfigError> {
        self.opt(name, parse)
            .map(|v| v.unwrap_or_else(|| panic!("{name} has no default value")))
    }

    fn secs(&self, name: &'static str, lo: u64) -> Result<Duration, ConfigError> {
        self.get(name, int_in(lo, 86_400)).map(Duration::from_secs)
    }

    /// `name`, exactly one of the words of `choices`, or its default.
    fn one_of<T: Copy>(&self, name: &'static str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        self.get(name, |s| choices.iter().find(|(w, _)| *w == s).map(|(_, v)| *v))
    }
}

fn int_in<T: std::str::FromStr + PartialOrd>(lo: T, hi: T) -> impl Fn(&str) -> Option<T> {
    move |s| s.trim().parse::<T>().ok().filter(|n| *n >= lo && *n <= hi)
}

fn port(s: &str) -> Option<u16> {
    int_in(1u16, 65535)(s)
}

/// The error for `value` of `var`: its table's `expected` text, then `more`.
fn expecting(var: &'static str, value: impl Into<String>, more: impl fmt::Display) -> ConfigError {
    ConfigError::new(var, value, format!("{}{more}", vars::var(var).expected))
}

/// A secret given either as `name` or as a file named by `file_name` (the
/// `*_FILE` convention of the official database images, which lets Docker
/// and DC/OS secrets arrive as files instead of environment variables).
/// Returns the secret and the variable it came from, so that a later
/// complaint about its content names the variable the operator set. One
/// trailing newline is stripped: `echo secret > file` is the usual way to
/// make one. Both forms at once is an error rather than a silent choice.
fn secret_var(
    env: &Env,
    name: &'static str,
    file_name: &'static str,
) -> Result<Option<(String, &'static str)>, ConfigError> {
    match (env.value(name), env.value(file_name)) {
        (None, None) => Ok(None),
        (Some(_), Some(path)) => Err(ConfigError::new(
            file_name,
            path,
            format!("{name} or {file_name}, not both; unset one of them"),
        )),
        (Some(v), None) => Ok(Some((v.to_string(), name))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| expecting(file_name, path, format!(" ({e})")))?;
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
fn admin_port(env: &Env) -> Result<Option<u16>, ConfigError> {
    let Some(v) = env.value("ADMIN_PORT") else {
        return Ok(None);
    };
    let literal = match v.strip_prefix('$') {
        None => v,
        Some(name) if name.len() == 5 && name.starts_with("PORT") && name.as_bytes()[4].is_ascii_digit() => env
            .all
            .iter()
            .rev()
            .find_map(|(k, val)| (k == name).then_some(val.as_str()))
            .ok_or_else(|| expecting("ADMIN_PORT", v, format!("; {name} is not set")))?,
        Some(_) => return Err(env.bad("ADMIN_PORT", v)),
    };
    port(literal).map(Some).ok_or_else(|| env.bad("ADMIN_PORT", v))
}

fn common(env: &Env) -> Result<Common, ConfigError> {
    let (hosts, chroot) = env.get("ZK_HOSTS", parse_zk_hosts)?;
    let root = env.get("ZK_ROOT", |s| is_valid_zk_path(s).then(|| s.to_string()))?;
    let session_timeout = env
        .get("ZK_SESSION_TIMEOUT_MS", int_in(1000u64, 600_000))
        .map(Duration::from_millis)?;
    let connect_timeout = env.secs("ZK_CONNECT_TIMEOUT_S", 1)?;
    let digest = match secret_var(env, "ZK_DIGEST", "ZK_DIGEST_FILE")? {
        None => None,
        Some((d, from)) => match d.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() && !d.contains(['\n', '\r', '\0']) => Some(Secret::new(d)),
            _ => return Err(ConfigError::new(from, "<redacted>", vars::var("ZK_DIGEST").expected)),
        },
    };
    let master_name = env.get("MASTER_NAME", |s| is_valid_master_name(s).then(|| s.to_string()))?;
    let password = match secret_var(env, "REDIS_PASSWORD", "REDIS_PASSWORD_FILE")? {
        None => None,
        Some((p, from)) if p.is_empty() || p.contains(['\n', '\r', '\0']) => {
            let expected = vars::var("REDIS_PASSWORD").expected;
            return Err(ConfigError::new(from, "<redacted>", expected));
        }
        Some((p, _)) => Some(Secret::new(p)),
    };
    let data_dir = if vars::var("DATA_DIR").read_by(env.bin) {
        env.opt("DATA_DIR", |s| {
            let p = PathBuf::from(s);
            (!s.is_empty() && (!p.exists() || p.is_dir())).then_some(p)
        })?
    } else {
        None
    };
    let log_format = env.one_of("LOG_FORMAT", &[("text", LogFormat::Text), ("json", LogFormat::Json)])?;
    let log_filter = match env.value("RUST_LOG") {
        None => None,
        Some(v) => Some(v.parse().map_err(|e| expecting("RUST_LOG", v, format!(" ({e})")))?),
    };
    let admin_port = if vars::var("ADMIN_PORT").read_by(env.bin) {
        admin_port(env)?
    } else {
        None
    };
    let tls = tls_files(env, ["TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_CERT_FILE"])?;
    let tls_auth_clients = if vars::var("TLS_AUTH_CLIENTS").read_by(env.bin) {
        use AuthClients::{No, Optional, Yes};
        env.one_of("TLS_AUTH_CLIENTS", &[("yes", Yes), ("optional", Optional), ("no", No)])?
    } else {
        AuthClients::Yes
    };
    if env.one_of("TLS_TRANSITION", &[("yes", true), ("no", false)])? {
        let Some(t) = &tls else {
            return Err(ConfigError::new(
                "TLS_TRANSITION",
                "yes",
                "yes only with TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_CERT_FILE set (the files the task speaks TLS with once the group does), or no",
            ));
        };
        t.follow_group();
    }
    let zk_tls = zk_tls(env, &hosts, tls.as_ref())?;
    Ok(Common {
        zk: ZkConfig {
            hosts,
            chroot,
            root,
            session_timeout,
            connect_timeout,
            digest,
            create: env.bin != Bin::Ctl,
            tls: zk_tls,
        },
        tls,
        tls_auth_clients,
        master_name,
        password,
        data_dir,
        log_format,
        log_filter,
        admin_port,
    })
}

/// Three TLS file variables (certificate, key, CA) set together, or none:
/// loaded and checked (see [`crate::tls::load`]). A missing one is named;
/// a file that fails a check is blamed on its variable.
fn tls_files(env: &Env, names: [&'static str; 3]) -> Result<Option<Tls>, ConfigError> {
    let values = names.map(|n| env.value(n));
    let [cert, key, ca] = match values {
        [None, None, None] => return Ok(None),
        [Some(c), Some(k), Some(ca)] => [c, k, ca].map(PathBuf::from),
        _ => {
            let set = names[values.iter().position(Option::is_some).expect("one is set")];
            let missing = names[values.iter().position(Option::is_none).expect("one is missing")];
            let more = format!(", set together with {set}: all three TLS files, or none");
            return Err(expecting(missing, "", more));
        }
    };
    let identity = Some((cert, key));
    load_tls(names, crate::tls::Files { ca, identity }).map(Some)
}

/// [`Tls::new`] without names, its error blamed on the variable of the
/// file it names.
fn load_tls(names: [&'static str; 3], files: crate::tls::Files) -> Result<Tls, ConfigError> {
    let (cert, key) = files.identity.clone().unwrap_or_default();
    let paths = [cert, key, files.ca.clone()];
    Tls::new(files, vec![]).map_err(|why| {
        let i = paths
            .iter()
            .position(|p| !p.as_os_str().is_empty() && why.starts_with(&*p.to_string_lossy()))
            .unwrap_or(0);
        expecting(names[i], paths[i].display().to_string(), format!(" ({why})"))
    })
}

/// The CA and identity for `tcp+tls://` ZooKeeper servers: the `ZK_TLS_*`
/// files, each defaulting to its `TLS_*` one. Unused (the files are not
/// loaded) when `ZK_HOSTS` names no TLS server; required when it does.
fn zk_tls(env: &Env, hosts: &str, tls: Option<&Tls>) -> Result<Option<crate::zk::settings::ZkTls>, ConfigError> {
    let names = ["ZK_TLS_CERT_FILE", "ZK_TLS_KEY_FILE", "ZK_TLS_CA_CERT_FILE"];
    let own = names.map(|n| env.value(n).map(PathBuf::from));
    if !crate::zk::settings::is_tls(hosts) {
        return Ok(None);
    }
    let fallback = tls.map(|t| t.files().clone());
    let ca = match (&own[2], &fallback) {
        (Some(ca), _) => ca.clone(),
        (None, Some(f)) => f.ca.clone(),
        (None, None) => {
            let more = " (or TLS_CA_CERT_FILE): ZK_HOSTS names tcp+tls:// servers";
            return Err(expecting("ZK_TLS_CA_CERT_FILE", "", more));
        }
    };
    let identity = match (&own[0], &own[1]) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => fallback.and_then(|f| f.identity),
        (Some(_), None) | (None, Some(_)) => {
            let missing = if own[0].is_none() { names[0] } else { names[1] };
            let more = ", set together with the other of ZK_TLS_CERT_FILE and ZK_TLS_KEY_FILE";
            return Err(expecting(missing, "", more));
        }
    };
    let files = load_tls(names, crate::tls::Files { ca, identity })?;
    crate::zk::settings::ZkTls::new(files)
        .map(Some)
        .map_err(|e| ConfigError::new(names[2], "", format!("certificates the ZooKeeper client accepts ({e})")))
}

/// A program variable (`REDIS_SERVER_BIN`, `REDIS_SENTINEL_BIN`): as set,
/// or `ENGINE`'s program of that kind.
fn program_var(env: &Env, name: &'static str, of: fn(EngineKind) -> &'static str) -> Result<PathBuf, ConfigError> {
    use EngineKind::{Redis, Valkey};
    let engine = env.one_of("ENGINE", &[("redis", Redis), ("valkey", Valkey)])?;
    Ok(env
        .opt(name, |s| (!s.is_empty()).then(|| PathBuf::from(s)))?
        .unwrap_or_else(|| PathBuf::from(of(engine))))
}

fn listen(env: &Env) -> Result<Listen, ConfigError> {
    let iface = env.opt("NET_IFACE", |i| {
        (!i.is_empty() && i.len() <= 15 && !i.contains(['/', ' '])).then(|| i.to_string())
    })?;
    Ok(Listen {
        iface,
        bind_ip: env.opt("BIND_IP", |s| s.parse::<Ipv4Addr>().ok())?,
        port: env.get("PORT0", port)?,
        // An IPv4 literal only: Sentinel answers with IP addresses, so a
        // hostname here would make the same task appear under two names.
        announce_ip: env.opt("ANNOUNCE_IP", |s| s.parse::<Ipv4Addr>().is_ok().then(|| s.to_string()))?,
        announce_port: env.opt("ANNOUNCE_PORT", port)?,
    })
}

impl RedisConfig {
    /// Reads and validates the configuration of `rzk-redis` from `vars`
    /// (normally [`process_env`]) and the pass-through arguments.
    pub fn from_vars(vars: &[(String, String)], args: Vec<String>) -> Result<Self, ConfigError> {
        Self::read(&Env::new(Bin::Redis, vars), args)
    }

    fn read(env: &Env, mut args: Vec<String>) -> Result<Self, ConfigError> {
        let configured_priority = take_replica_priority(&mut args)?;
        let nofailover = env.one_of("NOFAILOVER", &[("true", true), ("false", false)])?;
        // Never promoted: Sentinel, the takeover and the switchover all
        // read replica-priority 0 as "never".
        let replica_priority = if nofailover { 0 } else { configured_priority };
        Ok(RedisConfig {
            common: common(env)?,
            listen: listen(env)?,
            server_bin: program_var(env, "REDIS_SERVER_BIN", EngineKind::server_program)?,
            takeover_grace: env.secs("TAKEOVER_GRACE_S", 0)?,
            shutdown_failover_timeout: env.secs("SHUTDOWN_FAILOVER_TIMEOUT_S", 1)?,
            extra_args: args,
            replica_priority,
            nofailover,
            ready_max_lag: env.secs("READY_MAX_LAG_S", 1)?,
            fence_after: env.get("FENCE_AFTER_MS", |s| match s.trim().parse::<u64>().ok()? {
                0 => Some(None),
                ms @ 500..=600_000 => Some(Some(Duration::from_millis(ms))),
                _ => None,
            })?,
            persistence: env.one_of("PERSISTENCE", &[("none", Persistence::None), ("aof", Persistence::Aof)])?,
        })
    }
}

impl SentinelConfig {
    /// Reads and validates the configuration of `rzk-sentinel`.
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        Self::read(&Env::new(Bin::Sentinel, vars))
    }

    fn read(env: &Env) -> Result<Self, ConfigError> {
        Ok(SentinelConfig {
            common: common(env)?,
            listen: listen(env)?,
            sentinel_bin: program_var(env, "REDIS_SENTINEL_BIN", EngineKind::sentinel_program)?,
            monitor: MonitorSettings {
                quorum: env.get("SENTINEL_QUORUM", int_in(1u32, 100))?,
                down_after_ms: env.get("SENTINEL_DOWN_AFTER_MS", int_in(100u64, 3_600_000))?,
                failover_timeout_ms: env.get("SENTINEL_FAILOVER_TIMEOUT_MS", int_in(1000u64, 86_400_000))?,
                parallel_syncs: env.get("SENTINEL_PARALLEL_SYNCS", int_in(1u32, 100))?,
            },
            master_wait_timeout: env.secs("MASTER_WAIT_TIMEOUT_S", 1)?,
        })
    }
}

impl WatcherConfig {
    /// Reads and validates the configuration of `rzk-watcher`.
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        Self::read(&Env::new(Bin::Watcher, vars))
    }

    fn read(env: &Env) -> Result<Self, ConfigError> {
        Ok(WatcherConfig {
            common: common(env)?,
            reconcile_interval: env.secs("RECONCILE_INTERVAL_S", 1)?,
        })
    }
}

impl CtlConfig {
    /// Reads and validates the configuration of `rzkctl`.
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        Self::read(&Env::new(Bin::Ctl, vars))
    }

    fn read(env: &Env) -> Result<Self, ConfigError> {
        Ok(CtlConfig { common: common(env)? })
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
    fn tls_files_come_together_and_are_checked() {
        let e = err(&[("TLS_CERT_FILE", "/x/tls.crt")]);
        assert_eq!(e.var, "TLS_KEY_FILE");
        assert!(e.expected.contains("set together with TLS_CERT_FILE"), "{e}");
        let e = err(&[("TLS_CA_CERT_FILE", "/x/ca.crt"), ("TLS_KEY_FILE", "/x/k")]);
        assert_eq!(e.var, "TLS_CERT_FILE");
        // Files that cannot be read are blamed on their variable.
        let e = err(&[
            ("TLS_CERT_FILE", "/nonexistent/tls.crt"),
            ("TLS_KEY_FILE", "/nonexistent/tls.key"),
            ("TLS_CA_CERT_FILE", "/nonexistent/ca.crt"),
        ]);
        assert_eq!(
            (e.var, e.value.as_str()),
            ("TLS_CA_CERT_FILE", "/nonexistent/ca.crt"),
            "{e}"
        );
        // A transition needs the files, and says yes or no.
        let e = err(&[("TLS_TRANSITION", "yes")]);
        assert_eq!((e.var, e.value.as_str()), ("TLS_TRANSITION", "yes"), "{e}");
        assert!(e.expected.contains("TLS_CERT_FILE"), "{e}");
        let e = err(&[("TLS_TRANSITION", "maybe")]);
        assert_eq!((e.var, e.value.as_str()), ("TLS_TRANSITION", "maybe"), "{e}");
        let e = err(&[("TLS_AUTH_CLIENTS", "sometimes")]);
        assert_eq!(e.var, "TLS_AUTH_CLIENTS");
        // ZooKeeper over TLS needs a CA, and its identity comes in pairs.
        let e = err(&[("ZK_HOSTS", "tcp+tls://zk:2281")]);
        assert_eq!(e.var, "ZK_TLS_CA_CERT_FILE", "{e}");
        let e = err(&[
            ("ZK_HOSTS", "tcp+tls://zk:2281"),
            ("ZK_TLS_CA_CERT_FILE", "/x/ca.crt"),
            ("ZK_TLS_CERT_FILE", "/x/c"),
        ]);
        assert_eq!(e.var, "ZK_TLS_KEY_FILE", "{e}");
        assert_eq!(err(&[("ZK_HOSTS", "tcp+tls://a,b")]).var, "ZK_HOSTS");
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
    fn nofailover_makes_the_priority_0_whatever_the_arguments_say() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = RedisConfig::from_vars(&env(&[]), vec![]).unwrap();
        assert_eq!((c.nofailover, c.replica_priority), (false, 100));
        let c = RedisConfig::from_vars(&env(&[("NOFAILOVER", "true")]), args(&["--replica-priority", "7"])).unwrap();
        assert_eq!((c.nofailover, c.replica_priority, c.extra_args.len()), (true, 0, 0));
        let c = RedisConfig::from_vars(&env(&[("NOFAILOVER", "false")]), args(&["--replica-priority", "7"])).unwrap();
        assert_eq!((c.nofailover, c.replica_priority), (false, 7));
        let e = err(&[("NOFAILOVER", "yes")]);
        let line = e.to_string();
        assert!(
            line.contains("NOFAILOVER") && line.contains("yes") && line.contains("true or false"),
            "{line}"
        );
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
            ("NOFAILOVER", "yes"),
            ("NOFAILOVER", "TRUE"),
            ("NOFAILOVER", ""),
            ("ENGINE", "keydb"),
            ("ENGINE", "Valkey"),
            ("ENGINE", ""),
        ];
        for (k, v) in cases {
            let e = err(&[(k, v)]);
            assert_eq!(e.var, *k, "{k}={v:?} gave {e}");
            let line = e.to_string();
            assert!(line.contains(k) && line.contains("expected"), "{line}");
        }
    }

    #[test]
    fn engine_picks_the_programs_an_explicit_one_wins() {
        let path = ("PATH".to_string(), std::env::var("PATH").unwrap_or_default());
        let with = |pairs: &[(&str, &str)]| {
            let mut v = vec![path.clone()];
            v.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            v
        };
        let r = RedisConfig::from_vars(&with(&[]), vec![]).unwrap();
        assert_eq!(r.server_bin, PathBuf::from("redis-server"));
        let r = RedisConfig::from_vars(&with(&[("ENGINE", "valkey")]), vec![]).unwrap();
        assert_eq!(r.server_bin, PathBuf::from("valkey-server"));
        let r = RedisConfig::from_vars(&with(&[("ENGINE", "valkey"), ("REDIS_SERVER_BIN", "/opt/v")]), vec![]).unwrap();
        assert_eq!(r.server_bin, PathBuf::from("/opt/v"));
        let s = SentinelConfig::from_vars(&with(&[("ENGINE", "valkey")])).unwrap();
        assert_eq!(s.sentinel_bin, PathBuf::from("valkey-sentinel"));
        let s = SentinelConfig::from_vars(&with(&[("ENGINE", "redis")])).unwrap();
        assert_eq!(s.sentinel_bin, PathBuf::from("redis-sentinel"));
        let e = SentinelConfig::from_vars(&with(&[("ENGINE", "redis8")])).unwrap_err();
        assert_eq!(e.to_string(), "invalid ENGINE=\"redis8\": expected redis or valkey",);
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

    /// Each binary reads exactly the variables the table says it reads:
    /// no variable is parsed without an entry, and no entry is forgotten.
    #[test]
    fn each_binary_reads_exactly_its_variables_of_the_table() {
        let vars = env(&[("REDIS_SENTINEL_BIN", "/bin/sh")]);
        for bin in Bin::ALL {
            let e = Env::new(bin, &vars);
            match bin {
                Bin::Redis => drop(RedisConfig::read(&e, vec![]).unwrap()),
                Bin::Sentinel => drop(SentinelConfig::read(&e).unwrap()),
                Bin::Watcher => drop(WatcherConfig::read(&e).unwrap()),
                Bin::Ctl => drop(CtlConfig::read(&e).unwrap()),
            }
            let asked: Vec<&str> = e.asked.borrow().iter().copied().collect();
            let mut listed: Vec<&str> = vars::VARS.iter().filter(|v| v.read_by(bin)).map(|v| v.name).collect();
            listed.sort_unstable();
            assert_eq!(asked, listed, "{}", bin.name());
        }
    }

    #[test]
    fn a_binary_ignores_variables_it_does_not_read() {
        let w = WatcherConfig::from_vars(&[("PORT0".into(), "abc".into()), ("DATA_DIR".into(), "".into())]).unwrap();
        assert_eq!(w.common.data_dir, None);
        let c = CtlConfig::from_vars(&[("ADMIN_PORT".into(), "http".into())]).unwrap();
        assert_eq!(c.common.admin_port, None);
    }

    #[test]
    fn odd_environments_do_not_panic() {
        let vars = vec![
            ("zk_hosts".to_string(), "a".to_string()),
            ("ZK_HOSTS".to_string(), "b".to_string()),
        ];
        assert_eq!(
            Env::new(Bin::Redis, &vars).set.get("ZK_HOSTS").map(String::as_str),
            Some("b")
        );
        // The Kelvin sign folds to `k` under Unicode lower-casing: the name
        // is not ours, so it is ignored instead of colliding with ZK_HOSTS.
        let vars = vec![
            ("ZK_HOSTS".to_string(), "b".to_string()),
            ("Z\u{212A}_HOSTS".to_string(), "c".to_string()),
            ("\u{212A}".to_string(), "d".to_string()),
        ];
        assert_eq!(
            Env::new(Bin::Redis, &vars).set.get("ZK_HOSTS").map(String::as_str),
            Some("b")
        );
    }

    /// Names close to ours: case variants, Unicode look-alikes that fold to
    /// ASCII (Kelvin sign, long s, dotted capital I), and arbitrary text.
    fn odd_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let ours: Vec<&'static str> = vars::VARS.iter().map(|v| v.name).collect();
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
