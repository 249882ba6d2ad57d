//! The shared types every layer speaks: addresses in the `"<ip> <port>"`
//! wire format, this task's identity, a server's role and the master record.
//! No dependencies, so that configuration, ZooKeeper and Redis access,
//! observation and policies can all use them without depending on each
//! other.
//!
//! Everything peers learn about a task (the master record, `/nodes`,
//! `/sentinels`, what Redis and Sentinel announce) is one [`Endpoint`], so that
//! the same task is named the same way everywhere. Data read from ZooKeeper
//! is untrusted; [`Endpoint::parse`] is strict and never panics.

use std::fmt;
use std::net::Ipv4Addr;

/// A host and a port, written as `"<host> <port>"`: ASCII, one space, no
/// newline. Clients parse `/redis/master` in this format, so it never changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// An IPv4 literal or a hostname.
    pub host: String,
    /// 1..=65535.
    pub port: u16,
}

/// Why a record could not be used. Logged with the znode path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not ASCII text of the expected shape.
    #[error("expected \"<ipv4-or-hostname> <port>\", got {0}")]
    Shape(String),
    /// The host part is neither an IPv4 literal nor a hostname.
    #[error("bad host {0:?}")]
    Host(String),
    /// The port is not a number from 1 to 65535.
    #[error("bad port {0:?} (expected 1-65535)")]
    Port(String),
}

/// Longest record we bother to parse; anything longer is garbage.
const MAX_RECORD: usize = 300;

impl Endpoint {
    /// Builds an endpoint from parts already known to be valid.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    /// Parses `"<ipv4-or-hostname> <1-65535>"` exactly: one space, no
    /// surrounding whitespace, no newline.
    pub fn parse_bytes(data: &[u8]) -> Result<Endpoint, ParseError> {
        match std::str::from_utf8(data) {
            Ok(s) if !s.is_empty() && s.len() <= MAX_RECORD && s.is_ascii() => Self::parse(s),
            _ if data.len() > 64 => Err(ParseError::Shape(format!("{} bytes", data.len()))),
            _ => Err(ParseError::Shape(format!("{:?}", String::from_utf8_lossy(data)))),
        }
    }

    /// Same as [`Endpoint::parse_bytes`] for text.
    pub fn parse(s: &str) -> Result<Endpoint, ParseError> {
        let mut parts = s.split(' ');
        let (Some(host), Some(port), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::Shape(format!("{s:?}")));
        };
        if !is_valid_host(host) {
            return Err(ParseError::Host(host.into()));
        }
        let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        match port.parse::<u16>() {
            Ok(p) if port_ok && p > 0 => Ok(Endpoint::new(host, p)),
            _ => Err(ParseError::Port(port.into())),
        }
    }

    /// The record bytes, as written to ZooKeeper.
    pub fn to_record(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.host, self.port)
    }
}

/// True for an IPv4 literal or an RFC 1123 hostname. A dotted name whose last
/// label is numeric must be a valid IPv4 literal, so `1.2.3.999` is rejected
/// rather than taken for a hostname.
pub fn is_valid_host(h: &str) -> bool {
    if h.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = h.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.iter().all(label_ok) && !labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Where this task listens and what it tells peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The address the child binds (besides 127.0.0.1).
    pub bind: Ipv4Addr,
    /// The port the child listens on.
    pub port: u16,
    /// What peers use: `ANNOUNCE_*`, else the bind address and port. It is
    /// registered in ZooKeeper and given to Redis/Sentinel as announce-ip/port.
    pub announce: Endpoint,
}

impl Identity {
    /// The child's listener on the task address, where peers and clients
    /// connect (and the local endpoint `rzk-sentinel`'s own probes use).
    pub fn local(&self) -> Endpoint {
        Endpoint::new(self.bind.to_string(), self.port)
    }

    /// The child's listener on 127.0.0.1, which it has besides the task
    /// address. `rzk-redis`'s own connections to its server come in there,
    /// so that the server can tell them from clients: a master that is
    /// demoted drops the clients on the task address, never its launcher's.
    pub fn loopback(&self) -> Endpoint {
        Endpoint::new(Ipv4Addr::LOCALHOST.to_string(), self.port)
    }
}

/// What `ROLE` says about a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Master,
    /// A replica, with the master it follows and its link state
    /// (`connect`, `connecting`, `sync`, `connected`).
    Replica {
        master: Endpoint,
        state: String,
    },
    Sentinel,
}

/// Which server software a node runs: Redis, or Valkey (the Linux
/// Foundation's fork of Redis 7.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EngineKind {
    Redis,
    Valkey,
}

impl EngineKind {
    /// The name the views, the metrics and `ENGINE` use.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Redis => "redis",
            EngineKind::Valkey => "valkey",
        }
    }

    /// The server program of this engine, found on `PATH`.
    pub fn server_program(self) -> &'static str {
        match self {
            EngineKind::Redis => "redis-server",
            EngineKind::Valkey => "valkey-server",
        }
    }

    /// The Sentinel program of this engine, found on `PATH`.
    pub fn sentinel_program(self) -> &'static str {
        match self {
            EngineKind::Redis => "redis-sentinel",
            EngineKind::Valkey => "valkey-sentinel",
        }
    }
}

/// The engine and version a server runs, as its `INFO server` (or its
/// program's `--version`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub kind: EngineKind,
    /// Its own version (Valkey's `valkey_version`, not the frozen
    /// `redis_version:7.2.4`), e.g. `8.0.1`.
    pub version: String,
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.version)
    }
}

/// What `<root>/master` holds, as far as a decision is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// No node: a fresh group.
    Missing,
    /// A node whose data is not a valid endpoint. Treated as "no usable
    /// record"; the version lets a writer replace it with a CAS.
    Unusable {
        /// znode data version.
        version: i32,
    },
    /// A well-formed record.
    Valid {
        /// The master it names.
        master: Endpoint,
        /// znode data version, for CAS writes.
        version: i32,
    },
}

impl Record {
    /// The master named by a valid record.
    pub fn master(&self) -> Option<&Endpoint> {
        match self {
            Record::Valid { master, .. } => Some(master),
            _ => None,
        }
    }
}

/// One master candidate and what the probes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub addr: Endpoint,
    /// How many Sentinels named it (0 for the record or a registered node).
    pub votes: usize,
    /// The newest Sentinel configuration epoch naming it. After a failover
    /// the promoted master has a higher epoch than the old one, even while
    /// some Sentinels have not heard of the switch yet.
    pub epoch: u64,
    /// It answered `ROLE` with `master`.
    pub live_master: bool,
}

/// A secret (a password or a digest credential). Its `Debug` output is
/// redacted so that no `{:?}` of a config struct can leak it into a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from the environment.
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself; call sites that need it are few and easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `<root>/switchover`: a planned change of master that was asked for
/// (Patroni's `/failover` key), by `rzkctl switchover` or by a master's
/// launcher handing over on SIGTERM. The master's launcher carries it out
/// and writes the `result`; every replica's launcher reads it to set its
/// own server's priority. JSON; untrusted, like everything read from
/// ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Intent {
    /// Tells one request from the next.
    pub id: String,
    /// The master it is addressed to: only that master's launcher carries
    /// it out (the new master must not take it for itself).
    pub from: Endpoint,
    /// The replica that should (or, `exclusive`, must) become master.
    pub to: Option<Endpoint>,
    /// Only `to` may be promoted: every other replica is held back.
    pub exclusive: bool,
    /// Until when, in milliseconds since the Unix epoch. After it the
    /// intent is dropped, and every held-back priority comes back.
    pub deadline_ms: u64,
    /// Who asked (for the log and `rzkctl status`).
    pub by: String,
    /// How it ended, written by the master's launcher:
    /// `done <ip> <port>` or `failed: <why>`.
    pub result: Option<String>,
    /// What asked for it, for the history: `switchover` (`rzkctl`, the
    /// default), `hand-over` or `crash`.
    #[serde(default)]
    pub cause: Cause,
}

impl Intent {
    /// Parses the node's data.
    pub fn parse(data: &[u8]) -> Result<Intent, String> {
        from_json(data)
    }

    /// The node's data.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Still to be carried out at `now_ms` (Unix milliseconds).
    pub fn live(&self, now_ms: u64) -> bool {
        self.result.is_none() && now_ms < self.deadline_ms
    }
}

/// `<root>/pause`: maintenance mode, set by `rzkctl pause` (Patroni's
/// pause). While it is live no launcher changes a server's role, and every
/// replica is held at `replica-priority 0`, so no Sentinel fails the
/// master over. It ends by itself at `until_ms`. JSON; untrusted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pause {
    /// Until when, in milliseconds since the Unix epoch.
    pub until_ms: u64,
    /// Who asked.
    pub by: String,
    /// Why, as the operator said.
    pub reason: String,
}

impl Pause {
    /// How long a pause lasts unless `--for` says otherwise.
    pub const DEFAULT: std::time::Duration = std::time::Duration::from_secs(3600);
    /// The longest pause: a forgotten one cannot leave the group
    /// unprotected for longer.
    pub const LONGEST: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

    /// Parses the node's data; a pause longer than [`Pause::LONGEST`] from
    /// `now_ms` is cut to it (a node written by hand, or by a wrong clock).
    pub fn parse(data: &[u8], now_ms: u64) -> Result<Pause, String> {
        let mut p: Pause = from_json(data)?;
        p.until_ms = p.until_ms.min(now_ms + Self::LONGEST.as_millis() as u64);
        Ok(p)
    }

    /// The node's data.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// In force at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms
    }
}

/// Why the master changed, as `<root>/history` records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// A fresh group's first master.
    Bootstrap,
    /// A launcher took a lost group over (no Sentinel replaced its master).
    Takeover,
    /// The Sentinels failed the master over on their own (or an operator
    /// forced it at a Sentinel).
    Failover,
    /// `rzkctl switchover` (an intent that names no cause).
    #[default]
    Switchover,
    /// The master's task was stopped (SIGTERM) and handed the role over.
    HandOver,
    /// The master's server died and its launcher asked for the failover.
    Crash,
    /// The record named a server that was no longer the master, and a
    /// launcher corrected it.
    Repair,
}

impl Cause {
    /// Its name in the history and in `rzkctl history`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Bootstrap => "bootstrap",
            Cause::Takeover => "takeover",
            Cause::Failover => "failover",
            Cause::Switchover => "switchover",
            Cause::HandOver => "hand-over",
            Cause::Crash => "crash",
            Cause::Repair => "repair",
        }
    }
}

/// One change of master in `<root>/history`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// When the record was written (Unix milliseconds).
    pub at_ms: u64,
    /// The master the record named before (`null` for the first).
    pub old: Option<Endpoint>,
    /// The master it names now.
    pub new: Endpoint,
    /// The Sentinels' configuration epoch of the new master, when they
    /// named it.
    pub epoch: Option<u64>,
    /// Why.
    pub cause: Cause,
}

/// `<root>/history`: the last [`History::KEPT`] changes of master, oldest
/// first, appended in the same transaction as the record's write. JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct History(pub Vec<Change>);

impl History {
    /// How many changes are kept.
    pub const KEPT: usize = 100;

    /// Parses the node's data; garbage (or a node written by hand) starts
    /// a new history rather than blocking the record's writes.
    pub fn parse(data: &[u8]) -> History {
        serde_json::from_slice(data).unwrap_or_default()
    }

    /// The node's data.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Appends `c`, dropping the oldest beyond [`History::KEPT`].
    pub fn push(&mut self, c: Change) {
        self.0.push(c);
        let extra = self.0.len().saturating_sub(Self::KEPT);
        self.0.drain(..extra);
    }
}

/// What one launcher can speak to its peers, registered by every launcher
/// under `<root>/speakers` for as long as it runs, so that `rzkctl tls`
/// can refuse a switch some task could not follow (contract section 11).
/// JSON; untrusted, like everything read from ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Speaker {
    /// `rzk-redis`, `rzk-sentinel` or `rzk-watcher`.
    pub kind: String,
    /// Its server's or Sentinel's address, as registered under `/nodes` or
    /// `/sentinels`; none for the watcher.
    pub addr: Option<Endpoint>,
    /// It can speak plain text: no TLS files, or `TLS_TRANSITION=yes`.
    pub plain: bool,
    /// It can speak TLS: it has the TLS files.
    pub tls: bool,
}

impl Speaker {
    /// Parses the node's data.
    pub fn parse(data: &[u8]) -> Result<Speaker, String> {
        from_json(data)
    }

    /// The node's data.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether it can follow its group to TLS (`on`) or to plain text.
    pub fn can_speak(&self, on: bool) -> bool {
        if on { self.tls } else { self.plain }
    }
}

/// Parses a JSON node's data (an intent, a pause, a speaker); anything
/// longer than 4 KiB is garbage.
fn from_json<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, String> {
    if data.len() > 4096 {
        return Err(format!("{} bytes", data.len()));
    }
    serde_json::from_slice(data).map_err(|e| e.to_string())
}

/// Milliseconds since the Unix epoch: the clock intents' deadlines use,
/// since the processes of a group share no other.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A Unix time in milliseconds as an operator reads it (UTC, RFC 3339).
pub fn show_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let text = String::deserialize(d)?;
        Endpoint::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where in `DATA_DIR` a launcher keeps the copy of data a full sync is
/// about to replace, when it may hold writes the new master never had.
pub const KEPT_DIR: &str = ".rzk-diverged";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_keeps_the_last_hundred_and_shrugs_off_garbage() {
        let mut h = History::parse(b"not json");
        assert!(h.0.is_empty());
        for i in 0..150 {
            h.push(Change {
                at_ms: i,
                old: None,
                new: Endpoint::new("10.0.0.1", 6379),
                epoch: Some(i),
                cause: Cause::HandOver,
            });
        }
        assert_eq!(h.0.len(), History::KEPT);
        assert_eq!(h.0[0].at_ms, 50);
        let back = History::parse(&h.to_bytes());
        assert_eq!(back, h);
        assert!(
            String::from_utf8(h.to_bytes())
                .unwrap()
                .contains("\"cause\":\"hand-over\"")
        );
        // An intent written before causes existed is a switchover.
        let old = br#"{"id":"x","from":"10.0.0.1 6379","to":null,"exclusive":false,"deadline_ms":1,"by":"rzkctl","result":null}"#;
        assert_eq!(Intent::parse(old).unwrap().cause, Cause::Switchover);
    }

    #[test]
    fn parses_good_records() {
        assert_eq!(Endpoint::parse("10.0.3.7 31457"), Ok(Endpoint::new("10.0.3.7", 31457)));
        assert_eq!(
            Endpoint::parse("redis-1.example.com 6379"),
            Ok(Endpoint::new("redis-1.example.com", 6379))
        );
        assert_eq!(Endpoint::parse("h 1").unwrap().to_string(), "h 1");
        let e = Endpoint::new("127.0.0.5", 40000);
        assert_eq!(Endpoint::parse_bytes(&e.to_record()), Ok(e));
    }

    #[test]
    fn rejects_garbage() {
        let big = vec![b'x'; 10 * 1024];
        let bad: &[&[u8]] = &[
            b"",
            b"hello",
            b"1.2.3.4 99999",
            b"1.2.3.4 0",
            b"1.2.3.4 +80",
            b"1.2.3.4  80",
            b"1.2.3.4 80\n",
            b" 1.2.3.4 80",
            b"1.2.3.4 80 x",
            b"1.2.3.999 80",
            b"-bad 80",
            b"a_b 80",
            b"\xff\xfe 80",
            &big,
        ];
        for b in bad {
            assert!(
                Endpoint::parse_bytes(b).is_err(),
                "{:?} should be rejected",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic sweep over short byte strings around the format.
        let alphabet = b"0123456789. :-ax\n\xff";
        let mut buf = Vec::new();
        for n in 0..200_000u32 {
            buf.clear();
            let mut k = n;
            while k > 0 {
                buf.push(alphabet[(k % alphabet.len() as u32) as usize]);
                k /= alphabet.len() as u32;
            }
            let _ = Endpoint::parse_bytes(&buf);
        }
    }

    #[test]
    fn intents_round_trip_and_garbage_is_refused() {
        let i = Intent {
            id: "a1".into(),
            from: Endpoint::new("10.0.0.1", 6379),
            to: Some(Endpoint::new("10.0.0.2", 6379)),
            exclusive: true,
            deadline_ms: 2000,
            by: "rzkctl".into(),
            result: None,
            cause: Cause::Switchover,
        };
        assert_eq!(Intent::parse(&i.to_bytes()), Ok(i.clone()));
        assert!(
            String::from_utf8(i.to_bytes())
                .unwrap()
                .contains(r#""to":"10.0.0.2 6379""#)
        );
        assert!(i.live(1999) && !i.live(2000));
        let done = Intent {
            result: Some("done 10.0.0.2 6379".into()),
            ..i
        };
        assert!(!done.live(0));
        for bad in [&b""[..], b"{}", b"null", br#"{"id":"x","from":"10.0.0.1 1","to":"bad host!","exclusive":false,"deadline_ms":1,"by":"","result":null}"#] {
            assert!(Intent::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(Intent::parse(&vec![b' '; 5000]).is_err());
    }
}
