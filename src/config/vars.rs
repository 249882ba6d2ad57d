//! The one declared table of environment variables: name, which binaries
//! read it, its default, what it accepts and what it means.
//!
//! Everything else comes from this table: the parsing reads a variable
//! only through it (so a binary validates exactly the variables it reads),
//! the error message of a bad value is its `expected` text, `--help` lists
//! it, and the contract's variable tables are checked against it
//! (`contract_table`, tested below).

/// A binary of the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bin {
    /// `rzk-redis`.
    Redis,
    /// `rzk-sentinel`.
    Sentinel,
    /// `rzk-watcher`.
    Watcher,
    /// `rzkctl`.
    Ctl,
}

impl Bin {
    /// Every binary, in the order the docs list them.
    pub const ALL: [Bin; 4] = [Bin::Redis, Bin::Sentinel, Bin::Watcher, Bin::Ctl];

    /// The program name.
    pub fn name(self) -> &'static str {
        match self {
            Bin::Redis => "rzk-redis",
            Bin::Sentinel => "rzk-sentinel",
            Bin::Watcher => "rzk-watcher",
            Bin::Ctl => "rzkctl",
        }
    }

    /// What it is, in one line.
    pub fn about(self) -> &'static str {
        match self {
            Bin::Redis => "runs and supervises one redis-server of a redis-zk group",
            Bin::Sentinel => "runs and supervises one redis-sentinel of a redis-zk group",
            Bin::Watcher => "keeps <ZK_ROOT>/master equal to the master the Sentinels confirm",
            Bin::Ctl => "the operator's command for a redis-zk group",
        }
    }

    /// Its usage lines.
    pub fn usage(self) -> &'static str {
        match self {
            Bin::Redis => "rzk-redis [REDIS-SERVER ARGUMENT]...",
            Bin::Sentinel => "rzk-sentinel",
            Bin::Watcher => "rzk-watcher\n  rzk-watcher --check",
            Bin::Ctl => {
                "rzkctl status [--json]\n\
                 \x20 rzkctl switchover [--to IP:PORT] [--timeout SECONDS]\n\
                 \x20 rzkctl pause [--for DURATION] [--reason TEXT]\n\
                 \x20 rzkctl resume\n\
                 \x20 rzkctl history [--json]\n\
                 \x20 rzkctl tls on|off"
            }
        }
    }

    /// What the usage lines do not say.
    pub fn notes(self) -> &'static str {
        match self {
            Bin::Redis => {
                "Arguments go to redis-server after the generated config. Do not override port, bind or\n\
                 replicaof; --replica-priority N is applied once the server holds the data.\n"
            }
            Bin::Sentinel => "",
            Bin::Watcher => {
                "--check: a one-shot health check, exit 0 when the record names the master the Sentinels confirm.\n"
            }
            Bin::Ctl => {
                "pause: no failover and no role change until resume, or until --for (default 1h, at most 24h) ends.\n\
                 Exit 0 done or healthy, 1 failed or degraded (with the reason), 2 bad usage or configuration.\n"
            }
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

const R: u8 = Bin::Redis.bit();
const S: u8 = Bin::Sentinel.bit();
const W: u8 = Bin::Watcher.bit();
const C: u8 = Bin::Ctl.bit();
const LAUNCHERS: u8 = R | S | W;
const ALL: u8 = R | S | W | C;
const TASKS: u8 = R | S;

/// The contract section a variable is documented in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// 2.1: shared by the binaries.
    Shared,
    /// 2.2: where a task listens (`rzk-redis`, `rzk-sentinel`).
    Address,
    /// 2.3: `rzk-redis`.
    Redis,
    /// 2.4: `rzk-sentinel`.
    Sentinel,
    /// 2.5: `rzk-watcher`.
    Watcher,
    /// 2.6: TLS.
    Tls,
}

/// What an unset variable means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnset {
    /// Nothing: the feature is off, or the value absent.
    Nothing,
    /// This value, parsed exactly as if it had been set.
    Value(&'static str),
    /// A value per binary, parsed as if set.
    PerBin(&'static [(Bin, &'static str)]),
    /// Worked out at start, as described.
    Derived(&'static str),
}

/// One environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    /// Its name, matched without regard to ASCII case.
    pub name: &'static str,
    bins: u8,
    /// Where the contract documents it.
    pub section: Section,
    /// What an unset variable means.
    pub default: WhenUnset,
    /// What it accepts: also the `expected …` of a bad value's message.
    pub expected: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// Its value is never shown (`<redacted>`).
    pub secret: bool,
}

impl Var {
    /// Whether `bin` reads it.
    pub fn read_by(&self, bin: Bin) -> bool {
        self.bins & bin.bit() != 0
    }

    /// The default for `bin`, as a value to parse; `None` when unset
    /// means absent or is worked out at start.
    pub fn default_for(&self, bin: Bin) -> Option<&'static str> {
        match self.default {
            WhenUnset::Value(v) => Some(v),
            WhenUnset::PerBin(list) => list.iter().find(|(b, _)| *b == bin).map(|(_, v)| *v),
            WhenUnset::Nothing | WhenUnset::Derived(_) => None,
        }
    }

    /// The default as the docs show it.
    pub fn default_text(&self) -> String {
        match self.default {
            WhenUnset::Nothing => "unset".into(),
            WhenUnset::Value(v) => format!("`{v}`"),
            WhenUnset::PerBin(list) => list
                .iter()
                .map(|(b, v)| format!("`{v}` ({})", b.name()))
                .collect::<Vec<_>>()
                .join(", "),
            WhenUnset::Derived(d) => d.into(),
        }
    }
}

macro_rules! var {
    ($name:literal, $bins:expr, $section:ident, $default:expr, $expected:literal, $doc:literal $(, $secret:ident)?) => {
        Var {
            name: $name,
            bins: $bins,
            section: Section::$section,
            default: $default,
            expected: $expected,
            doc: $doc,
            secret: var!(@secret $($secret)?),
        }
    };
    (@secret secret) => { true };
    (@secret) => { false };
}

use WhenUnset::{Derived, Nothing as Unset, PerBin, Value};

/// Every variable any binary reads: its name, who reads it, its section of
/// the contract and what unset means; then what it accepts; then what it
/// does.
#[rustfmt::skip]
pub const VARS: &[Var] = &[
    var!("ZK_HOSTS", ALL, Shared, Value("localhost:2181"),
        "a comma-separated list of host[:port] with an optional /chroot suffix, e.g. zk1:2181,zk2:2181/dcos; over TLS every entry starts with tcp+tls://",
        "the ZooKeeper ensemble; a port defaults to 2181; every name stands for all its addresses (below), except over TLS, where a name is kept for the certificate check; the /chroot is created when missing"),
    var!("ZK_ROOT", ALL, Shared, Value("/redis"),
        "an absolute ZooKeeper path such as /redis, without a trailing slash",
        "the group's root, inside the chroot"),
    var!("ZK_SESSION_TIMEOUT_MS", ALL, Shared, Value("10000"),
        "milliseconds from 1000 to 600000",
        "ZooKeeper session timeout; also bounds each single ZooKeeper call"),
    var!("ZK_CONNECT_TIMEOUT_S", ALL, Shared, Value("30"),
        "a whole number of seconds from 1 to 86400",
        "at start, keep trying to connect (backoff 0.1 s doubling to 2 s) this long, then exit 1"),
    var!("ZK_DIGEST", ALL, Shared, Unset,
        "user:password with a non-empty user and password",
        "digest authentication; the znodes then get all rights for this user, read for everyone (section 1)", secret),
    var!("ZK_DIGEST_FILE", ALL, Shared, Unset,
        "a file this user can read, holding ZK_DIGEST in UTF-8",
        "`ZK_DIGEST` from a file, one trailing newline stripped (section 3)"),
    var!("MASTER_NAME", ALL, Shared, Value("mymaster"),
        "1 to 128 letters, digits, '.', '_' or '-'",
        "the Sentinel master name"),
    var!("REDIS_PASSWORD", ALL, Shared, Unset,
        "a non-empty password on one line, or leave it unset",
        "password of Redis and Sentinel (section 3)", secret),
    var!("REDIS_PASSWORD_FILE", ALL, Shared, Unset,
        "a file this user can read, holding REDIS_PASSWORD in UTF-8",
        "`REDIS_PASSWORD` from a file, one trailing newline stripped (section 3)"),
    var!("DATA_DIR", TASKS, Shared, Derived("the working directory; **must be set** when started as root"),
        "a directory (it is created when missing)",
        "working directory of the child and home of the generated `redis.conf` / `sentinel.conf`; a launcher started as root hands it to the `redis` user (section 7)"),
    var!("LOG_FORMAT", ALL, Shared, Value("text"),
        "text or json",
        "`json`: one JSON object per line on stderr"),
    var!("RUST_LOG", ALL, Shared, Derived("`info` (`rzkctl`: `warn`), the ZooKeeper client's own messages from `warn`"),
        "a tracing filter such as info or redis_zk=debug",
        "log filter: a level, or `target=level` pairs"),
    var!("ADMIN_PORT", LAUNCHERS, Shared, Unset,
        "a TCP port from 1 to 65535, or $PORT0 to $PORT9 naming a port Marathon assigned",
        "serve the admin HTTP API (section 9) on this port; unset opens no port"),
    var!("ENGINE", TASKS, Shared, Value("redis"),
        "redis or valkey",
        "the engine the task runs when `REDIS_SERVER_BIN` / `REDIS_SENTINEL_BIN` are unset: `valkey` runs `valkey-server` / `valkey-sentinel`; the engine that answers is read from `INFO server` (section 9)"),
    var!("TLS_CERT_FILE", ALL, Tls, Unset,
        "a PEM file this user can read, holding the certificate (then any intermediates)",
        "TLS on every Redis and Sentinel link (section 11); set with `TLS_KEY_FILE` and `TLS_CA_CERT_FILE`, or none of them; the certificate must carry the task's announce address as a subjectAltName, and also serves as its client identity"),
    var!("TLS_KEY_FILE", ALL, Tls, Unset,
        "a PEM file this user can read, holding the private key of TLS_CERT_FILE",
        "the key of `TLS_CERT_FILE`; a file that others can read is warned about"),
    var!("TLS_CA_CERT_FILE", ALL, Tls, Unset,
        "a PEM file this user can read, holding the CA certificate(s)",
        "the CA that signs every task's certificate: peers are checked against it"),
    var!("TLS_AUTH_CLIENTS", TASKS, Tls, Value("yes"),
        "yes, optional or no",
        "whether the servers require a client certificate the CA signs (Redis's `tls-auth-clients`)"),
    var!("TLS_TRANSITION", ALL, Tls, Value("no"),
        "yes or no; yes needs the three TLS files",
        "`yes` while a running group moves between plain text and TLS: the task speaks what `<root>/tls` says (`rzkctl tls on` or `off`), plain text until it says `on`, and its admin API answers HTTP and HTTPS"),
    var!("ZK_TLS_CA_CERT_FILE", ALL, Tls, Derived("`TLS_CA_CERT_FILE`"),
        "a PEM file this user can read, holding the CA certificate(s) of the ZooKeeper servers",
        "checks the ZooKeeper servers when `ZK_HOSTS` names them as `tcp+tls://host:port`"),
    var!("ZK_TLS_CERT_FILE", ALL, Tls, Derived("`TLS_CERT_FILE`"),
        "a PEM file this user can read, holding a client certificate",
        "the identity shown to ZooKeeper over TLS, for servers that require client authentication; set with `ZK_TLS_KEY_FILE`"),
    var!("ZK_TLS_KEY_FILE", ALL, Tls, Derived("`TLS_KEY_FILE`"),
        "a PEM file this user can read, holding the private key of ZK_TLS_CERT_FILE",
        "the key of `ZK_TLS_CERT_FILE`"),
    var!("NET_IFACE", TASKS, Address, Derived("the default route's interface"),
        "a network interface name such as eth0 (or unset, for the default route's interface)",
        "the interface whose IPv4 address is the task's bind address; without a default route, exit 2"),
    var!("BIND_IP", TASKS, Address, Unset,
        "an IPv4 address literal such as 10.0.3.7",
        "explicit bind address; wins over `NET_IFACE`"),
    var!("PORT0", TASKS, Address, PerBin(&[(Bin::Redis, "6379"), (Bin::Sentinel, "26379")]),
        "a TCP port from 1 to 65535",
        "the port the child listens on; Marathon sets it"),
    var!("ANNOUNCE_IP", TASKS, Address, Derived("the bind address"),
        "an IPv4 address literal",
        "the address peers must use (NAT, bridge networking)"),
    var!("ANNOUNCE_PORT", TASKS, Address, Derived("`PORT0`"),
        "a TCP port from 1 to 65535",
        "the port peers must use"),
    var!("REDIS_SERVER_BIN", R, Redis, Derived("`redis-server`, `valkey-server` with `ENGINE=valkey`"),
        "an executable redis-server, by path or on PATH",
        "the server to run; checked at start"),
    var!("TAKEOVER_GRACE_S", R, Redis, Value("30"),
        "a whole number of seconds from 0 to 86400",
        "how long a launcher keeps re-checking before it takes over a group whose master is lost and that no Sentinel failed over (6.1)"),
    var!("SHUTDOWN_FAILOVER_TIMEOUT_S", R, Redis, Value("20"),
        "a whole number of seconds from 1 to 86400",
        "on SIGTERM, the most time a master spends handing over before it stops its server anyway; keep it below Marathon's `taskKillGracePeriodSeconds`"),
    var!("READY_MAX_LAG_S", R, Redis, Value("10"),
        "a whole number of seconds from 1 to 86400",
        "the most seconds since a replica last heard from its master for `/ready` to answer 200"),
    var!("PERSISTENCE", R, Redis, Value("none"),
        "none or aof",
        "what the server keeps on disk (section 7)"),
    var!("FENCE_AFTER_MS", R, Redis, Value("3000"),
        "0 (never fence) or milliseconds from 500 to 600000",
        "the longest a master takes writes without its Sentinels renewing its lease (section 8)"),
    var!("NOFAILOVER", R, Redis, Value("false"),
        "true or false",
        "true: this server is never promoted (Patroni's `nofailover`): `replica-priority 0` whatever the arguments say, no bootstrap or takeover as master, and `rzkctl switchover --to` refuses it"),
    var!("REDIS_SENTINEL_BIN", S, Sentinel, Derived("`redis-sentinel`, `valkey-sentinel` with `ENGINE=valkey`"),
        "an executable redis-sentinel, by path or on PATH",
        "the Sentinel to run; checked at start"),
    var!("SENTINEL_QUORUM", S, Sentinel, Value("2"),
        "a whole number from 1 to 100",
        "`sentinel monitor … <quorum>`"),
    var!("SENTINEL_DOWN_AFTER_MS", S, Sentinel, Value("5000"),
        "milliseconds from 100 to 3600000",
        "`down-after-milliseconds`; below 2000 is accepted with a warning"),
    var!("SENTINEL_FAILOVER_TIMEOUT_MS", S, Sentinel, Value("60000"),
        "milliseconds from 1000 to 86400000",
        "`failover-timeout`"),
    var!("SENTINEL_PARALLEL_SYNCS", S, Sentinel, Value("1"),
        "a whole number from 1 to 100",
        "`parallel-syncs`"),
    var!("MASTER_WAIT_TIMEOUT_S", S, Sentinel, Value("60"),
        "a whole number of seconds from 1 to 86400",
        "how long to wait for a live master at start before exiting 1"),
    var!("RECONCILE_INTERVAL_S", W, Watcher, Value("5"),
        "a whole number of seconds from 1 to 86400",
        "how often the record is compared with the Sentinels' view"),
];

/// The entry of `name`. Every name the parser asks for is in the table
/// (a unit test reads every variable of every binary).
pub fn var(name: &str) -> &'static Var {
    VARS.iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the table of variables"))
}

/// `--help` of `bin`: what it is, its usage, and every variable it reads
/// with its default.
pub fn help(bin: Bin) -> String {
    let mut out = format!(
        "{} {}: {}\n\nUsage:\n  {}\n  {} --help | --version\n\n{}{}Environment (default in brackets; docs/contract.md section 2):\n",
        bin.name(),
        env!("CARGO_PKG_VERSION"),
        bin.about(),
        bin.usage(),
        bin.name(),
        bin.notes(),
        if bin.notes().is_empty() { "" } else { "\n" },
    );
    for v in VARS.iter().filter(|v| v.read_by(bin)) {
        let default = match v.default_for(bin) {
            Some(d) => d.to_string(),
            None => v.default_text().replace(['`', '*'], ""),
        };
        out.push_str(&format!("  {} [{default}]\n      {}\n", v.name, v.doc.replace('`', "")));
    }
    out
}

/// `--version` of `bin`.
pub fn version(bin: Bin) -> String {
    format!("{} {}\n", bin.name(), env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's table of `section`, exactly as `docs/contract.md`
    /// must show it.
    fn contract_table(section: Section) -> String {
        let mut out = String::from("| variable | read by | default | accepted | meaning |\n|---|---|---|---|---|\n");
        for v in VARS.iter().filter(|v| v.section == section) {
            let readers: Vec<&str> = Bin::ALL.iter().filter(|b| v.read_by(**b)).map(|b| b.name()).collect();
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                v.name,
                readers.join(", "),
                v.default_text(),
                v.expected,
                v.doc
            ));
        }
        out
    }

    #[test]
    fn names_are_unique_and_upper_case() {
        for (i, v) in VARS.iter().enumerate() {
            assert_eq!(v.name, v.name.to_ascii_uppercase());
            assert!(VARS[i + 1..].iter().all(|w| w.name != v.name), "{} twice", v.name);
            assert!(v.bins != 0, "{} is read by nobody", v.name);
        }
    }

    /// The contract's variable tables are this table: a change to either
    /// that is not made to the other fails here, with the table to paste.
    #[test]
    fn the_contract_shows_this_table() {
        let contract = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/contract.md")).unwrap();
        for s in [
            Section::Shared,
            Section::Address,
            Section::Redis,
            Section::Sentinel,
            Section::Watcher,
            Section::Tls,
        ] {
            let table = contract_table(s);
            assert!(
                contract.contains(&table),
                "docs/contract.md must show the {s:?} variables as:\n\n{table}"
            );
        }
    }

    #[test]
    fn help_lists_every_variable_a_binary_reads() {
        let h = help(Bin::Redis);
        assert!(h.starts_with("rzk-redis "), "{h}");
        assert!(
            h.contains("  PORT0 [6379]") && h.contains("  FENCE_AFTER_MS [3000]"),
            "{h}"
        );
        assert!(!h.contains("RECONCILE_INTERVAL_S"), "{h}");
        assert!(help(Bin::Sentinel).contains("  PORT0 [26379]"));
        let ctl = help(Bin::Ctl);
        assert!(ctl.contains("switchover") && !ctl.contains("ADMIN_PORT"), "{ctl}");
    }
}
