//! ZooKeeper access: one small interface over the coordination store.
//!
//! The rest of the library asks this module for the master record, the
//! registered Sentinels and nodes, the bootstrap lock and CAS writes. It never
//! builds paths or ACLs itself. Every call has a timeout (the session
//! timeout), so a frozen ensemble can never hang a launcher forever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::{Instant, sleep, timeout};
use tracing::{debug, error, info, warn};
use zookeeper_client::{
    Acl, Acls, AddWatchMode, AuthId, Client, CreateMode, CreateOptions, Error, LockClient, LockOptions, LockPrefix,
    OneshotWatcher, Permission, Stat, TlsOptions,
};

use crate::backoff::Backoff;
use crate::model::{Change, Endpoint, History, Record};

mod mirror;
pub mod settings;

use mirror::{Kept, Mirror, Part};
pub use settings::ZkConfig;

/// The name prefix of a `<root>/nodes` registration whose task runs with
/// `NOFAILOVER=true`.
pub const NOFAILOVER_PREFIX: &str = "nofailover-";

/// A connected ZooKeeper session rooted at `ZK_ROOT` (inside the chroot).
/// Cheap to clone: clones share the session.
#[derive(Clone)]
pub struct Zk {
    client: Client,
    cfg: Arc<ZkConfig>,
    acls: Arc<Vec<Acl>>,
    /// The watched copies of the record and the registrations.
    mirror: Arc<Mirror>,
}

impl std::fmt::Debug for Zk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zk")
            .field("hosts", &self.cfg.hosts)
            .field("root", &self.cfg.root)
            .finish()
    }
}

/// Why no ZooKeeper session could be had within `ZK_CONNECT_TIMEOUT_S`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "could not reach ZooKeeper at {hosts} within ZK_CONNECT_TIMEOUT_S={timeout_s}s ({attempts} attempts; last error: {last}); check ZK_HOSTS and that the ensemble is up"
)]
pub struct ConnectError {
    /// The connect string.
    pub hosts: String,
    /// `ZK_CONNECT_TIMEOUT_S`.
    pub timeout_s: u64,
    /// How many attempts were made.
    pub attempts: u32,
    /// What the last attempt ran into.
    pub last: String,
}

impl ConnectError {
    fn new(cfg: &ZkConfig, attempts: u32, last: String) -> ConnectError {
        ConnectError {
            hosts: cfg.hosts.clone(),
            timeout_s: cfg.connect_timeout.as_secs(),
            attempts,
            last,
        }
    }
}

/// The most one name of `ZK_HOSTS` may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// `hosts` (`host:port,…`) with every name resolved to all its addresses
/// ([`settings::expanded_connect_string`]), all names at once, each within
/// `limit`. Resolved at every connect, so a session opened after an expiry
/// follows the name's current addresses.
async fn resolve_servers(hosts: &str, limit: Duration) -> Result<String, String> {
    let entries = settings::connect_entries(hosts);
    let lookups = entries.iter().map(|&(host, port)| async move {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![ip]);
        }
        match timeout(limit, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    });
    let resolved: Vec<_> = entries.iter().copied().zip(join_all(lookups).await).collect();
    for ((host, port), r) in &resolved {
        if let Err(e) = r {
            warn!(host = %host, port, error = %e, "a ZooKeeper host name did not resolve; trying the others");
        }
    }
    let servers = settings::expanded_connect_string(&resolved)?;
    debug!(hosts = %hosts, servers = %servers, "ZooKeeper servers resolved");
    Ok(servers)
}

/// Bounds one ZooKeeper operation; a frozen server yields [`Error::Timeout`].
async fn bounded<T>(limit: Duration, fut: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    timeout(limit, fut).await.unwrap_or(Err(Error::Timeout))
}

impl Zk {
    /// Connects, retrying with backoff until `ZK_CONNECT_TIMEOUT_S`, then
    /// ensures the chroot and the root exist. At start a launcher must give
    /// up (exit 1) rather than wait forever; see [`Zk::connect_forever`] for
    /// reconnects while a child is running.
    pub async fn connect(cfg: &ZkConfig) -> Result<Zk, ConnectError> {
        Self::connect_until(cfg, Some(Instant::now() + cfg.connect_timeout)).await
    }

    /// Connects to read only: creates nothing, and fails when the group's
    /// root does not exist (`rzkctl`: a mistyped `ZK_ROOT` must not create
    /// an empty group, and a reader may lack the right to create).
    pub async fn connect_read_only(cfg: &ZkConfig) -> Result<Zk, ConnectError> {
        let read_only = ZkConfig {
            create: false,
            ..cfg.clone()
        };
        let zk = Self::connect(&read_only).await?;
        let why = match bounded(zk.op_timeout(), zk.client.check_stat(&zk.cfg.root)).await {
            Ok(Some(_)) => return Ok(zk),
            Ok(None) => format!("no group at {}: check ZK_ROOT (and the chroot in ZK_HOSTS)", cfg.root),
            Err(e) => format!("reading {}: {e}", cfg.root),
        };
        Err(ConnectError::new(cfg, 1, why))
    }

    /// Connects with no deadline. Used after a session expiry, when the
    /// supervised server must keep running whatever ZooKeeper does.
    pub async fn connect_forever(cfg: &ZkConfig) -> Zk {
        let zk = Self::connect_until(cfg, None).await;
        zk.unwrap_or_else(|_| unreachable!("connect_until without a deadline only returns on success"))
    }

    async fn connect_until(cfg: &ZkConfig, deadline: Option<Instant>) -> Result<Zk, ConnectError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let per_try = cfg.session_timeout.max(Duration::from_secs(2));
            let per_try = deadline.map_or(per_try, |d| per_try.min(d.saturating_duration_since(Instant::now())));
            let err = match timeout(per_try, Self::connect_once(cfg)).await {
                Ok(Ok((zk, servers))) => {
                    info!(hosts = %cfg.hosts, servers = %servers, root = %cfg.root, session = zk.client.session_id().0, attempt, "connected to ZooKeeper");
                    return Ok(zk);
                }
                Ok(Err(e)) => e,
                Err(_) => format!("no session within {per_try:?}"),
            };
            if let Some(d) = deadline
                && Instant::now() >= d
            {
                return Err(ConnectError::new(cfg, attempt, err));
            }
            let pause = backoff.next_pause();
            warn!(hosts = %cfg.hosts, attempt, error = %err, retry_in_ms = pause.as_millis() as u64, "ZooKeeper not reachable yet");
            sleep(deadline.map_or(pause, |d| pause.min(d.saturating_duration_since(Instant::now())))).await;
        }
    }

    /// One attempt: resolves `ZK_HOSTS` to every server's address, opens a
    /// session, and prepares the group's directories and watch. Returns the
    /// session and the servers it was given.
    async fn connect_once(cfg: &ZkConfig) -> Result<(Zk, String), String> {
        // Over TLS a server's name is what its certificate is checked
        // against, so the names are handed to the client as they are.
        let servers = match &cfg.tls {
            Some(_) => cfg.hosts.clone(),
            None => resolve_servers(&cfg.hosts, cfg.session_timeout.min(RESOLVE_TIMEOUT)).await?,
        };
        // The connection timeout bounds both how long a silent server is
        // waited for and each attempt to connect, and sets the ping period
        // (3/8 of it). 2/5 of the session (the client's own default): a
        // silent server given up (2/5), then a retry that goes back to it
        // (the client shuffles its servers after a loss: 2/5 more) still
        // leaves a fifth of the session to reach a live one, so the session
        // moves instead of expiring. At 3/5 the second case expired it
        // (2 runs of 10), with a third fewer pings.
        let mut connector = Client::connector()
            .with_session_timeout(cfg.session_timeout)
            .with_connection_timeout(cfg.session_timeout * 2 / 5)
            .with_fail_eagerly();
        if let Some(tls) = &cfg.tls {
            connector = connector.with_tls(TlsOptions::new().with_certs(tls.certs.clone()));
        }
        let acls = match &cfg.digest {
            Some(d) => {
                connector = connector.with_auth("digest", d.expose().as_bytes());
                // "auth" means: the identities this session authenticated with,
                // i.e. the digest user. Everyone else may only read.
                vec![
                    Acl::new(Permission::ALL, AuthId::new("auth", "")),
                    Acl::new(Permission::READ, AuthId::new("world", "anyone")),
                ]
            }
            None => Acls::anyone_all().to_vec(),
        };
        let mut client = connector.connect(&servers).await.map_err(|e| e.to_string())?;
        let limit = cfg.session_timeout;
        if let Some(chroot) = &cfg.chroot {
            if cfg.create {
                let opts = CreateMode::Persistent.with_acls(Acls::new(&acls));
                bounded(limit, client.mkdir(chroot, &opts))
                    .await
                    .map_err(|e| format!("creating chroot {chroot}: {e}"))?;
            }
            client = client
                .chroot(chroot.as_str())
                .map_err(|_| format!("bad chroot {chroot}"))?;
        }
        let (mirror, stopped) = Mirror::new(&cfg.root);
        let zk = Zk {
            client,
            cfg: Arc::new(cfg.clone()),
            acls: Arc::new(acls),
            mirror,
        };
        // The group's directories (the lock's too, so that the lock recipe's
        // first create succeeds) and the mirror's watch, all sent at once:
        // ZooKeeper answers them in order and commits the creates together,
        // where one after the other cost a launcher's start a round trip and
        // a disk sync each.
        let dirs = if cfg.create {
            vec![
                zk.cfg.root.clone(),
                zk.nodes_dir(),
                zk.sentinels_dir(),
                zk.lock_dir(),
                zk.diverged_dir(),
                zk.speakers_dir(),
            ]
        } else {
            vec![]
        };
        let opts = zk.dir_options();
        let (made, watch) = tokio::join!(
            join_all(dirs.iter().map(|dir| bounded(limit, zk.client.mkdir(dir, &opts)))),
            // One persistent recursive watch on the root keeps the mirror's
            // copies fresh; without it (an ensemble older than 3.6) every
            // read goes to ZooKeeper, as before.
            bounded(limit, zk.client.watch(&zk.cfg.root, AddWatchMode::PersistentRecursive)),
        );
        for (dir, r) in dirs.iter().zip(made) {
            r.map_err(|e| format!("creating {dir}: {e}"))?;
        }
        match watch {
            Ok(watch) => {
                let states = zk.client.state_watcher();
                tokio::spawn(Mirror::follow(
                    Arc::downgrade(&zk.mirror),
                    zk.client.clone(),
                    zk.cfg.root.clone(),
                    limit,
                    watch,
                    states,
                    stopped,
                ));
            }
            Err(e) => {
                warn!(root = %zk.cfg.root, error = %e, "no persistent watch on the root; every look reads ZooKeeper")
            }
        }
        Ok((zk, servers))
    }

    fn acls(&self) -> Acls<'_> {
        Acls::new(&self.acls)
    }

    /// Counts the changes of the record, the switchover intent, the pause
    /// and the TLS node that this session's watch tells of (none without
    /// the watch): whoever decides from them looks again at once.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.mirror.changes()
    }

    fn dir_options(&self) -> CreateOptions<'_> {
        CreateMode::Persistent.with_acls(self.acls())
    }

    fn op_timeout(&self) -> Duration {
        self.cfg.session_timeout
    }

    /// The configuration this session was made from (for reconnects).
    pub fn config(&self) -> &ZkConfig {
        &self.cfg
    }

    /// The underlying client, for watches and session state.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `<root>/master`.
    pub fn master_path(&self) -> String {
        format!("{}/master", self.cfg.root)
    }

    /// `<root>/nodes`.
    pub fn nodes_dir(&self) -> String {
        format!("{}/nodes", self.cfg.root)
    }

    /// A new registration of this task's server under `<root>/nodes`:
    /// `<uuid>`, or `nofailover-<uuid>` for a task with `NOFAILOVER=true`
    /// (never promoted; every look that lists the nodes sees it).
    pub fn node_path(&self, nofailover: bool) -> String {
        let prefix = if nofailover { NOFAILOVER_PREFIX } else { "" };
        format!("{}/{prefix}{}", self.nodes_dir(), uuid::Uuid::new_v4())
    }

    /// `<root>/sentinels`.
    pub fn sentinels_dir(&self) -> String {
        format!("{}/sentinels", self.cfg.root)
    }

    /// `<root>/speakers`: what each running launcher can speak
    /// ([`crate::model::Speaker`]).
    pub fn speakers_dir(&self) -> String {
        format!("{}/speakers", self.cfg.root)
    }

    /// Every `<root>/speakers` registration: its name and what its data
    /// parsed to. Read from ZooKeeper (only `rzkctl tls` asks).
    pub async fn speakers(&self) -> Result<Vec<(String, Result<crate::model::Speaker, String>)>, Error> {
        let children = self.children_data(&self.speakers_dir()).await?;
        Ok(children
            .into_iter()
            .map(|(child, _, data)| (child, crate::model::Speaker::parse(&data)))
            .collect())
    }

    /// `<root>/diverged`: the servers whose `DATA_DIR` keeps a copy of
    /// data a full sync replaced (registered like `/nodes`).
    pub fn diverged_dir(&self) -> String {
        format!("{}/diverged", self.cfg.root)
    }

    /// `<root>/switchover`: the switchover intent.
    pub fn switchover_path(&self) -> String {
        format!("{}/switchover", self.cfg.root)
    }

    /// `<root>/history`: the last changes of master.
    pub fn history_path(&self) -> String {
        format!("{}/history", self.cfg.root)
    }

    /// The history, oldest first (empty when there is none yet). Served
    /// from the watched copy while it is valid.
    pub async fn read_history(&self) -> Result<History, Error> {
        let read = self.read_node(Part::History, &self.history_path()).await?;
        Ok(read.map_or_else(History::default, |(d, _)| History::parse(&d)))
    }

    /// The data and stat of `path`, `None` when there is no such node.
    async fn get_data(&self, path: &str) -> Result<Option<(Vec<u8>, Stat)>, Error> {
        match bounded(self.op_timeout(), self.client.get_data(path)).await {
            Err(Error::NoNode) => Ok(None),
            r => r.map(Some),
        }
    }

    /// `<root>/pause`: maintenance mode.
    pub fn pause_path(&self) -> String {
        format!("{}/pause", self.cfg.root)
    }

    /// `<root>/tls`: what a group in a move between plain text and TLS
    /// speaks (`on` or `off`; see `TLS_TRANSITION`).
    pub fn tls_path(&self) -> String {
        format!("{}/tls", self.cfg.root)
    }

    /// What `<root>/tls` says: `Some(true)` for `on`, `Some(false)` for
    /// anything else, `None` without the node. Served from the watched
    /// copy while it is valid.
    pub async fn read_group_tls(&self) -> Result<Option<bool>, Error> {
        Ok(self
            .read_node(Part::Tls, &self.tls_path())
            .await?
            .map(|(data, _)| data.trim_ascii() == b"on"))
    }

    /// Reads `<root>/tls` (as [`Zk::read_group_tls`]) and makes a task
    /// that follows its group (`TLS_TRANSITION=yes`) speak what it says.
    pub async fn speak_as_group(&self, tls: Option<&crate::tls::Tls>) -> Result<Option<bool>, Error> {
        let said = self.read_group_tls().await?;
        if let Some(t) = tls.filter(|t| t.follows_group()) {
            t.speak(said == Some(true));
        }
        Ok(said)
    }

    /// Writes `<root>/tls` (`on` or `off`), whatever was there.
    pub async fn write_group_tls(&self, on: bool) -> Result<(), Error> {
        let data: &[u8] = if on { b"on" } else { b"off" };
        match self.write_node(&self.tls_path(), data, None).await {
            Err(Error::NodeExists) => self.write_node(&self.tls_path(), data, Some(-1)).await,
            r => r,
        }
    }

    /// The switchover intent's data and version, `None` when there is none.
    /// Served from the watched copy while it is valid.
    pub async fn read_switchover(&self) -> Result<Option<(Vec<u8>, i32)>, Error> {
        self.read_node(Part::Switchover, &self.switchover_path()).await
    }

    /// The pause's data and version, `None` when there is none (served as
    /// [`Zk::read_switchover`]).
    pub async fn read_pause(&self) -> Result<Option<(Vec<u8>, i32)>, Error> {
        self.read_node(Part::Pause, &self.pause_path()).await
    }

    async fn read_node(&self, part: Part, path: &str) -> Result<Option<(Vec<u8>, i32)>, Error> {
        if let Some(Kept::Node(v)) = self.kept(part) {
            return Ok(v);
        }
        let ticket = self.mirror.ticket(part);
        let v = self.get_data(path).await?.map(|(data, stat)| (data, stat.version));
        self.mirror.keep(part, ticket, Kept::Node(v.clone()));
        Ok(v)
    }

    /// Writes the switchover intent: creates it (`expected` `None`: there
    /// must be none) or compare-and-sets it on `expected`.
    pub async fn write_switchover(&self, data: &[u8], expected: Option<i32>) -> Result<(), Error> {
        self.write_node(&self.switchover_path(), data, expected).await
    }

    /// Writes the pause, as [`Zk::write_switchover`].
    pub async fn write_pause(&self, data: &[u8], expected: Option<i32>) -> Result<(), Error> {
        self.write_node(&self.pause_path(), data, expected).await
    }

    async fn write_node(&self, path: &str, data: &[u8], expected: Option<i32>) -> Result<(), Error> {
        let (opts, limit) = (self.dir_options(), self.op_timeout());
        let r = match expected {
            None => bounded(limit, self.client.create(path, data, &opts)).await.map(drop),
            Some(v) => bounded(limit, self.client.set_data(path, data, Some(v)))
                .await
                .map(drop),
        };
        self.mirror.touched(path);
        r
    }

    /// Deletes the switchover intent if it still has `version`.
    pub async fn delete_switchover(&self, version: i32) -> Result<(), Error> {
        self.delete_node(&self.switchover_path(), Some(version)).await
    }

    /// Deletes the pause, whatever its version.
    pub async fn delete_pause(&self) -> Result<(), Error> {
        self.delete(&self.pause_path()).await
    }

    async fn delete_node(&self, path: &str, version: Option<i32>) -> Result<(), Error> {
        let r = match bounded(self.op_timeout(), self.client.delete(path, version)).await {
            Ok(()) | Err(Error::NoNode) => Ok(()),
            Err(e) => Err(e),
        };
        self.mirror.touched(path);
        r
    }

    /// `<root>/lock`.
    pub fn lock_dir(&self) -> String {
        format!("{}/lock", self.cfg.root)
    }

    /// Reads the master record. Garbage is logged with its path and reported
    /// as [`Record::Unusable`]; only ZooKeeper failures are errors.
    /// Served from the watched copy while it is valid (see the `mirror` module).
    pub async fn read_master(&self) -> Result<Record, Error> {
        if let Some(Kept::Master(r)) = self.kept(Part::Master) {
            return Ok(r);
        }
        self.read_master_fresh().await
    }

    /// Reads the master record from ZooKeeper itself, never from the copy:
    /// for the fence, whose question is whether ZooKeeper answers now. (A
    /// session cut off from its server still says "connected" until the
    /// client's idle timeout; a copy would vouch for it that long.)
    pub async fn read_master_fresh(&self) -> Result<Record, Error> {
        let ticket = self.mirror.ticket(Part::Master);
        let path = self.master_path();
        let r = match self.get_data(&path).await? {
            None => Record::Missing,
            Some((data, stat)) => classify(&path, &data, &stat),
        };
        self.mirror.keep(Part::Master, ticket, Kept::Master(r.clone()));
        Ok(r)
    }

    /// A copy from the mirror, only while the session is connected now (the
    /// mirror learns of a disconnection a moment after the client does).
    fn kept(&self, part: Part) -> Option<Kept> {
        match self.client.state() {
            zookeeper_client::SessionState::SyncConnected => self.mirror.get(part),
            _ => None,
        }
    }

    /// Reads the master record and leaves a one-shot watch on it (set even
    /// when the node does not exist yet), so waiters need not poll.
    pub async fn watch_master(&self) -> Result<(Record, OneshotWatcher), Error> {
        let path = self.master_path();
        loop {
            match bounded(self.op_timeout(), self.client.get_and_watch_data(&path)).await {
                Ok((data, stat, w)) => return Ok((classify(&path, &data, &stat), w)),
                Err(Error::NoNode) => {}
                Err(e) => return Err(e),
            }
            match bounded(self.op_timeout(), self.client.check_and_watch_stat(&path)).await? {
                (None, w) => return Ok((Record::Missing, w)),
                // Created between the two calls: read it again.
                (Some(_), _) => continue,
            }
        }
    }

    /// Writes the master record. `expected` is the version read before the
    /// decision (`None`: the node must not exist). A lost race comes back as
    /// [`Error::BadVersion`] or [`Error::NodeExists`]; the caller re-reads and
    /// re-decides instead of overwriting. With `lock`, the write also fails
    /// if this launcher no longer holds the bootstrap lock.
    pub async fn write_master(
        &self,
        lock: Option<&LockClient<'_>>,
        master: &Endpoint,
        expected: Option<i32>,
        change: Change,
    ) -> Result<(), Error> {
        let path = self.master_path();
        let data = master.to_record();
        let opts = self.dir_options();
        let limit = self.op_timeout();
        // The history is appended in the same transaction: one entry per
        // change of the record, and none for a write that lost its race.
        // Read from the watched copy when it is kept (the watcher keeps it
        // warm, so that a failover's write waits for one request, not two);
        // a stale copy fails the transaction on its version, and the write
        // below forgets it.
        let history = self.history_path();
        let read = self.read_node(Part::History, &history).await?;
        let hv = read.as_ref().map(|(_, version)| *version);
        let mut h = read.map_or_else(History::default, |(d, _)| History::parse(&d));
        h.push(change);
        let h = h.to_bytes();
        // The same operations with either writer (of the lock, or plain).
        // Stats of creates inside a multi are invalid on ZK 3.8.0
        // (ZOOKEEPER-4026); they are ignored here.
        macro_rules! commit {
            ($w:expr) => {{
                let mut w = $w;
                match expected {
                    None => w.add_create(&path, &data, &opts)?,
                    Some(v) => w.add_set_data(&path, &data, Some(v))?,
                }
                match hv {
                    None => w.add_create(&history, &h, &opts)?,
                    Some(v) => w.add_set_data(&history, &h, Some(v))?,
                }
                bounded(limit, async { w.commit().await.map_err(Error::from) }).await
            }};
        }
        let result = match lock {
            Some(l) => commit!(l.new_check_writer()),
            None => commit!(self.client.new_multi_writer()),
        };
        self.mirror.touched(&history);
        // Our own write, won or lost, makes the copy stale: the next look
        // reads ZooKeeper rather than wait for the event.
        self.mirror.touched(&path);
        match &result {
            Ok(_) => {
                crate::metrics::metrics().record_writes.inc();
                info!(path = %path, master = %master, "master record written")
            }
            Err(e @ (Error::BadVersion | Error::NodeExists)) => {
                crate::metrics::metrics().cas_conflicts.inc();
                warn!(path = %path, master = %master, error = %e, "master record not written: it changed since it was read")
            }
            Err(e) => warn!(path = %path, master = %master, error = %e, "master record not written"),
        }
        result.map(drop)
    }

    /// Like [`Zk::registered`], and leaves a child watch on `dir`, so a
    /// follower learns of joins and departures without polling.
    pub async fn watch_registered(&self, dir: &str) -> Result<(Vec<(String, Endpoint)>, OneshotWatcher), Error> {
        let (_, _, watcher) = bounded(self.op_timeout(), self.client.get_and_watch_children(dir)).await?;
        Ok((self.read_registered(dir).await?, watcher))
    }

    /// Endpoints registered under a directory (`/nodes` or `/sentinels`),
    /// with the child name. Entries with bad data are logged and skipped.
    /// Served from the watched copy while it is valid (see the `mirror` module).
    pub async fn registered(&self, dir: &str) -> Result<Vec<(String, Endpoint)>, Error> {
        let part = self
            .mirror
            .part_of(dir)
            .filter(|p| matches!(p, Part::Sentinels | Part::Nodes | Part::Diverged));
        if let Some(p) = part
            && let Some(Kept::List(v)) = self.kept(p)
        {
            return Ok(v);
        }
        let ticket = part.map(|p| (p, self.mirror.ticket(p)));
        let out = self.read_registered(dir).await?;
        if let Some((p, t)) = ticket {
            self.mirror.keep(p, t, Kept::List(out.clone()));
        }
        Ok(out)
    }

    async fn read_registered(&self, dir: &str) -> Result<Vec<(String, Endpoint)>, Error> {
        let mut out = vec![];
        for (child, path, data) in self.children_data(dir).await? {
            match Endpoint::parse_bytes(&data) {
                Ok(ep) => out.push((child, ep)),
                Err(e) => error!(path = %path, error = %e, "ignoring registration with unusable data"),
            }
        }
        Ok(out)
    }

    /// Every child of `dir` with its path and data, read all at once (one
    /// round trip for the lot); none when `dir` is missing. A child gone
    /// between the listing and the read (its task left) is skipped.
    async fn children_data(&self, dir: &str) -> Result<Vec<(String, String, Vec<u8>)>, Error> {
        let children = match bounded(self.op_timeout(), self.client.list_children(dir)).await {
            Err(Error::NoNode) => return Ok(vec![]),
            r => r?,
        };
        let reads = join_all(children.iter().map(|child| async move {
            let path = format!("{dir}/{child}");
            let r = bounded(self.op_timeout(), self.client.get_data(&path)).await;
            (path, r)
        }))
        .await;
        let mut out = Vec::with_capacity(children.len());
        for (child, (path, r)) in children.into_iter().zip(reads) {
            match r {
                Ok((data, _)) => out.push((child, path, data)),
                Err(Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Takes the bootstrap lock `<root>/lock` (the Curator-compatible recipe
    /// of zookeeper-client). It waits on a watch of the predecessor, never
    /// polls, and is cancellation safe: dropping the future removes the
    /// contender node.
    pub async fn lock(&self, data: &[u8]) -> Result<LockClient<'_>, Error> {
        let dir = self.lock_dir();
        let prefix = LockPrefix::new_curator(&dir, "lock-")?;
        let options = LockOptions::new(self.acls()).with_ancestor_options(self.dir_options())?;
        self.client.lock(prefix, data, options).await
    }

    /// Releases the lock now and waits for the deletion, so the next launcher
    /// is woken at once rather than when a background task gets to it.
    pub async fn unlock(&self, lock: LockClient<'_>) {
        let path = lock.lock_path().to_string();
        match bounded(self.op_timeout(), self.client.delete(&path, None)).await {
            Ok(()) | Err(Error::NoNode) => debug!(path = %path, "lock released"),
            Err(e) => warn!(path = %path, error = %e, "lock release failed; it goes with the session"),
        }
        drop(lock);
    }

    /// Whether this session still owns the lock node `path` (the fence of
    /// actions decided under the lock).
    pub async fn holds(&self, path: &str) -> bool {
        let me = self.client.session_id().0;
        matches!(
            bounded(self.op_timeout(), self.client.get_data(path)).await,
            Ok((_, stat)) if stat.ephemeral_owner == me
        )
    }

    /// Deletes every lock contender node owned by this session: used when a
    /// lock wait is abandoned (a signal, an error) and the process is about
    /// to exit before the recipe's background clean-up could run.
    pub async fn release_contenders(&self) {
        let dir = self.lock_dir();
        let Ok(children) = bounded(self.op_timeout(), self.client.list_children(&dir)).await else {
            return;
        };
        let me = self.client.session_id().0;
        for child in children {
            let path = format!("{dir}/{child}");
            if let Ok((_, stat)) = bounded(self.op_timeout(), self.client.get_data(&path)).await
                && stat.ephemeral_owner == me
            {
                let _ = self.delete(&path).await;
                debug!(path = %path, "abandoned lock contender removed");
            }
        }
    }

    /// Creates an ephemeral node owned by this session. A leftover node of
    /// an older session of ours (same path) is replaced.
    pub async fn create_ephemeral(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        let opts = CreateMode::Ephemeral.with_acls(self.acls());
        let limit = self.op_timeout();
        let created = loop {
            match bounded(limit, self.client.create(path, data, &opts)).await {
                Ok(_) => break Ok(()),
                Err(Error::NodeExists) => match bounded(limit, self.client.get_data(path)).await {
                    Ok((_, stat)) if stat.ephemeral_owner == self.client.session_id().0 => break Ok(()),
                    Ok((_, stat)) => match bounded(limit, self.client.delete(path, Some(stat.version))).await {
                        Ok(()) | Err(Error::NoNode) | Err(Error::BadVersion) => continue,
                        Err(e) => break Err(e),
                    },
                    Err(Error::NoNode) => continue,
                    Err(e) => break Err(e),
                },
                Err(e) => break Err(e),
            }
        };
        // After the write, like every writer: a look that began before it
        // must not keep what it read.
        self.mirror.touched(path);
        created
    }

    /// Deletes a node, ignoring one that is already gone.
    pub async fn delete(&self, path: &str) -> Result<(), Error> {
        self.delete_node(path, None).await
    }
}

fn classify(path: &str, data: &[u8], stat: &Stat) -> Record {
    match Endpoint::parse_bytes(data) {
        Ok(master) => Record::Valid {
            master,
            version: stat.version,
        },
        Err(e) => {
            error!(path = %path, error = %e, "master record is unusable; treating it as no record");
            Record::Unusable { version: stat.version }
        }
    }
}
