//! Short, bounded questions to Redis and Sentinel: PING, ROLE, INFO,
//! `SENTINEL get-master-addr-by-name`.
//!
//! A probe opens its own connection and closes it, so a hung or dead peer
//! costs at most the probe timeout and never poisons a shared connection.
//! Every answer from the network is parsed defensively: a surprising reply is
//! an error value, never a panic.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};
use tokio::time::timeout;

use crate::model::Secret;
use crate::model::{Endpoint, Role};

/// Why a probe failed. Every message names the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No connection (refused, unreachable, AUTH failed) or none in time.
    #[error("{addr}: {why}")]
    Connect {
        /// The server.
        addr: Endpoint,
        /// What happened.
        why: String,
    },
    /// The server answered the command with an error.
    #[error("{addr}: {command} failed: {why}")]
    Refused {
        /// The server.
        addr: Endpoint,
        /// The command's name.
        command: String,
        /// The error reply.
        why: String,
    },
    /// No reply within the probe timeout.
    #[error("{addr}: no reply to {command} within {timeout:?}")]
    Timeout {
        /// The server.
        addr: Endpoint,
        /// The command's name.
        command: String,
        /// The probe timeout.
        timeout: Duration,
    },
    /// A reply of a shape the parser does not accept.
    #[error("{addr}: {why}")]
    Reply {
        /// The server.
        addr: Endpoint,
        /// What was wrong with it.
        why: String,
    },
}

impl ProbeError {
    /// A Sentinel's answer that it monitors no master of that name: not a
    /// failure of the Sentinel, just no opinion.
    pub fn is_unknown_master(&self) -> bool {
        matches!(self, ProbeError::Refused { why, .. } if why.contains("No such master"))
    }
}

/// Lets callers that report errors as text use `?` on probes.
impl From<ProbeError> for String {
    fn from(e: ProbeError) -> String {
        e.to_string()
    }
}

/// How long one probe (connect plus reply) may take: every launcher uses
/// this one timeout, so a dead peer costs the same second everywhere.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Probe settings: the password (`REDIS_PASSWORD`) and a per-call timeout.
#[derive(Debug, Clone)]
pub struct Probe {
    password: Option<Secret>,
    timeout: Duration,
}

impl Probe {
    /// A probe with the given password and timeout for connect + reply.
    pub fn new(password: Option<Secret>, timeout: Duration) -> Self {
        Probe { password, timeout }
    }

    fn client(&self, ep: &Endpoint) -> Result<redis::Client, ProbeError> {
        let connect = |why: String| ProbeError::Connect { addr: ep.clone(), why };
        let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(p) = &self.password {
            settings = settings.set_password(p.expose());
        }
        let info = ConnectionAddr::Tcp(ep.host.clone(), ep.port)
            .into_connection_info()
            .map_err(|e| connect(e.to_string()))?
            .set_redis_settings(settings);
        redis::Client::open(info).map_err(|e| connect(e.to_string()))
    }

    /// Opens a pub/sub connection (AUTH included), for following events.
    pub async fn pubsub(&self, ep: &Endpoint) -> Result<redis::aio::PubSub, ProbeError> {
        let client = self.client(ep)?;
        let why = match timeout(self.timeout, client.get_async_pubsub()).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no pub/sub connection within {:?}", self.timeout),
        };
        Err(ProbeError::Connect { addr: ep.clone(), why })
    }

    /// Opens a connection (AUTH included when a password is set).
    pub async fn connect(&self, ep: &Endpoint) -> Result<MultiplexedConnection, ProbeError> {
        let client = self.client(ep)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let why = match timeout(
            self.timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no connection within {:?}", self.timeout),
        };
        Err(ProbeError::Connect { addr: ep.clone(), why })
    }

    /// Runs one command on a fresh connection.
    pub async fn cmd(&self, ep: &Endpoint, args: &[&str]) -> Result<Value, ProbeError> {
        let mut conn = self.connect(ep).await?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        match timeout(self.timeout, cmd.query_async::<Value>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ProbeError::Refused {
                addr: ep.clone(),
                command: args[0].to_string(),
                why: e.to_string(),
            }),
            Err(_) => Err(ProbeError::Timeout {
                addr: ep.clone(),
                command: args[0].to_string(),
                timeout: self.timeout,
            }),
        }
    }

    fn reply(ep: &Endpoint, why: impl Into<String>) -> ProbeError {
        ProbeError::Reply {
            addr: ep.clone(),
            why: why.into(),
        }
    }

    /// PING; `Ok` only for PONG.
    pub async fn ping(&self, ep: &Endpoint) -> Result<(), ProbeError> {
        match self.cmd(ep, &["PING"]).await? {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            other => Err(Self::reply(ep, format!("unexpected PING reply {other:?}"))),
        }
    }

    /// ROLE, parsed.
    pub async fn role(&self, ep: &Endpoint) -> Result<Role, ProbeError> {
        let v = self.cmd(ep, &["ROLE"]).await?;
        parse_role(&v).map_err(|e| Self::reply(ep, e))
    }

    /// True only when `ep` answers `ROLE` as a master (the quick look; a
    /// snapshot reads the same from `INFO replication`).
    pub async fn is_master(&self, ep: &Endpoint) -> bool {
        matches!(self.role(ep).await, Ok(Role::Master))
    }

    /// `SENTINEL get-master-addr-by-name <name>` on a Sentinel: `None` when it
    /// does not know the name.
    pub async fn sentinel_master(&self, sentinel: &Endpoint, name: &str) -> Result<Option<Endpoint>, ProbeError> {
        let v = self
            .cmd(sentinel, &["SENTINEL", "get-master-addr-by-name", name])
            .await?;
        parse_master_addr(&v).map_err(|e| Self::reply(sentinel, e))
    }

    /// `SENTINEL REPLICAS <name>`: the replicas as this Sentinel last saw
    /// them (the view it would pick a replica from). Malformed entries are
    /// left out.
    pub async fn sentinel_replicas(
        &self,
        sentinel: &Endpoint,
        name: &str,
    ) -> Result<Vec<crate::model::SentinelReplica>, ProbeError> {
        let v = self.cmd(sentinel, &["SENTINEL", "REPLICAS", name]).await?;
        let Value::Array(items) = v else {
            return Err(Self::reply(sentinel, "SENTINEL REPLICAS reply is not an array"));
        };
        Ok(items
            .iter()
            .filter_map(|i| crate::model::SentinelReplica::from_fields(&fields(i)))
            .collect())
    }

    /// An `INFO <section>` reply as `field:value` pairs.
    pub async fn info(&self, ep: &Endpoint, section: &str) -> Result<Vec<(String, String)>, ProbeError> {
        let v = self.cmd(ep, &["INFO", section]).await?;
        let text = value_text(&v).ok_or_else(|| Self::reply(ep, "INFO reply is not text"))?;
        Ok(parse_info(&text))
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Parses a ROLE reply. Pure, so it is unit-tested without a server.
pub fn parse_role(v: &Value) -> Result<Role, String> {
    let Value::Array(items) = v else {
        return Err(format!("ROLE reply is not an array: {v:?}"));
    };
    let kind = items.first().and_then(value_text).ok_or("empty ROLE reply")?;
    match kind.as_str() {
        "master" => Ok(Role::Master),
        "sentinel" => Ok(Role::Sentinel),
        "slave" | "replica" => {
            let host = items
                .get(1)
                .and_then(value_text)
                .ok_or("ROLE slave reply without master host")?;
            let port = items
                .get(2)
                .and_then(value_text)
                .ok_or("ROLE slave reply without master port")?;
            let state = items.get(3).and_then(value_text).unwrap_or_default();
            let master = Endpoint::parse(&format!("{host} {port}")).map_err(|e| format!("ROLE slave reply: {e}"))?;
            Ok(Role::Replica { master, state })
        }
        other => Err(format!("unknown role {other:?}")),
    }
}

/// Parses a `get-master-addr-by-name` reply: `[ip, port]` or nil.
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

/// Parses a field/value reply such as `SENTINEL MASTER <name>`: a flat
/// array of alternating names and values (RESP2) or a map (RESP3).
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

/// Parses INFO text into `field:value` pairs, skipping headers and blanks.
pub fn parse_info(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
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
}
