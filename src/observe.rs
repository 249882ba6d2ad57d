//! Looking at the group: the I/O that fills a [`Snapshot`], and the one
//! [`Observer`] of each process, which publishes a snapshot after every
//! look for all its loops (decisions, the fence, the admin pages) to read.
//!
//! A look reads ZooKeeper first (the record, the switchover intent, the
//! registrations: from the watched copy while it is valid, so an idle
//! group costs ZooKeeper nothing), then asks every Sentinel at once, then
//! every server of interest at once. Each question is bounded by the
//! probe's one timeout, so a group with dead members is still observed in
//! about one timeout.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tracing::{debug, info, warn};
use zookeeper_client::SessionState;

use crate::model::{Endpoint, Intent, Pause, Record, unix_ms};
use crate::probe::{PROBE_TIMEOUT, Probe, ProbeError};
use crate::reply::{
    SentinelAnswer, SentinelReplica, ServerState, dead_peers, fields, parse_info, parse_master_addr, value_text,
};
use crate::snapshot::{Scope, SessionMark, Snapshot, ZkSession};
use crate::zk::{NOFAILOVER_PREFIX, Zk};

/// The mark of `zk`'s session.
pub fn session_mark(zk: &Zk) -> SessionMark {
    SessionMark(zk.client().session_id().0)
}

/// The state of `zk`'s session now.
pub fn zk_state(zk: &Zk) -> ZkSession {
    match zk.client().state() {
        SessionState::SyncConnected | SessionState::ConnectedReadOnly => ZkSession::Connected,
        s if s.is_terminated() => ZkSession::Expired,
        _ => ZkSession::Suspended,
    }
}

/// Why a look at the group failed: a ZooKeeper read (the Sentinels and
/// servers that do not answer are no failure, only absent from the
/// snapshot).
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct ObserveError {
    /// The znode or directory that could not be read.
    pub path: String,
    #[source]
    pub source: zookeeper_client::Error,
}

/// What ZooKeeper holds for a look.
struct Stored {
    record: Record,
    intent: Option<Intent>,
    pause: Option<Pause>,
    sentinels: Vec<Endpoint>,
    nodes: Vec<Endpoint>,
    diverged: Vec<Endpoint>,
    nofailover: Vec<Endpoint>,
}

/// A bounded ZooKeeper read's result, with the path it read.
fn bounded<T>(
    path: String,
    r: Result<Result<T, zookeeper_client::Error>, tokio::time::error::Elapsed>,
) -> Result<T, ObserveError> {
    r.unwrap_or(Err(zookeeper_client::Error::Timeout))
        .map_err(|source| ObserveError { path, source })
}

/// Reads the record, the intent and the registrations, all at once, each
/// bounded by `limit` (a ZooKeeper that hangs must not hold a look up for
/// a whole session timeout).
async fn stored(zk: &Zk, scope: &Scope, limit: Duration) -> Result<Stored, ObserveError> {
    let (sentinels_dir, nodes_dir, diverged_dir) = (zk.sentinels_dir(), zk.nodes_dir(), zk.diverged_dir());
    let if_nodes = |dir: String| async move {
        if scope.nodes {
            timeout(limit, zk.registered(&dir)).await
        } else {
            Ok(Ok(vec![]))
        }
    };
    let (record, intent, pause, sentinels, nodes, diverged) = tokio::join!(
        timeout(limit, zk.read_master()),
        timeout(limit, zk.read_switchover()),
        timeout(limit, zk.read_pause()),
        timeout(limit, zk.registered(&sentinels_dir)),
        if_nodes(nodes_dir.clone()),
        if_nodes(diverged_dir.clone()),
    );
    let intent = bounded(zk.switchover_path(), intent)?.and_then(|(data, _)| {
        Intent::parse(&data)
            .inspect_err(|e| warn!(path = %zk.switchover_path(), error = %e, "ignoring an unusable switchover intent"))
            .ok()
    });
    let pause = bounded(zk.pause_path(), pause)?.and_then(|(data, _)| {
        Pause::parse(&data, unix_ms())
            .inspect_err(|e| warn!(path = %zk.pause_path(), error = %e, "ignoring an unusable pause"))
            .ok()
            .filter(|p| p.live(unix_ms()))
    });
    let nodes = bounded(nodes_dir, nodes)?;
    let nofailover = endpoints(nodes.iter().filter(|(name, _)| name.starts_with(NOFAILOVER_PREFIX)));
    Ok(Stored {
        record: bounded(zk.master_path(), record)?,
        intent,
        pause,
        sentinels: endpoints(&bounded(sentinels_dir, sentinels)?),
        nodes: endpoints(&nodes),
        diverged: endpoints(&bounded(diverged_dir, diverged)?),
        nofailover,
    })
}

fn endpoints<'a>(registered: impl IntoIterator<Item = &'a (String, Endpoint)>) -> Vec<Endpoint> {
    let mut v: Vec<Endpoint> = registered.into_iter().map(|(_, e)| e.clone()).collect();
    v.sort();
    v
}

/// Takes one [`Snapshot`]; fails only when ZooKeeper cannot be read.
pub async fn observe(zk: &Zk, probe: &Probe, name: &str, scope: &Scope) -> Result<Snapshot, ObserveError> {
    let taken = Instant::now();
    let s = stored(zk, scope, PROBE_TIMEOUT).await?;
    Ok(around(zk, probe, name, scope, taken, s, PROBE_TIMEOUT).await)
}

/// How long the observer's looks wait for ZooKeeper before they go on
/// with what they last read from it: a healthy read (most are served from
/// the watched copy) takes milliseconds, and the fence's deadline, which
/// waits for the next look, must not wait for a ZooKeeper that hangs.
const ZK_LOOK_TIMEOUT: Duration = Duration::from_millis(250);

/// The least time a look gives each Sentinel to answer, however often it
/// looks: answers on a loaded host take tens of milliseconds.
const MIN_ASK: Duration = Duration::from_millis(250);

/// A look whose ZooKeeper part comes from `last` when ZooKeeper cannot be
/// read: the Sentinels and servers are still asked, so a ZooKeeper outage
/// never blinds a launcher to its own server, nor slows its looks down.
/// `ask_limit` bounds each Sentinel's answer.
async fn observe_or_last(
    zk: &Zk,
    probe: &Probe,
    name: &str,
    scope: &Scope,
    last: Option<&Snapshot>,
    ask_limit: Duration,
) -> Snapshot {
    let taken = Instant::now();
    let read = if zk_state(zk) == ZkSession::Connected {
        stored(zk, scope, ZK_LOOK_TIMEOUT).await
    } else {
        Err(ObserveError {
            path: zk.master_path(),
            source: zookeeper_client::Error::ConnectionLoss,
        })
    };
    let s = match read {
        Ok(s) => s,
        Err(e) => {
            debug!(error = %e, "looking with the last ZooKeeper data seen");
            Stored {
                record: last.map_or(Record::Missing, |l| l.record.clone()),
                intent: last.and_then(|l| l.intent.clone()),
                pause: last.and_then(|l| l.pause.clone()).filter(|p| p.live(unix_ms())),
                sentinels: last.map_or_else(Vec::new, |l| l.sentinels.clone()),
                nodes: last.map_or_else(Vec::new, |l| l.nodes.clone()),
                diverged: last.map_or_else(Vec::new, |l| l.diverged.clone()),
                nofailover: last.map_or_else(Vec::new, |l| l.nofailover.clone()),
            }
        }
    };
    around(zk, probe, name, scope, taken, s, ask_limit).await
}

/// The Sentinels' and the servers' part of a look.
async fn around(
    zk: &Zk,
    probe: &Probe,
    name: &str,
    scope: &Scope,
    taken: Instant,
    s: Stored,
    ask_limit: Duration,
) -> Snapshot {
    let session = session_mark(zk);
    let mut ask: Vec<Endpoint> = s.sentinels.clone();
    if let Some(own) = &scope.local_sentinel
        && !ask.contains(own)
    {
        ask.push(own.clone());
    }
    let asked = ask_sentinels(
        probe,
        name,
        ask,
        scope.sentinel_replicas,
        scope.local_sentinel.as_ref(),
        ask_limit,
    )
    .await;
    let answers = count_dead_peers(probe, name, asked.answers, s.sentinels.len().saturating_sub(1)).await;
    let mut targets: BTreeSet<Endpoint> = answers.iter().map(|a| a.master.clone()).collect();
    targets.extend(s.record.master().cloned());
    if scope.nodes {
        targets.extend(s.nodes.iter().cloned());
    }
    if let Some((_, me)) = &scope.local_server {
        targets.remove(me);
    }
    let (mut servers, local) = tokio::join!(probe_servers(probe, targets), async {
        let (at, named) = scope.local_server.as_ref()?;
        server_state(probe, at, named).await
    });
    servers.extend(local.iter().cloned());
    servers.sort_by(|a, b| a.addr.cmp(&b.addr));
    Snapshot {
        taken,
        session,
        zk: zk_state(zk),
        record: s.record,
        intent: s.intent,
        pause: s.pause,
        nodes: s.nodes,
        diverged: s.diverged,
        nofailover: s.nofailover,
        sentinels: s.sentinels,
        answers,
        unknown_name: asked.unknown_name,
        refused: asked.refused,
        sentinel_replicas: asked.replicas,
        ckquorum: asked.ckquorum,
        servers,
        local,
    }
}

/// What the Sentinels said.
#[derive(Default)]
struct Asked {
    answers: Vec<SentinelAnswer>,
    unknown_name: Vec<Endpoint>,
    replicas: Vec<(Endpoint, Vec<SentinelReplica>)>,
    ckquorum: Option<Result<(), String>>,
    refused: Vec<Endpoint>,
}

/// `SENTINEL get-master-addr-by-name <name>` and `SENTINEL MASTER <name>`
/// on every Sentinel at once, on one connection each with, when asked,
/// `SENTINEL REPLICAS <name>`, and for the launcher's own Sentinel
/// `SENTINEL CKQUORUM <name>`. One that does not answer within `limit` is
/// logged and left out.
async fn ask_sentinels(
    probe: &Probe,
    name: &str,
    sentinels: Vec<Endpoint>,
    with_replicas: bool,
    own: Option<&Endpoint>,
    limit: Duration,
) -> Asked {
    let mut asks = JoinSet::new();
    for s in sentinels {
        let (probe, name) = (probe.clone(), name.to_string());
        let is_own = own == Some(&s);
        asks.spawn(async move {
            let ask = |what| ["SENTINEL", what, name.as_str()];
            let mut asked = vec![ask("get-master-addr-by-name"), ask("MASTER")];
            asked.extend(with_replicas.then(|| ask("REPLICAS")));
            asked.extend(is_own.then(|| ask("CKQUORUM")));
            let cmds: Vec<&[&str]> = asked.iter().map(|c| c.as_slice()).collect();
            let reply = timeout(limit, probe.pipe(&s, &cmds))
                .await
                .unwrap_or_else(|_| Err(ProbeError::timeout(&s, "SENTINEL get-master-addr-by-name", limit)));
            (reply, s, is_own)
        });
    }
    let mut out = Asked::default();
    while let Some(Ok((reply, s, is_own))) = asks.join_next().await {
        let mut replies = match reply {
            Ok(r) => r.into_iter(),
            Err(e) => {
                if e.is_refused() {
                    out.refused.push(s.clone());
                }
                silent(&s, Some(&e.to_string()));
                continue;
            }
        };
        silent(&s, None);
        if is_own {
            out.ckquorum = replies.next_back().map(|r| r.map(drop).map_err(|e| e.to_string()));
        }
        let named = match replies.next() {
            Some(Ok(v)) => parse_master_addr(&v).ok().flatten(),
            _ => None,
        };
        match replies.next() {
            Some(Ok(v)) => match SentinelAnswer::from_fields(&s, &fields(&v), named) {
                Some(a) => out.answers.push(a),
                None => warn!(sentinel = %s, "malformed SENTINEL MASTER answer"),
            },
            Some(Err(e)) if e.is_unknown_master() => {
                debug!(sentinel = %s, "sentinel does not know the master name");
                out.unknown_name.push(s.clone());
            }
            Some(Err(e)) => warn!(sentinel = %s, error = %e, "sentinel did not answer"),
            None => {}
        }
        if let Some(Ok(v)) = replies.next()
            && let Some(list) = SentinelReplica::list(&v)
        {
            out.replicas.push((s, list));
        }
    }
    out.answers.sort_by(|a, b| a.sentinel.cmp(&b.sentinel));
    out.unknown_name.sort();
    out.refused.sort();
    out.replicas.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A Sentinel that counts more peers than are registered either remembers
/// dead ones (ghosts: a reset makes it forget them) or knows a live Sentinel
/// that is not registered (a reset would only relearn it, again and again).
/// `SENTINEL SENTINELS` tells the two apart by the `s_down` flag. Only such
/// Sentinels are asked, so a calm group pays nothing for it.
async fn count_dead_peers(
    probe: &Probe,
    name: &str,
    mut answers: Vec<SentinelAnswer>,
    expected_peers: usize,
) -> Vec<SentinelAnswer> {
    let mut asks = JoinSet::new();
    for (i, a) in answers.iter().enumerate().filter(|(_, a)| a.peers > expected_peers) {
        let (probe, name, s) = (probe.clone(), name.to_string(), a.sentinel.clone());
        asks.spawn(async move { (i, probe.cmd(&s, &["SENTINEL", "SENTINELS", &name]).await) });
    }
    while let Some(Ok((i, reply))) = asks.join_next().await {
        let s = &answers[i].sentinel;
        match reply {
            Ok(v) => match dead_peers(&v) {
                Some(n) => answers[i].dead_peers = Some(n),
                None => warn!(sentinel = %s, "malformed SENTINEL SENTINELS answer"),
            },
            Err(e) => warn!(sentinel = %s, error = %e, "sentinel did not list its peers"),
        }
    }
    answers
}

/// `INFO server replication` of the server at `at`, named `named`; `None`
/// when it does not answer as a master or a replica.
pub async fn server_state(probe: &Probe, at: &Endpoint, named: &Endpoint) -> Option<ServerState> {
    let v = probe.cmd(at, &["INFO", "server", "replication"]).await.ok()?;
    ServerState::from_info(named, &parse_info(&value_text(&v)?))
}

/// [`server_state`] of every target at once.
async fn probe_servers(probe: &Probe, targets: BTreeSet<Endpoint>) -> Vec<ServerState> {
    let mut checks = JoinSet::new();
    for t in targets {
        let probe = probe.clone();
        checks.spawn(async move { server_state(&probe, &t, &t).await });
    }
    let mut out = vec![];
    while let Some(r) = checks.join_next().await {
        out.extend(r.ok().flatten());
    }
    out
}

/// The one observer of a process: it looks at the group, publishes the
/// snapshot, and looks again after the period its caller chooses from the
/// last snapshot, or at once when a loop asks ([`Observer::fresh`]) or the
/// session's watch tells of a change of the record, the switchover intent,
/// the pause or the TLS node ([`Zk::changes`]).
pub struct Observer {
    probe: Probe,
    name: String,
    scope: Scope,
    published: watch::Sender<Option<Arc<Snapshot>>>,
    wake: Notify,
}

impl Observer {
    /// An observer that has not looked yet.
    pub fn new(probe: Probe, name: &str, scope: Scope) -> Observer {
        Observer {
            probe,
            name: name.to_string(),
            scope,
            published: watch::channel(None).0,
            wake: Notify::new(),
        }
    }

    /// Looks for ever with the current session of `sessions`, `period(last
    /// snapshot)` apart.
    pub async fn run(
        &self,
        sessions: watch::Receiver<Zk>,
        period: impl Fn(&Snapshot) -> Duration,
    ) -> std::convert::Infallible {
        let mut restarted = false;
        loop {
            let zk = sessions.borrow().clone();
            // Changes from now on count: one during the look brings the
            // next look forward.
            let mut changes = zk.changes();
            changes.mark_unchanged();
            let last = self.latest();
            // A look takes no longer than the pause between two: a hung
            // Sentinel must not hold back the others' answers (the fence
            // waits for them).
            let ask_limit = last
                .as_deref()
                .map_or(PROBE_TIMEOUT, |l| period(l).clamp(MIN_ASK, PROBE_TIMEOUT));
            let look = observe_or_last(&zk, &self.probe, &self.name, &self.scope, last.as_deref(), ask_limit);
            // A change during a look starts it again, once: a look that a
            // Sentinel which does not answer holds up to its limit would
            // publish the old record, and the admin pages (a proxy's
            // /master check) would follow the new one a look later still.
            let snap = tokio::select! {
                biased;
                snap = look => snap,
                Ok(()) = changes.changed(), if !restarted => {
                    restarted = true;
                    continue;
                }
            };
            restarted = false;
            let pause = period(&snap);
            debug!(
                took_ms = snap.taken.elapsed().as_millis() as u64,
                ask_limit_ms = ask_limit.as_millis() as u64,
                "look"
            );
            self.published.send_replace(Some(Arc::new(snap)));
            tokio::select! {
                _ = sleep(pause) => {},
                _ = self.wake.notified() => {},
                // The record or the intent changed: look now, so that the
                // admin pages (a proxy's /master check) and the decisions
                // follow it within a look rather than a period.
                changed = changes.changed() => if changed.is_err() {
                    sleep(pause).await;
                },
            }
        }
    }

    /// Follows the published snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.published.subscribe()
    }

    /// The last snapshot, if there was a look yet.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.published.borrow().clone()
    }

    /// Asks for a look now, without waiting for it.
    pub fn look_soon(&self) {
        self.wake.notify_one();
    }

    /// A snapshot whose look began after this call (it asks for a look now).
    pub async fn fresh(&self) -> Arc<Snapshot> {
        let asked = Instant::now();
        let mut rx = self.subscribe();
        self.wake.notify_one();
        loop {
            if let Some(s) = rx.borrow_and_update().clone()
                && s.taken >= asked
            {
                return s;
            }
            // The sender lives as long as the observer, which outlives this.
            let _ = rx.changed().await;
        }
    }
}

/// What a [`Subscriptions`] heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// An event a Sentinel published.
    Event {
        sentinel: Endpoint,
        /// The channel (the event's name).
        channel: String,
        payload: Vec<u8>,
    },
    /// A subscription is in place (the first time, or again).
    Subscribed(Endpoint),
    /// A subscription ended, and why; it is retried while the Sentinel is
    /// followed.
    Lost(Endpoint, &'static str),
}

/// Subscriptions to the same channels on every followed Sentinel, each its
/// own task: only the Sentinel that leads a failover publishes its steps
/// at once, so listening to one would often miss them. Pub/sub drops
/// messages, so its users reconcile with a look whenever a subscription is
/// (re)made.
pub struct Subscriptions {
    probe: Probe,
    channels: &'static [&'static str],
    retry: Duration,
    followed: Vec<Endpoint>,
    running: std::collections::BTreeMap<Endpoint, tokio::task::AbortHandle>,
    tasks: JoinSet<(Endpoint, &'static str)>,
    tx: tokio::sync::mpsc::Sender<Heard>,
    rx: tokio::sync::mpsc::Receiver<Heard>,
}

/// How often a subscribed Sentinel is pinged, on the subscribed connection
/// itself: a hung one, or a connection that died unseen (its Sentinel
/// restarted during a partition), is left within about two seconds.
const LIVENESS: Duration = Duration::from_millis(1000);

impl Subscriptions {
    /// Subscriptions to `channels`; a lost one is made again after `retry`.
    pub fn new(probe: Probe, channels: &'static [&'static str], retry: Duration) -> Subscriptions {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        Subscriptions {
            probe,
            channels,
            retry,
            followed: vec![],
            running: Default::default(),
            tasks: JoinSet::new(),
            tx,
            rx,
        }
    }

    /// Follows exactly `sentinels` from now on: new ones are subscribed at
    /// once, the others dropped.
    pub fn follow(&mut self, sentinels: &[Endpoint]) {
        self.followed = sentinels.to_vec();
        self.running.retain(|s, h| {
            let keep = sentinels.contains(s);
            if !keep {
                debug!(sentinel = %s, "no longer registered; unsubscribing");
                h.abort();
            }
            keep
        });
        for s in sentinels {
            if !self.running.contains_key(s) {
                self.spawn(s.clone(), Duration::ZERO);
            }
        }
    }

    fn spawn(&mut self, sentinel: Endpoint, delay: Duration) {
        let (probe, channels, tx) = (self.probe.clone(), self.channels, self.tx.clone());
        let handle = self
            .tasks
            .spawn(subscription(probe, sentinel.clone(), channels, tx, delay));
        self.running.insert(sentinel, handle);
    }

    /// The next thing heard.
    pub async fn next(&mut self) -> Heard {
        loop {
            tokio::select! {
                Some(h) = self.rx.recv() => return h,
                Some(done) = self.tasks.join_next() => {
                    let Ok((sentinel, reason)) = done else { continue };
                    self.running.remove(&sentinel);
                    if self.followed.contains(&sentinel) {
                        // It may be restarting: a dead one costs a connect
                        // per retry.
                        self.spawn(sentinel.clone(), self.retry);
                        return Heard::Lost(sentinel, reason);
                    }
                },
            }
        }
    }
}

/// One Sentinel's `channels`, forwarded to `heard`, until the connection
/// closes or the Sentinel stops answering a ping on it. Returns the
/// Sentinel and why it ended.
async fn subscription(
    probe: Probe,
    sentinel: Endpoint,
    channels: &'static [&'static str],
    heard: tokio::sync::mpsc::Sender<Heard>,
    delay: Duration,
) -> (Endpoint, &'static str) {
    use futures_util::StreamExt;
    sleep(delay).await;
    let connected = probe.pubsub(&sentinel).await;
    let Ok(mut pubsub) = connected.inspect_err(|e| debug!(sentinel = %sentinel, error = %e, "cannot connect")) else {
        return (sentinel, "connect failed");
    };
    let Ok(Ok(())) = timeout(PROBE_TIMEOUT, pubsub.subscribe(channels)).await else {
        return (sentinel, "subscribe failed");
    };
    debug!(sentinel = %sentinel, channels = channels.len(), "subscribed");
    let _ = heard.send(Heard::Subscribed(sentinel.clone())).await;
    let (mut sink, mut stream) = pubsub.split();
    let mut alive = tokio::time::interval(LIVENESS);
    alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    alive.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                None => return (sentinel, "connection closed"),
                Some(m) => {
                    let h = Heard::Event {
                        sentinel: sentinel.clone(),
                        channel: m.get_channel_name().to_string(),
                        payload: m.get_payload_bytes().to_vec(),
                    };
                    if heard.send(h).await.is_err() {
                        return (sentinel, "nobody listens");
                    }
                }
            },
            _ = alive.tick() => {
                let error = match timeout(PROBE_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no reply to PING within {PROBE_TIMEOUT:?}"),
                };
                warn!(sentinel = %sentinel, error, "subscribed sentinel stopped answering");
                return (sentinel, "not answering");
            },
        }
    }
}

/// Logs a Sentinel that stops answering once (`error`), and once more when
/// it answers again (`None`), rather than at every look.
fn silent(s: &Endpoint, error: Option<&str>) {
    static SILENT: LazyLock<Mutex<BTreeSet<Endpoint>>> = LazyLock::new(Default::default);
    let mut set = SILENT.lock().unwrap_or_else(|p| p.into_inner());
    match error {
        Some(e) if set.insert(s.clone()) => warn!(sentinel = %s, error = %e, "sentinel did not answer"),
        Some(e) => debug!(sentinel = %s, error = %e, "sentinel still does not answer"),
        None if set.remove(s) => info!(sentinel = %s, "sentinel answers again"),
        None => {}
    }
}
