//! Every reply the binaries read from Redis and Sentinel, parsed: `ROLE`,
//! `INFO`, `SENTINEL MASTER`, `SENTINEL REPLICAS`, `SENTINEL SENTINELS`,
//! `get-master-addr-by-name`, `CONFIG GET`, and the pub/sub events.
//!
//! One parser per reply, and no I/O: the network's answers are untrusted,
//! so every parser is total (a surprising reply is `None` or an `Err`,
//! never a panic) and unit-tested here without a server. [`crate::probe`]
//! sends the commands; [`crate::observe`] puts the answers into a
//! [`crate::snapshot::Snapshot`].

use redis::Value;

use crate::model::{Endpoint, Engine, EngineKind, Role};

/// The text of a string-like reply element.
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// A field/value reply such as `SENTINEL MASTER <name>` or `CONFIG GET`:
/// a flat array of alternating names and values (RESP2) or a map (RESP3).
pub fn fields(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|kv| Some((value_text(&kv[0])?, value_text(&kv[1])?)))
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((value_text(k)?, value_text(v)?)))
            .collect(),
        _ => vec![],
    }
}

/// The value of `key` in field/value pairs.
pub fn field<'a>(f: &'a [(String, String)], key: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// `INFO` text as `field:value` pairs, headers and blanks skipped.
pub fn parse_info(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A `ROLE` reply.
pub fn parse_role(v: &Value) -> Result<Role, String> {
    let Value::Array(items) = v else {
        return Err(format!("ROLE reply is not an array: {v:?}"));
    };
    let text = |i: usize| items.get(i).and_then(value_text);
    let kind = text(0).ok_or("empty ROLE reply")?;
    match kind.as_str() {
        "master" => Ok(Role::Master),
        "sentinel" => Ok(Role::Sentinel),
        "slave" | "replica" => {
            let host = text(1).ok_or("ROLE slave reply without master host")?;
            let port = text(2).ok_or("ROLE slave reply without master port")?;
            let state = text(3).unwrap_or_default();
            let master = Endpoint::parse(&format!("{host} {port}")).map_err(|e| format!("ROLE slave reply: {e}"))?;
            Ok(Role::Replica { master, state })
        }
        other => Err(format!("unknown role {other:?}")),
    }
}

/// A `SENTINEL get-master-addr-by-name` reply: `[ip, port]`, or nil.
pub fn parse_master_addr(v: &Value) -> Result<Option<Endpoint>, String> {
    match v {
        Value::Nil => Ok(None),
        Value::Array(items) if items.len() == 2 => {
            let host = value_text(&items[0]).ok_or("bad host in reply")?;
            let port = value_text(&items[1]).ok_or("bad port in reply")?;
            Endpoint::parse(&format!("{host} {port}"))
                .map(Some)
                .map_err(|e| format!("get-master-addr-by-name: {e}"))
        }
        other => Err(format!("unexpected get-master-addr-by-name reply {other:?}")),
    }
}

/// One `slaveN:ip=…,port=…,state=online,offset=…,lag=…` line of a master.
/// Unknown keys (Valkey adds `type=`) are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLine {
    /// Its announced address.
    pub addr: Endpoint,
    /// `state=online`: the full sync is done, the stream flows.
    pub online: bool,
    /// How much of the master's stream it acknowledged.
    pub offset: i64,
}

impl ReplicaLine {
    /// Parses the value of a `slaveN` field; `None` for anything else.
    pub fn parse(v: &str) -> Option<ReplicaLine> {
        let field = |k: &str| v.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='));
        let addr = Endpoint::parse(&format!("{} {}", field("ip")?, field("port")?)).ok()?;
        Some(ReplicaLine {
            addr,
            online: field("state")? == "online",
            offset: field("offset")?.parse().ok()?,
        })
    }
}

/// What one server's `INFO server replication` says: the one parser of
/// that reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// The server, as its peers name it.
    pub addr: Endpoint,
    /// Master, or replica of whom.
    pub role: Role,
    /// Replica: `master_link_status:up`.
    pub link_up: bool,
    /// Replica: `master_sync_in_progress:1`.
    pub sync_in_progress: bool,
    /// Master: `master_repl_offset`; replica: `slave_repl_offset`.
    pub offset: i64,
    /// Replica: `slave_priority` (0 until its first full sync is done).
    pub priority: u32,
    /// Replica: `master_last_io_seconds_ago` (absent while the link is down).
    pub last_io_s: Option<u64>,
    /// Master: its `slaveN` lines.
    pub replicas: Vec<ReplicaLine>,
    /// `uptime_in_seconds`, when the server section was asked for.
    pub uptime_s: Option<u64>,
    /// `master_replid`: the history its data belongs to (a replica shows
    /// its master's).
    pub replid: String,
    /// `master_replid2`: the history before its last promotion.
    pub replid2: String,
    /// `second_repl_offset`: `replid2` holds up to this offset less one
    /// (-1 when there is none).
    pub second_offset: i64,
    /// The replication backlog, when one is kept: the offsets
    /// (`repl_backlog_first_byte_offset` to that plus `repl_backlog_histlen`
    /// − 1) a replica can still be sent from it.
    pub backlog: Option<(i64, i64)>,
    /// The engine and version from the server section (`None` when it was
    /// not asked for or names neither engine).
    pub engine: Option<Engine>,
}

/// The engine of an `INFO server` section. Valkey says `server_name:valkey`
/// and its own `valkey_version` (its `redis_version` is frozen at 7.2.4);
/// Redis has no `server_name` and says `redis_version`.
pub fn engine_of_info(info: &[(String, String)]) -> Option<Engine> {
    let get = |k: &str| field(info, k).filter(|v| !v.is_empty());
    let (kind, version) = match get("server_name") {
        Some("valkey") => (EngineKind::Valkey, get("valkey_version")?),
        Some(_) => return None,
        None => (EngineKind::Redis, get("redis_version")?),
    };
    Some(Engine {
        kind,
        version: version.to_string(),
    })
}

/// The engine of a server program's `--version` line: `Redis server
/// v=7.0.15 sha=…` or `Valkey server v=8.0.1 sha=…`.
pub fn engine_of_version_line(text: &str) -> Option<Engine> {
    let line = text.lines().next()?;
    let mut words = line.split_whitespace();
    let kind = match (words.next()?, words.next()?) {
        ("Redis", "server") => EngineKind::Redis,
        ("Valkey", "server") => EngineKind::Valkey,
        _ => return None,
    };
    let version = words.find_map(|w| w.strip_prefix("v="))?;
    (!version.is_empty()).then(|| Engine {
        kind,
        version: version.to_string(),
    })
}

impl ServerState {
    /// Reads `INFO` fields; `None` when they are not a master's or a
    /// replica's.
    pub fn from_info(addr: &Endpoint, info: &[(String, String)]) -> Option<ServerState> {
        let get = |k: &str| field(info, k);
        let (role, offset_key) = match get("role")? {
            "master" => (Role::Master, "master_repl_offset"),
            "slave" => {
                let master = Endpoint::parse(&format!("{} {}", get("master_host")?, get("master_port")?)).ok()?;
                let state = get("master_link_status").unwrap_or("").to_string();
                (Role::Replica { master, state }, "slave_repl_offset")
            }
            _ => return None,
        };
        let replicas = info
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("slave")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter_map(|(_, v)| ReplicaLine::parse(v))
            .collect();
        Some(ServerState {
            addr: addr.clone(),
            link_up: get("master_link_status") == Some("up"),
            sync_in_progress: get("master_sync_in_progress") == Some("1"),
            offset: get(offset_key).and_then(|o| o.parse().ok()).unwrap_or(0),
            priority: get("slave_priority").and_then(|p| p.parse().ok()).unwrap_or(0),
            last_io_s: get("master_last_io_seconds_ago").and_then(|s| s.parse().ok()),
            replicas,
            uptime_s: get("uptime_in_seconds").and_then(|s| s.parse().ok()),
            replid: get("master_replid").unwrap_or("").to_string(),
            replid2: get("master_replid2").unwrap_or("").to_string(),
            second_offset: get("second_repl_offset").and_then(|s| s.parse().ok()).unwrap_or(-1),
            backlog: match (
                get("repl_backlog_active"),
                get("repl_backlog_first_byte_offset").and_then(|s| s.parse::<i64>().ok()),
                get("repl_backlog_histlen").and_then(|s| s.parse::<i64>().ok()),
            ) {
                (Some("1"), Some(first), Some(len)) if len > 0 => Some((first, first + len - 1)),
                _ => None,
            },
            engine: engine_of_info(info),
            role,
        })
    }

    /// Whether it answers as a master.
    pub fn is_master(&self) -> bool {
        self.role == Role::Master
    }

    /// The server holds a complete copy: it is the master, or a replica
    /// whose link is up with no sync in progress (Redis reports `up` only
    /// after a full sync has loaded).
    pub fn has_the_data(&self) -> bool {
        self.is_master() || (self.link_up && !self.sync_in_progress)
    }
}

/// One Sentinel's answer to `SENTINEL get-master-addr-by-name <name>` and
/// `SENTINEL MASTER <name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelAnswer {
    /// The Sentinel asked.
    pub sentinel: Endpoint,
    /// The master it names: `get-master-addr-by-name`, which during a
    /// failover names the promoted replica as soon as it answers as master
    /// (`SENTINEL MASTER` keeps the old address until the failover ends).
    pub master: Endpoint,
    /// The master it monitors, as `SENTINEL MASTER` says: during a
    /// failover, the one being failed over.
    pub monitored: Endpoint,
    /// The configuration epoch of that view.
    pub epoch: u64,
    /// `num-other-sentinels`: the peers it counts, ghosts included.
    pub peers: usize,
    /// `num-slaves`: the replicas it knows.
    pub replicas: usize,
    /// A failover is in progress (`failover_in_progress` and friends).
    pub failover: bool,
    /// That failover chose a replica to promote: its `failover-state` is
    /// past `select_slave` (or unknown). Before that it is only waiting to
    /// be elected, or about to find no replica it could promote.
    pub promoting: bool,
    /// It sees the master down (`s_down` or `o_down`).
    pub master_down: bool,
    /// How many of its peers it sees down (`SENTINEL SENTINELS`, flag
    /// `s_down`). Asked only of a Sentinel that counts more peers than are
    /// registered; `None` when not asked or when it did not answer.
    pub dead_peers: Option<usize>,
    /// What it needs to judge the master, and how far it got: the fence's
    /// lease is read from these ([`crate::policy::fence`]).
    pub timing: Timing,
}

/// A Sentinel's settings for the master and the state of its pings to it,
/// from `SENTINEL MASTER`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// `quorum`.
    pub quorum: usize,
    /// `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `failover-timeout`.
    pub failover_timeout_ms: u64,
    /// `last-ping-sent`: how long its oldest unanswered ping has waited
    /// (0: none waits).
    pub ping_pending_ms: u64,
    /// `last-ok-ping-reply`: how long ago the master last answered a ping
    /// well.
    pub last_ok_ms: u64,
    /// Its link to the master is down (flag `disconnected`).
    pub disconnected: bool,
}

impl SentinelAnswer {
    /// Reads a `SENTINEL MASTER` reply's fields, with the master `named` by
    /// `get-master-addr-by-name` when it answered (else the fields' own
    /// address); `None` without ip/port.
    pub fn from_fields(sentinel: &Endpoint, f: &[(String, String)], named: Option<Endpoint>) -> Option<SentinelAnswer> {
        let num = |k: &str| field(f, k).and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        let ms = |k: &str| field(f, k).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        let own = Endpoint::parse(&format!("{} {}", field(f, "ip")?, field(f, "port")?)).ok()?;
        let flags = field(f, "flags").unwrap_or("");
        let timing = Timing {
            quorum: num("quorum"),
            down_after_ms: ms("down-after-milliseconds"),
            failover_timeout_ms: ms("failover-timeout"),
            ping_pending_ms: ms("last-ping-sent"),
            last_ok_ms: ms("last-ok-ping-reply"),
            disconnected: flags.split(',').any(|f| f == "disconnected"),
        };
        let failover = flags.contains("failover");
        Some(SentinelAnswer {
            sentinel: sentinel.clone(),
            master: named.unwrap_or_else(|| own.clone()),
            monitored: own,
            epoch: field(f, "config-epoch").and_then(|e| e.parse().ok()).unwrap_or(0),
            peers: num("num-other-sentinels"),
            replicas: num("num-slaves"),
            failover,
            promoting: failover
                && !matches!(
                    field(f, "failover-state"),
                    // Redis 7 and Valkey 8 say `select_slave`; a later Valkey
                    // may say `select_replica`, as its source now does.
                    Some("none" | "wait_start" | "select_slave" | "select_replica")
                ),
            master_down: flags.split(',').any(|f| f == "s_down" || f == "o_down"),
            dead_peers: None,
            timing,
        })
    }
}

/// A replica as a Sentinel sees it (`SENTINEL REPLICAS <name>`): the view
/// it picks a replica to promote from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelReplica {
    pub addr: Endpoint,
    /// `slave-priority` as the Sentinel last read it.
    pub priority: u32,
    /// `master-link-status:ok`, and no `s_down`, `o_down` or `disconnected`
    /// flag.
    pub healthy: bool,
}

impl SentinelReplica {
    /// Reads one entry of a `SENTINEL REPLICAS` reply.
    pub fn from_fields(f: &[(String, String)]) -> Option<SentinelReplica> {
        let addr = Endpoint::parse(&format!("{} {}", field(f, "ip")?, field(f, "port")?)).ok()?;
        let down = field(f, "flags")
            .unwrap_or("")
            .split(',')
            .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
        Some(SentinelReplica {
            addr,
            priority: field(f, "slave-priority")?.parse().ok()?,
            healthy: !down && field(f, "master-link-status") == Some("ok"),
        })
    }

    /// A whole `SENTINEL REPLICAS` reply; malformed entries are left out.
    pub fn list(v: &Value) -> Option<Vec<SentinelReplica>> {
        let Value::Array(items) = v else { return None };
        Some(items.iter().filter_map(|i| Self::from_fields(&fields(i))).collect())
    }
}

/// How many peers in a `SENTINEL SENTINELS` reply are flagged `s_down` or
/// `o_down`; `None` when the reply is not a list of peers with flags.
pub fn dead_peers(reply: &Value) -> Option<usize> {
    let Value::Array(peers) = reply else { return None };
    peers.iter().try_fold(0, |dead, p| {
        let down = field(&fields(p), "flags")?
            .split(',')
            .any(|x| x == "s_down" || x == "o_down");
        Some(dead + usize::from(down))
    })
}

/// The value of a one-parameter `CONFIG GET` reply.
pub fn config_value(v: &Value) -> Option<String> {
    fields(v).into_iter().next().map(|(_, v)| v)
}

/// A `+switch-master` event: Sentinel promoted `new` in place of `old`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchMaster {
    /// The Sentinel master name.
    pub name: String,
    pub old: Endpoint,
    pub new: Endpoint,
}

/// Parses a `+switch-master` payload, `<name> <old-ip> <old-port> <new-ip>
/// <new-port>`: ASCII, exactly five fields separated by single spaces.
pub fn parse_switch_master(payload: &[u8]) -> Result<SwitchMaster, String> {
    let text = std::str::from_utf8(payload)
        .ok()
        .filter(|t| t.is_ascii() && t.len() <= 600)
        .ok_or_else(|| format!("not short ASCII text ({} bytes)", payload.len()))?;
    let fields: Vec<&str> = text.split(' ').collect();
    let [name, old_ip, old_port, new_ip, new_port] = fields.as_slice() else {
        return Err(format!(
            "expected 5 space-separated fields, got {}: {text:?}",
            fields.len()
        ));
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("bad master name in {text:?}"));
    }
    let ep = |ip: &str, port: &str| Endpoint::parse(&format!("{ip} {port}")).map_err(|e| format!("{e} in {text:?}"));
    Ok(SwitchMaster {
        name: name.to_string(),
        old: ep(old_ip, old_port)?,
        new: ep(new_ip, new_port)?,
    })
}

/// The Sentinel events a master's launcher follows: the steps of a
/// failover, from its first sign to its end.
pub const FAILOVER_EVENTS: &[&str] = &[
    "+try-failover",
    "+elected-leader",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "+failover-state-reconf-slaves",
    "+failover-end",
    "+failover-end-for-timeout",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "+switch-master",
];

/// What a failover event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverStep {
    /// The failover of the master started, or went a step further before
    /// any replica was promoted.
    Started,
    /// `promoted` answers as master now (`+promoted-slave`, `+switch-master`).
    Promoted(Endpoint),
    /// It was given up (`-failover-abort-…`).
    Aborted,
    /// It ended (`+failover-end…`).
    Ended,
}

/// A failover event of a master: which master (name and address) and how
/// far its failover got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverEvent {
    /// The Sentinel master name.
    pub name: String,
    pub master: Endpoint,
    pub step: FailoverStep,
}

/// Parses an event published on `channel` (one of [`FAILOVER_EVENTS`]):
/// `master <name> <ip> <port>`, or `<type> <instance> <ip> <port> @ <name>
/// <master-ip> <master-port>` for an event about a replica, or the
/// `+switch-master` payload. `None` for anything else.
pub fn parse_failover_event(channel: &str, payload: &[u8]) -> Option<FailoverEvent> {
    if channel == "+switch-master" {
        let e = parse_switch_master(payload).ok()?;
        return Some(FailoverEvent {
            name: e.name,
            master: e.old,
            step: FailoverStep::Promoted(e.new),
        });
    }
    let text = std::str::from_utf8(payload)
        .ok()
        .filter(|t| t.is_ascii() && t.len() <= 600)?;
    let f: Vec<&str> = text.split(' ').collect();
    let ep = |ip: &str, port: &str| Endpoint::parse(&format!("{ip} {port}")).ok();
    let (name, master, instance) = match f.as_slice() {
        ["master", name, ip, port] => (*name, ep(ip, port)?, None),
        [_, _, ip, port, "@", name, mip, mport] => (*name, ep(mip, mport)?, Some(ep(ip, port)?)),
        _ => return None,
    };
    let step = match channel {
        "+promoted-slave" => FailoverStep::Promoted(instance?),
        c if c.starts_with("-failover-abort") => FailoverStep::Aborted,
        c if c.starts_with("+failover-end") => FailoverStep::Ended,
        c if FAILOVER_EVENTS.contains(&c) => FailoverStep::Started,
        _ => return None,
    };
    Some(FailoverEvent {
        name: name.to_string(),
        master,
        step,
    })
}

/// A Sentinel's `+new-epoch` payload: its new current epoch.
pub fn parse_new_epoch(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.trim().parse().ok()
}

/// One command of a replication stream: its arguments, and its bytes as
/// they were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommand<'a> {
    pub args: Vec<&'a [u8]>,
    /// The command as it came, to be written out again verbatim.
    pub raw: &'a [u8],
}

/// Splits a replication stream (what a master sends its replicas: each
/// command an array of bulk strings) into its commands. A stream that does
/// not end on a command's end, or anything else in it, is an `Err` naming
/// the byte where it went wrong. (The `redis` crate parses replies; this
/// is the stream, whose end must be exact.)
pub fn stream_commands(stream: &[u8]) -> Result<Vec<StreamCommand<'_>>, String> {
    fn line(s: &[u8], at: usize, kind: u8) -> Result<(usize, usize), String> {
        let end = s[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| format!("byte {at}: a line without its end"))?;
        let text = &s[at..at + end];
        if text.first() != Some(&kind) {
            return Err(format!("byte {at}: expected '{}'", kind as char));
        }
        let n = std::str::from_utf8(&text[1..])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("byte {at}: not a length"))?;
        Ok((n, at + end + 2))
    }
    let mut out = vec![];
    let mut at = 0;
    while at < stream.len() {
        let (n, mut next) = line(stream, at, b'*')?;
        let mut args = vec![];
        for _ in 0..n {
            let (len, data) = line(stream, next, b'$')?;
            let end = data.saturating_add(len);
            if stream.get(end..end.saturating_add(2)) != Some(b"\r\n".as_slice()) {
                return Err(format!("byte {data}: a bulk string cut short"));
            }
            args.push(&stream[data..end]);
            next = end + 2;
        }
        out.push(StreamCommand {
            args,
            raw: &stream[at..next],
        });
        at = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn ep(n: u16) -> Endpoint {
        Endpoint::new(format!("10.0.0.{n}"), 6379)
    }

    #[test]
    fn roles() {
        let m = Value::Array(vec![bulk("master"), Value::Int(10), Value::Array(vec![])]);
        assert_eq!(parse_role(&m), Ok(Role::Master));
        let r = Value::Array(vec![
            bulk("slave"),
            bulk("10.0.0.1"),
            Value::Int(6379),
            bulk("connected"),
            Value::Int(5),
        ]);
        assert_eq!(
            parse_role(&r),
            Ok(Role::Replica {
                master: Endpoint::new("10.0.0.1", 6379),
                state: "connected".into()
            })
        );
        let s = Value::Array(vec![bulk("sentinel"), Value::Array(vec![bulk("mymaster")])]);
        assert_eq!(parse_role(&s), Ok(Role::Sentinel));
        for bad in [
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![bulk("slave")]),
            Value::Array(vec![bulk("boss")]),
        ] {
            assert!(parse_role(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn master_addr() {
        assert_eq!(parse_master_addr(&Value::Nil), Ok(None));
        let ok = Value::Array(vec![bulk("127.0.0.2"), bulk("6380")]);
        assert_eq!(parse_master_addr(&ok), Ok(Some(Endpoint::new("127.0.0.2", 6380))));
        assert!(parse_master_addr(&Value::Array(vec![bulk("x y"), bulk("1")])).is_err());
        assert!(parse_master_addr(&Value::Int(3)).is_err());
    }

    #[test]
    fn field_replies() {
        let v = Value::Array(vec![
            bulk("name"),
            bulk("mymaster"),
            bulk("num-other-sentinels"),
            bulk("2"),
            bulk("odd"),
        ]);
        assert_eq!(
            fields(&v),
            vec![
                ("name".into(), "mymaster".into()),
                ("num-other-sentinels".into(), "2".into())
            ]
        );
        assert!(fields(&Value::Nil).is_empty());
        let cfg = Value::Array(vec![bulk("min-replicas-to-write"), bulk("0")]);
        assert_eq!(config_value(&cfg).as_deref(), Some("0"));
        assert_eq!(config_value(&Value::Array(vec![])), None);
    }

    #[test]
    fn info_lines() {
        let t = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n\r\n";
        assert_eq!(
            parse_info(t),
            vec![
                ("role".into(), "slave".into()),
                ("master_link_status".into(), "up".into())
            ]
        );
    }

    #[test]
    fn server_states() {
        let addr = ep(2);
        let r = ServerState::from_info(
            &addr,
            &kv(&[
                ("uptime_in_seconds", "42"),
                ("role", "slave"),
                ("master_host", "10.0.0.1"),
                ("master_port", "6379"),
                ("master_link_status", "up"),
                ("master_sync_in_progress", "0"),
                ("slave_repl_offset", "1234"),
                ("slave_priority", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(
            r.role,
            Role::Replica {
                master: ep(1),
                state: "up".into()
            }
        );
        assert_eq!(
            (r.link_up, r.sync_in_progress, r.offset, r.priority, r.uptime_s),
            (true, false, 1234, 100, Some(42))
        );
        assert!(r.has_the_data());
        let m = ServerState::from_info(
            &addr,
            &kv(&[
                ("role", "master"),
                ("master_repl_offset", "99"),
                (
                    "slave0",
                    "ip=10.0.0.3,port=6379,state=online,offset=99,lag=0,type=replica",
                ),
                ("slave1", "ip=10.0.0.4,port=6379,state=wait_bgsave,offset=0,lag=0"),
                ("slave_read_repl_offset", "5"),
                // Not a replica line, though it would parse as one.
                ("slave", "ip=10.0.0.5,port=6379,state=online,offset=99,lag=0"),
            ]),
        )
        .unwrap();
        assert!(m.is_master() && m.offset == 99 && m.has_the_data());
        assert_eq!(m.replicas.len(), 2);
        assert!(m.replicas[0].online && !m.replicas[1].online);
        assert_eq!(ServerState::from_info(&addr, &kv(&[("role", "sentinel")])), None);
        assert_eq!(
            ServerState::from_info(
                &addr,
                &kv(&[("role", "slave"), ("master_host", "x y"), ("master_port", "1")])
            ),
            None
        );
        let syncing = ServerState::from_info(
            &addr,
            &kv(&[
                ("role", "slave"),
                ("master_host", "10.0.0.1"),
                ("master_port", "6379"),
                ("master_link_status", "down"),
                ("master_sync_in_progress", "1"),
            ]),
        )
        .unwrap();
        assert!(!syncing.has_the_data());
    }

    #[test]
    fn engines() {
        // Valkey 8.0.1's and Redis 7.0.15's INFO server, as they answer.
        let valkey = parse_info(
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\nserver_mode:standalone\r\n",
        );
        assert_eq!(
            engine_of_info(&valkey),
            Some(Engine {
                kind: EngineKind::Valkey,
                version: "8.0.1".into()
            })
        );
        let redis = parse_info("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n");
        assert_eq!(
            engine_of_info(&redis).map(|e| e.to_string()).as_deref(),
            Some("redis 7.0.15")
        );
        assert_eq!(
            engine_of_info(&kv(&[("server_name", "keydb"), ("redis_version", "6")])),
            None
        );
        assert_eq!(engine_of_info(&kv(&[("server_name", "valkey")])), None);
        assert_eq!(engine_of_info(&kv(&[("role", "master")])), None);
        assert_eq!(
            engine_of_version_line("Valkey server v=8.0.1 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=39f7\n"),
            Some(Engine {
                kind: EngineKind::Valkey,
                version: "8.0.1".into()
            })
        );
        assert_eq!(
            engine_of_version_line("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64\n")
                .map(|e| (e.kind, e.version)),
            Some((EngineKind::Redis, "7.0.15".to_string()))
        );
        for bad in [
            "",
            "sh: 1: no",
            "Redis server",
            "Redis server v=",
            "KeyDB server v=6.3.4",
        ] {
            assert_eq!(engine_of_version_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn replica_lines() {
        assert_eq!(
            ReplicaLine::parse("ip=10.0.0.2,port=6380,state=online,offset=1234,lag=0"),
            Some(ReplicaLine {
                addr: Endpoint::new("10.0.0.2", 6380),
                online: true,
                offset: 1234
            })
        );
        assert_eq!(ReplicaLine::parse("garbage"), None);
        assert_eq!(ReplicaLine::parse("ip=x y,port=1,state=online,offset=1"), None);
    }

    #[test]
    fn sentinel_answers() {
        let s = Endpoint::new("10.0.0.9", 26379);
        let fields = kv(&[
            ("ip", "10.0.0.1"),
            ("port", "6379"),
            ("flags", "master,s_down,failover_in_progress"),
            ("failover-state", "wait_promotion"),
            ("config-epoch", "7"),
            ("num-other-sentinels", "4"),
            ("num-slaves", "2"),
            ("quorum", "2"),
            ("down-after-milliseconds", "1000"),
            ("failover-timeout", "5000"),
            ("last-ping-sent", "12"),
            ("last-ok-ping-reply", "506"),
        ]);
        let a = SentinelAnswer::from_fields(&s, &fields, None).unwrap();
        assert_eq!(
            a.timing,
            Timing {
                quorum: 2,
                down_after_ms: 1000,
                failover_timeout_ms: 5000,
                ping_pending_ms: 12,
                last_ok_ms: 506,
                disconnected: false
            }
        );
        assert_eq!(
            (
                a.epoch,
                a.peers,
                a.replicas,
                a.failover,
                a.promoting,
                a.master_down,
                a.master
            ),
            (7, 4, 2, true, true, true, ep(1))
        );
        // Waiting to be elected, or selecting a replica: nothing chosen.
        for state in ["wait_start", "select_slave"] {
            let mut waiting = fields.clone();
            waiting.retain(|(k, _)| k != "failover-state");
            waiting.push(("failover-state".into(), state.into()));
            let w = SentinelAnswer::from_fields(&s, &waiting, None).unwrap();
            assert!(w.failover && !w.promoting, "{state}");
        }
        // A failover whose state is not said: taken as promoting.
        let mut unsaid = fields.clone();
        unsaid.retain(|(k, _)| k != "failover-state");
        assert!(SentinelAnswer::from_fields(&s, &unsaid, None).unwrap().promoting);
        // During a failover, get-master-addr-by-name names the promoted one.
        let during = SentinelAnswer::from_fields(&s, &fields, Some(ep(2))).unwrap();
        assert_eq!(during.master, ep(2));
        let calm = SentinelAnswer::from_fields(
            &s,
            &kv(&[("ip", "10.0.0.1"), ("port", "6379"), ("flags", "master")]),
            None,
        );
        assert_eq!(calm.map(|a| (a.failover, a.master_down)), Some((false, false)));
        assert_eq!(SentinelAnswer::from_fields(&s, &kv(&[("ip", "10.0.0.1")]), None), None);
    }

    #[test]
    fn sentinel_replicas() {
        let f = kv(&[
            ("name", "10.0.0.2:6380"),
            ("ip", "10.0.0.2"),
            ("port", "6380"),
            ("flags", "slave"),
            ("master-link-status", "ok"),
            ("slave-priority", "100"),
        ]);
        assert_eq!(
            SentinelReplica::from_fields(&f),
            Some(SentinelReplica {
                addr: Endpoint::new("10.0.0.2", 6380),
                priority: 100,
                healthy: true
            })
        );
        let mut down = f.clone();
        down[3].1 = "s_down,slave,disconnected".into();
        assert!(!SentinelReplica::from_fields(&down).unwrap().healthy);
        let mut link = f.clone();
        link[4].1 = "err".into();
        assert!(!SentinelReplica::from_fields(&link).unwrap().healthy);
        assert_eq!(SentinelReplica::from_fields(&f[..5]), None, "no priority, no verdict");
        assert_eq!(SentinelReplica::list(&Value::Nil), None);
    }

    #[test]
    fn counts_the_peers_a_sentinel_sees_down() {
        let peer = |flags: &str| Value::Array(["name", "abc", "ip", "10.0.0.8", "flags", flags].map(bulk).to_vec());
        let reply = Value::Array(vec![
            peer("s_down,sentinel,disconnected"),
            peer("sentinel"),
            peer("o_down,sentinel"),
        ]);
        assert_eq!(dead_peers(&reply), Some(2));
        assert_eq!(dead_peers(&Value::Array(vec![])), Some(0));
        // Garbage is "unknown", never a count.
        assert_eq!(dead_peers(&Value::Nil), None);
        assert_eq!(dead_peers(&Value::Array(vec![Value::Int(3)])), None);
    }

    #[test]
    fn switch_master_events() {
        let e = parse_switch_master(b"mymaster 127.0.0.2 20001 127.0.0.3 20002").unwrap();
        assert_eq!(
            (e.name.as_str(), e.old, e.new),
            (
                "mymaster",
                Endpoint::new("127.0.0.2", 20001),
                Endpoint::new("127.0.0.3", 20002)
            )
        );
        for bad in [
            &b""[..],
            b"mymaster",
            b"mymaster 1.2.3.4 1 5.6.7.8",
            b"mymaster 1.2.3.4 1 5.6.7.8 2 extra",
            b"mymaster 1.2.3.4 1 5.6.7.8 70000",
            b"mymaster 1.2.3.4 1 5.6.7.8 0",
            b"mymaster  1.2.3.4 1 5.6.7.8 2",
            b"mymaster 1.2.3.4 1 5.6.7.8 2\n",
            b"my\x01master 1.2.3.4 1 5.6.7.8 2",
            b"mymaster 1.2.3.4 1 not_a_host 2",
            b"\xff\xfe 1.2.3.4 1 5.6.7.8 2",
        ] {
            assert!(parse_switch_master(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse_switch_master(&vec![b'a'; 100_000]).is_err());
        // A cheap deterministic sweep over noise: never a panic.
        let alphabet = b"m 1.2:\n\xff0";
        let mut buf = Vec::new();
        for n in 0..100_000u32 {
            buf.clear();
            let mut k = n;
            while k > 0 {
                buf.push(alphabet[(k % alphabet.len() as u32) as usize]);
                k /= alphabet.len() as u32;
            }
            let _ = parse_switch_master(&buf);
        }
    }

    #[test]
    fn failover_events() {
        let m = Endpoint::new("127.0.0.2", 6379);
        let ev = |c: &str, p: &str| parse_failover_event(c, p.as_bytes());
        assert_eq!(
            ev("+try-failover", "master mymaster 127.0.0.2 6379"),
            Some(FailoverEvent {
                name: "mymaster".into(),
                master: m.clone(),
                step: FailoverStep::Started
            })
        );
        let selected = ev(
            "+selected-slave",
            "slave 127.0.0.3:6380 127.0.0.3 6380 @ mymaster 127.0.0.2 6379",
        )
        .unwrap();
        assert_eq!((selected.master, selected.step), (m.clone(), FailoverStep::Started));
        let promoted = ev(
            "+promoted-slave",
            "slave 127.0.0.3:6380 127.0.0.3 6380 @ mymaster 127.0.0.2 6379",
        )
        .unwrap();
        assert_eq!(promoted.step, FailoverStep::Promoted(Endpoint::new("127.0.0.3", 6380)));
        let switched = ev("+switch-master", "mymaster 127.0.0.2 6379 127.0.0.3 6380").unwrap();
        assert_eq!(
            (switched.master, switched.step),
            (m.clone(), FailoverStep::Promoted(Endpoint::new("127.0.0.3", 6380)))
        );
        assert_eq!(
            ev("-failover-abort-no-good-slave", "master mymaster 127.0.0.2 6379")
                .unwrap()
                .step,
            FailoverStep::Aborted
        );
        assert_eq!(
            ev("+failover-end", "master mymaster 127.0.0.2 6379").unwrap().step,
            FailoverStep::Ended
        );
        for (c, p) in [
            ("+sdown", "master mymaster 127.0.0.2 6379"),
            ("+try-failover", "master mymaster 127.0.0.2"),
            ("+try-failover", "garbage"),
            ("+promoted-slave", "master mymaster 127.0.0.2 6379"),
            ("+selected-slave", "slave x 1.2.3.4 99999 @ mymaster 127.0.0.2 6379"),
        ] {
            assert_eq!(ev(c, p), None, "{c} {p}");
        }
    }

    #[test]
    fn new_epochs() {
        assert_eq!(parse_new_epoch(b"7"), Some(7));
        assert_eq!(parse_new_epoch(b"master m 1.2.3.4 5"), None);
    }

    #[test]
    fn replication_streams() {
        let s = b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv\n\r\n";
        let c = stream_commands(s).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].args, [b"SET".as_slice(), b"k", b"v\n"]);
        assert_eq!([c[0].raw, c[1].raw].concat(), s);
        assert_eq!(stream_commands(b"").unwrap(), vec![]);
        assert!(stream_commands(&s[..s.len() - 1]).is_err(), "cut short");
        assert!(stream_commands(b"+OK\r\n").is_err());
        assert!(stream_commands(b"*1\r\n$9\r\nPING\r\n").is_err());
        assert!(stream_commands(b"*x\r\n").is_err());
        assert!(stream_commands(b"*99999999999\r\n$18446744073709551615\r\n").is_err());
    }
}
