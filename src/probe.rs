//! Short, bounded questions to Redis and Sentinel: PING, ROLE, INFO,
//! `SENTINEL …`, and pub/sub connections.
//!
//! A probe keeps its connection to each server for the next probe (a
//! process looks at the same servers every second, and over TLS a new
//! connection is a handshake for both sides). A connection is used by one
//! probe at a time and dropped at its first failure, so a hung or dead peer
//! costs at most the probe timeout; one its peer closed while it was kept is
//! replaced at once. The answers are parsed by [`crate::reply`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo, Value};
use tokio::time::{Instant, timeout};

use crate::config::Common;
use crate::model::Secret;
use crate::model::{Endpoint, Role};
use crate::reply::parse_role;
use crate::tls::Tls;

/// Why a probe failed. Every message names the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No connection (refused, unreachable, AUTH failed) or none in time.
    #[error("{addr}: {why}")]
    Connect {
        addr: Endpoint,
        why: String,
        /// The host answered that nothing listens on that port: the
        /// process is not running there (not a timeout, which could be a
        /// partition).
        refused: bool,
    },
    /// The server answered the command with an error.
    #[error("{addr}: {command} failed: {why}")]
    Refused {
        addr: Endpoint,
        /// The command's name.
        command: String,
        /// The error reply.
        why: String,
    },
    /// No reply within the probe timeout.
    #[error("{addr}: no reply to {command} within {timeout:?}")]
    Timeout {
        addr: Endpoint,
        /// The command's name.
        command: String,
        timeout: Duration,
    },
    /// A reply of a shape the parser does not accept.
    #[error("{addr}: {why}")]
    Reply { addr: Endpoint, why: String },
}

impl ProbeError {
    /// A Sentinel's answer that it monitors no master of that name: not a
    /// failure of the Sentinel, just no opinion.
    pub fn is_unknown_master(&self) -> bool {
        matches!(self, ProbeError::Refused { why, .. } if why.contains("No such master"))
    }

    /// Nothing listens on the port: the connection was refused.
    pub fn is_refused(&self) -> bool {
        matches!(self, ProbeError::Connect { refused: true, .. })
    }

    pub(crate) fn timeout(addr: &Endpoint, command: &str, timeout: Duration) -> ProbeError {
        ProbeError::Timeout {
            addr: addr.clone(),
            command: command.to_string(),
            timeout,
        }
    }
}

/// A connection, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Lets callers that report errors as text use `?` on probes.
impl From<ProbeError> for String {
    fn from(e: ProbeError) -> String {
        e.to_string()
    }
}

/// How long one probe (connect plus reply) may take: every launcher uses
/// this one timeout, so a dead peer costs the same second everywhere.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long a probe's TCP connect may take, within its timeout. A connect
/// takes one round trip, and a lost SYN is sent again only after a second,
/// past any probe's timeout, so waiting longer gains nothing: a server cut
/// off by a partition costs a look this much instead of the whole probe
/// timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// A connection not used for this long is closed: its server has left the
/// group, or is no longer looked at.
const KEEP_IDLE: Duration = Duration::from_secs(30);

/// Probe settings: the password (`REDIS_PASSWORD`), TLS (`TLS_*`) and a
/// per-call timeout; and the connections kept between probes, shared by
/// the probe's clones.
#[derive(Debug, Clone)]
pub struct Probe {
    password: Option<Secret>,
    tls: Option<Tls>,
    timeout: Duration,
    kept: Arc<Mutex<HashMap<Endpoint, Kept>>>,
}

/// A connection kept for the next probe of its server.
struct Kept {
    conn: MultiplexedConnection,
    /// What it speaks: `None` plain text, or the TLS set it was opened
    /// with. A probe that would speak otherwise opens a new one.
    speaks: Speaks,
    used: Instant,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("used", &self.used).finish_non_exhaustive()
    }
}

/// Whether a failed probe may run again on a new connection.
enum Sent {
    /// The first command failed on a dropped connection: most often one
    /// its server closed while it was kept, so the command never ran. If
    /// the server ran it and then closed the connection, a second run
    /// leaves every command the launchers send as one run would:
    /// `REPLICAOF`, `CONFIG SET`, `CLIENT PAUSE`/`UNPAUSE`/`KILL` and
    /// `SENTINEL RESET` are idempotent, and a second `SENTINEL FAILOVER` or
    /// `SENTINEL MONITOR` is refused (`INPROG`, a duplicated name) as a
    /// lost reply to the first was before.
    No,
    /// Anything else: the failure is the probe's answer.
    Maybe,
}

/// What a connection speaks: plain text, or TLS with this client set.
type Speaks = Option<Arc<rustls::ClientConfig>>;

fn same(a: &Speaks, b: &Speaks) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

impl Probe {
    /// A probe with the given password and timeout for connect + reply,
    /// over plain TCP.
    pub fn new(password: Option<Secret>, timeout: Duration) -> Self {
        Probe {
            password,
            tls: None,
            timeout,
            kept: Arc::default(),
        }
    }

    /// The same probe, over TLS with `tls` when it is set.
    pub fn with_tls(self, tls: Option<Tls>) -> Self {
        Probe { tls, ..self }
    }

    /// The probe of a binary: its password and TLS, and [`PROBE_TIMEOUT`].
    pub fn of(common: &Common) -> Self {
        Probe::new(common.password.clone(), PROBE_TIMEOUT).with_tls(common.tls.clone())
    }

    fn settings(&self) -> RedisConnectionInfo {
        let settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        match &self.password {
            Some(p) => settings.set_password(p.expose()),
            None => settings,
        }
    }

    /// The TLS set when the task speaks TLS now (see [`Tls::speaking`]).
    fn speaking(&self) -> Option<&Tls> {
        self.tls.as_ref().filter(|t| t.speaking())
    }

    /// What a new connection would speak now.
    fn speaks(&self) -> Speaks {
        self.speaking().map(|t| t.current().client.clone())
    }

    /// A connection to `ep`, over TLS when it is on: the server's
    /// certificate is checked against the CA and must carry `ep`'s host.
    /// The TCP connect is bounded by [`CONNECT_TIMEOUT`] (a name is looked
    /// up first, within the probe's own timeout).
    async fn stream(&self, ep: &Endpoint, speaks: Speaks) -> Result<Box<dyn Stream>, ProbeError> {
        let io = |e: std::io::Error| Self::io(ep, e);
        let within = CONNECT_TIMEOUT.min(self.timeout);
        let mut tried: Option<ProbeError> = None;
        let mut tcp = None;
        // Each address of the name in turn, as `TcpStream::connect` would.
        // Refused only when every address refused: a timeout may be a
        // partition, and a refused server counts as not running.
        for addr in tokio::net::lookup_host((ep.host.as_str(), ep.port)).await.map_err(io)? {
            let failed = match timeout(within, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(t)) => {
                    tcp = Some(t);
                    break;
                }
                Ok(Err(e)) => io(e),
                Err(_) => Self::unreachable(ep, format!("no TCP connection within {within:?}")),
            };
            if tried.as_ref().is_none_or(ProbeError::is_refused) {
                tried = Some(failed);
            }
        }
        let tcp = tcp.ok_or_else(|| tried.unwrap_or_else(|| Self::unreachable(ep, "the name has no address")))?;
        tcp.set_nodelay(true).map_err(io)?;
        let Some(client) = speaks else {
            return Ok(Box::new(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(ep.host.clone()).map_err(|e| Self::unreachable(ep, e))?;
        let tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| Self::unreachable(ep, format!("TLS: {e}")))?;
        Ok(Box::new(tls))
    }

    /// Opens a pub/sub connection (AUTH included), for following events.
    pub async fn pubsub(&self, ep: &Endpoint) -> Result<redis::aio::PubSub, ProbeError> {
        let opened = async {
            let stream = self.stream(ep, self.speaks()).await?;
            redis::aio::PubSub::new(&self.settings(), stream)
                .await
                .map_err(|e| Self::failed(ep, e))
        };
        timeout(self.timeout, opened).await.unwrap_or_else(|_| {
            Err(Self::unreachable(
                ep,
                format!("no pub/sub connection within {:?}", self.timeout),
            ))
        })
    }

    /// Opens a connection (AUTH included when a password is set) that
    /// speaks `speaks`.
    async fn open(&self, ep: &Endpoint, speaks: Speaks) -> Result<MultiplexedConnection, ProbeError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let opened = async {
            let stream = self.stream(ep, speaks).await?;
            let (conn, driver) = MultiplexedConnection::new_with_config(&self.settings(), stream, config)
                .await
                .map_err(|e| Self::failed(ep, e))?;
            // The connection's driver ends when the connection is dropped.
            tokio::spawn(driver);
            Ok(conn)
        };
        timeout(self.timeout, opened).await.unwrap_or_else(|_| {
            Err(Self::unreachable(
                ep,
                format!("no connection within {:?}", self.timeout),
            ))
        })
    }

    /// `ep` could not be reached, for a reason other than a refusal.
    fn unreachable(ep: &Endpoint, why: impl ToString) -> ProbeError {
        ProbeError::Connect {
            addr: ep.clone(),
            why: why.to_string(),
            refused: false,
        }
    }

    fn io(ep: &Endpoint, e: std::io::Error) -> ProbeError {
        ProbeError::Connect {
            addr: ep.clone(),
            refused: e.kind() == std::io::ErrorKind::ConnectionRefused,
            why: e.to_string(),
        }
    }

    fn failed(ep: &Endpoint, e: redis::RedisError) -> ProbeError {
        ProbeError::Connect {
            addr: ep.clone(),
            refused: e.is_connection_refusal(),
            why: e.to_string(),
        }
    }

    /// Runs one command.
    pub async fn cmd(&self, ep: &Endpoint, args: &[&str]) -> Result<Value, ProbeError> {
        let mut replies = self.pipe(ep, &[args]).await?;
        replies.pop().unwrap_or_else(|| Err(Self::reply(ep, "no reply")))
    }

    /// Runs several commands in order on one connection; each reply (or
    /// the server's error for it) in order. A connection or timeout failure
    /// fails the whole. The connection kept from the last probe of `ep` is
    /// used when it speaks what the probe would; one its server closed while
    /// it was kept (the server restarted, or dropped its clients) fails at
    /// once, and the commands run again on a new one (see `Sent::No`).
    pub async fn pipe(&self, ep: &Endpoint, cmds: &[&[&str]]) -> Result<Vec<Result<Value, ProbeError>>, ProbeError> {
        let speaks = self.speaks();
        if let Some(conn) = self.take(ep, &speaks) {
            match self.run(ep, conn, cmds, &speaks).await {
                Err((_, Sent::No)) => {}
                done => return done.map_err(|(e, _)| e),
            }
        }
        let conn = self.open(ep, speaks.clone()).await?;
        self.run(ep, conn, cmds, &speaks).await.map_err(|(e, _)| e)
    }

    /// Runs `cmds` on `conn`, and keeps it when nothing failed but the
    /// server's answers.
    async fn run(
        &self,
        ep: &Endpoint,
        mut conn: MultiplexedConnection,
        cmds: &[&[&str]],
        speaks: &Speaks,
    ) -> Result<Vec<Result<Value, ProbeError>>, (ProbeError, Sent)> {
        let mut out = Vec::with_capacity(cmds.len());
        for args in cmds {
            let mut cmd = redis::cmd(args[0]);
            cmd.arg(&args[1..]);
            match timeout(self.timeout, cmd.query_async::<Value>(&mut conn)).await {
                Ok(Ok(v)) => out.push(Ok(v)),
                Ok(Err(e)) if matches!(e.kind(), redis::ErrorKind::Server(_) | redis::ErrorKind::Extension) => out
                    .push(Err(ProbeError::Refused {
                        addr: ep.clone(),
                        command: args[0].to_string(),
                        why: e.to_string(),
                    })),
                Ok(Err(e)) if e.is_timeout() => {
                    return Err((ProbeError::timeout(ep, args[0], self.timeout), Sent::Maybe));
                }
                Ok(Err(e)) => {
                    // See `Sent::No`.
                    let sent = if out.is_empty() && e.is_connection_dropped() {
                        Sent::No
                    } else {
                        Sent::Maybe
                    };
                    return Err((Self::unreachable(ep, e), sent));
                }
                Err(_) => return Err((ProbeError::timeout(ep, args[0], self.timeout), Sent::Maybe)),
            }
        }
        self.keep(ep, conn, speaks);
        Ok(out)
    }

    /// The connection kept for `ep`, if it speaks `speaks`. It is taken
    /// out: one probe at a time uses it, and one dropped half-way (a
    /// caller's own deadline) is closed.
    fn take(&self, ep: &Endpoint, speaks: &Speaks) -> Option<MultiplexedConnection> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner()).remove(ep)?;
        same(&kept.speaks, speaks).then_some(kept.conn)
    }

    /// Keeps `conn` for the next probe of `ep`, and closes the connections
    /// not used for [`KEEP_IDLE`].
    fn keep(&self, ep: &Endpoint, conn: MultiplexedConnection, speaks: &Speaks) {
        let now = Instant::now();
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|_, k| now.duration_since(k.used) < KEEP_IDLE);
        kept.insert(
            ep.clone(),
            Kept {
                conn,
                speaks: speaks.clone(),
                used: now,
            },
        );
    }

    fn reply(ep: &Endpoint, why: impl Into<String>) -> ProbeError {
        ProbeError::Reply {
            addr: ep.clone(),
            why: why.into(),
        }
    }

    /// The bytes `from..=to` of history `replid` from the backlog of the
    /// master at `ep`, read as a replica reads them (`PSYNC replid from`,
    /// answered `+CONTINUE`). The connection names itself `as_replica`
    /// (`REPLCONF ip-address`/`listening-port`), so a Sentinel that lists
    /// it sees only the server that reads. Nothing is acknowledged: the
    /// reader never counts as a replica that has the data.
    pub async fn backlog(
        &self,
        ep: &Endpoint,
        as_replica: &Endpoint,
        replid: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<u8>, ProbeError> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let len =
            usize::try_from(to - from + 1).map_err(|_| Self::reply(ep, format!("no bytes from {from} to {to}")))?;
        let io = |e: std::io::Error| Self::io(ep, e);
        let read = async {
            let mut conn = BufReader::new(self.stream(ep, self.speaks()).await?);
            let (port, offset) = (as_replica.port.to_string(), from.to_string());
            let auth = self.password.as_ref().map(|p| vec!["AUTH", p.expose()]);
            let cmds = auth.into_iter().chain([
                vec!["REPLCONF", "ip-address", &as_replica.host],
                vec!["REPLCONF", "listening-port", &port],
                vec!["PSYNC", replid, &offset],
            ]);
            // One at a time: a server refuses PSYNC while replies are
            // still on their way.
            let mut line = vec![];
            for args in cmds {
                let packed = redis::cmd(args[0]).arg(&args[1..]).get_packed_command();
                conn.get_mut().write_all(&packed).await.map_err(io)?;
                line.clear();
                conn.read_until(b'\n', &mut line).await.map_err(io)?;
                if line.first() == Some(&b'-') {
                    let why = String::from_utf8_lossy(&line).trim().to_string();
                    return Err(Self::reply(ep, format!("refused to send its backlog: {why}")));
                }
            }
            if !line.starts_with(b"+CONTINUE") {
                let said = String::from_utf8_lossy(&line).trim().to_string();
                return Err(Self::reply(
                    ep,
                    format!("PSYNC {replid} {from} answered {said:?}, not +CONTINUE"),
                ));
            }
            let mut bytes = vec![0; len];
            conn.read_exact(&mut bytes).await.map_err(io)?;
            Ok(bytes)
        };
        // The backlog comes at once (1 MB by default); a bound of a few
        // probe timeouts covers a large one on a slow link.
        let bound = self.timeout * 3;
        timeout(bound, read)
            .await
            .unwrap_or_else(|_| Err(ProbeError::timeout(ep, "PSYNC", bound)))
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
}
