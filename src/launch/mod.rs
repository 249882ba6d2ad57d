//! The three launchers, and what they do the same way before their child
//! runs: connect to ZooKeeper unless a signal says stop, and pause
//! interruptibly. Waiting for a new child to answer in its role is in
//! [`ready`].

pub mod diverged;
pub mod fence;
pub mod ready;
pub mod redis;
pub mod sentinel;
pub mod switchover;
pub mod view;
pub mod watcher;

pub use ready::{Ready, STARTUP_TIMEOUT, wait_ready};

/// A launcher's own server: where it probes it, and how peers name it.
#[derive(Debug, Clone)]
pub struct Own<'a> {
    /// Probes with the group's password.
    pub probe: &'a Probe,
    /// The local server as the launcher's own probes reach it (its
    /// 127.0.0.1 listener).
    pub local: Endpoint,
    /// The server's listener on the task address, where clients connect:
    /// when the server is demoted, its normal clients there are dropped.
    pub task: Endpoint,
    /// This task's announced address (what peers and Sentinels call it).
    pub me: Endpoint,
    /// `MASTER_NAME`.
    pub name: &'a str,
    /// `DATA_DIR`: a demotion keeps there what only this server has.
    pub data_dir: std::path::PathBuf,
}

impl Own<'_> {
    /// The executor of this launcher, for actions on its own server too.
    pub fn executor(&self) -> Executor<'_> {
        Executor {
            clients: Some(&self.task),
            keep_in: Some(&self.data_dir),
            ..Executor::with_local(self.probe, self.name, &self.local)
        }
    }
}

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::sleep;
use tracing::{error, info, warn};

use crate::act::{Action, Executor};
use crate::admin::Publisher;
use crate::config::Common;
use crate::datadir;
use crate::metrics::metrics;
use crate::model::{Endpoint, Speaker};
use crate::probe::Probe;
use crate::render::{TlsPaths, tls_lines};
use crate::session::Keeper;
use crate::supervise::Signals;
use crate::tls::{Refresh, Tls};
use crate::zk::Zk;
use crate::zk::settings::ZkTls;

/// Exit code for a signal that stopped the launcher before its child ran.
pub fn interrupted(sig: i32) -> i32 {
    info!(sig, "signal before the child started; leaving");
    128 + sig
}

/// The start every launcher shares: start the admin server on `paths`
/// ([`view::start`]; `bind` is the task's address, `None` for the
/// watcher), warn once when the group has no password, install the signal
/// handlers (so a signal that arrives before the child runs is seen), then
/// connect to ZooKeeper. Returns the exit code to leave with when any fails.
pub async fn start(
    common: &Common,
    binary: &str,
    bind: Option<Ipv4Addr>,
    paths: &'static [&'static str],
) -> Result<(Option<Publisher>, Signals, Zk), i32> {
    let admin = view::start(common, bind, paths).await?;
    let group = format!("{}{}", common.zk.chroot.as_deref().unwrap_or(""), common.zk.root);
    metrics().set_info(binary, &group);
    if common.password.is_none() {
        // Not an error: a private network may be the operator's choice. But
        // anyone who reaches a port can then read every key, and anyone
        // who reaches a Sentinel can move the master.
        warn!(
            "REDIS_PASSWORD is not set: this group is open to anyone who can reach it (any client can read and write every key, and SENTINEL FAILOVER needs no password); set REDIS_PASSWORD or REDIS_PASSWORD_FILE on every app of the group"
        );
    }
    for tls in [common.tls.as_ref(), common.zk.tls.as_ref().map(|z| &z.files)]
        .into_iter()
        .flatten()
    {
        if let Some((_, key)) = &tls.files().identity
            && crate::tls::readable_by_others(key)
        {
            warn!(file = %key.display(), "a TLS key file can be read by other users: give it mode 0600 (or 0640 for a group that must read it)");
        }
    }
    let mut signals = Signals::new().map_err(|e| {
        error!(error = %e, "cannot install signal handlers");
        1
    })?;
    // Within `ZK_CONNECT_TIMEOUT_S`, unless a signal comes first.
    let zk = tokio::select! {
        r = Zk::connect(&common.zk) => r.map_err(|e| {
            error!(error = %e, "giving up");
            1
        })?,
        sig = signals.recv() => return Err(interrupted(sig)),
    };
    group_tls(common, &zk, &mut signals).await?;
    Ok((admin, signals, zk))
}

/// What the group speaks (`<root>/tls`, written by `rzkctl tls`), read
/// before anything starts: a task that follows the group starts speaking
/// it; a task that cannot speak it refuses to start (exit 1), since it
/// could not reach its peers.
async fn group_tls(common: &Common, zk: &Zk, signals: &mut Signals) -> Result<(), i32> {
    let said = loop {
        match zk.speak_as_group(common.tls.as_ref()).await {
            Ok(said) => break said,
            Err(e) => {
                warn!(error = %e, path = %zk.tls_path(), "cannot read what the group speaks; retrying");
                pause(signals, Duration::from_secs(1)).await?;
            }
        }
    };
    let path = zk.tls_path();
    match (&common.tls, said) {
        (Some(tls), _) if tls.follows_group() => {
            info!(path = %path, tls = tls.speaking(), "TLS_TRANSITION=yes: speaking what the group speaks");
            Ok(())
        }
        (Some(_), Some(false)) => {
            error!(path = %path, "this task speaks only TLS, but the group speaks plain text: run `rzkctl tls on` first (every task with TLS_TRANSITION=yes), or give this task TLS_TRANSITION=yes");
            Err(1)
        }
        (None, Some(true)) => {
            error!(path = %path, "the group speaks TLS, but this task has no TLS files: set TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_CERT_FILE, or run `rzkctl tls off` first (every task with TLS_TRANSITION=yes)");
            Err(1)
        }
        _ => Ok(()),
    }
}

/// Sleeps, unless a signal arrives first (then the launcher leaves).
pub async fn pause(signals: &mut Signals, d: Duration) -> Result<(), i32> {
    tokio::select! {
        _ = sleep(d) => Ok(()),
        sig = signals.recv() => Err(interrupted(sig)),
    }
}

/// How often the TLS files are looked at for a replacement.
pub const TLS_LOOK: Duration = Duration::from_secs(1);

/// The lines of the child's config that turn TLS on (none without it):
/// the checked files are copied into `dir` first, and the child reads the
/// copies.
pub fn tls_conf(common: &Common, dir: &Path, port: u16) -> std::io::Result<String> {
    let Some(tls) = &common.tls else {
        return Ok(String::new());
    };
    let paths = datadir::install_tls(dir, &tls.current())?;
    Ok(tls_lines(port, &paths, common.tls_auth_clients, tls.speaking()))
}

/// How the child takes a new certificate, or switches between plain text
/// and TLS.
#[derive(Clone)]
pub enum ChildTls {
    /// No child (the watcher).
    None,
    /// `CONFIG SET` on the child at this endpoint (`redis-server`), tried
    /// again at each look until it answers.
    ConfigSet(Endpoint, PathBuf),
    /// A restart of the child, asked for on this channel: `redis-sentinel`
    /// has no way to load a new certificate while it runs.
    Restart(tokio::sync::watch::Sender<u32>, PathBuf),
}

/// Follows the TLS files for ever (nothing to do without TLS): every
/// [`TLS_LOOK`], a replaced file is checked, and a set that passes goes
/// into service at once for new connections (a probe's kept connection
/// opened with the old set is replaced at its next use), the ZooKeeper
/// client's and the admin API's included; the child gets checked copies
/// in `DATA_DIR` and takes them as `child` says. A refused set is logged
/// and counted once; the old one stays in service.
pub async fn follow_tls(common: Common, child: ChildTls) {
    if common.tls.is_none() && common.zk.tls.is_none() {
        return;
    }
    let probe = Probe::of(&common);
    let mut pending: Option<TlsPaths> = None;
    let not_after = |link: &str, m: &crate::tls::Material| {
        if let Some(t) = m.not_after {
            metrics().tls_not_after.with_label_values(&[link]).set(t as i64);
        }
    };
    if let Some(t) = &common.tls {
        not_after("redis", &t.current());
    }
    if let Some(z) = &common.zk.tls {
        not_after("zookeeper", &z.files.current());
    }
    loop {
        sleep(TLS_LOOK).await;
        let looks = [
            ("redis", common.tls.as_ref().map(Tls::refresh)),
            ("zookeeper", common.zk.tls.as_ref().map(ZkTls::refresh)),
        ];
        for (link, look) in looks {
            match look {
                None | Some(Refresh::Same) => {}
                Some(Refresh::Refused(why)) => {
                    metrics().tls_reloads.with_label_values(&["refused"]).inc();
                    error!(link, error = %why, "refusing the replaced TLS files; the certificate in service stays");
                }
                Some(Refresh::Loaded(m)) => {
                    metrics().tls_reloads.with_label_values(&["loaded"]).inc();
                    not_after(link, &m);
                    info!(
                        link,
                        serial = m.serial.as_deref().unwrap_or("-"),
                        "new TLS files in service for new connections"
                    );
                    let dir = match &child {
                        ChildTls::ConfigSet(_, dir) | ChildTls::Restart(_, dir) if link == "redis" => dir,
                        _ => continue,
                    };
                    match datadir::install_tls(dir, &m) {
                        Ok(p) => pending = Some(p),
                        Err(e) => {
                            error!(error = %e, "cannot copy the new TLS files into DATA_DIR; the child keeps the old ones")
                        }
                    }
                }
            }
        }
        let Some(paths) = pending.take() else { continue };
        match &child {
            ChildTls::None => {}
            ChildTls::Restart(restart, _) => restart.send_modify(|n| *n += 1),
            ChildTls::ConfigSet(local, _) => {
                let executor = Executor::with_local(&probe, &common.master_name, local);
                match executor.execute(&Action::TlsFiles(paths.clone()), None).await {
                    Ok(()) => info!(cert = %paths.cert.display(), "the server serves the new certificate"),
                    Err(e) => {
                        warn!(error = %e, "the server did not take the new TLS files yet; trying again");
                        pending = Some(paths);
                    }
                }
            }
        }
    }
}

/// Follows the group's `<root>/tls` for ever. A task with
/// `TLS_TRANSITION=yes` follows it: when it changes, the child switches
/// first (`redis-server` live, with a partial resync; `redis-sentinel` by
/// a restart in place), then the launcher's own connections. A switch
/// that fails is tried again at the next look. A task that speaks one way
/// only says so in an error whenever `<root>/tls` turns the group the
/// other way while it runs (`rzkctl tls` refuses that; a hand-written node
/// does not), since it can then no longer talk to the others.
pub async fn follow_group_tls(common: Common, child: ChildTls, mut sessions: tokio::sync::watch::Receiver<Zk>) {
    let follows = common.tls.clone().filter(Tls::follows_group);
    let probe = Probe::of(&common);
    // What the group was last read to speak, for a task that cannot follow.
    let mut told = None;
    loop {
        let zk = sessions.borrow_and_update().clone();
        let mut changes = zk.changes();
        match (zk.read_group_tls().await, &follows) {
            (Err(e), Some(_)) => {
                warn!(error = %e, path = %zk.tls_path(), "cannot read what the group speaks; looking again")
            }
            (Ok(said), Some(tls)) if (said == Some(true)) != tls.speaking() => {
                let on = said == Some(true);
                info!(path = %zk.tls_path(), tls = on, "the group switches; this task follows");
                match &child {
                    ChildTls::None => tls.speak(on),
                    ChildTls::Restart(restart, _) => {
                        tls.speak(on);
                        restart.send_modify(|n| *n += 1);
                    }
                    ChildTls::ConfigSet(local, _) => {
                        let executor = Executor::with_local(&probe, &common.master_name, local);
                        let switched = executor.execute(&Action::SpeakTls(on, local.port), None).await;
                        // It may have switched and lost the answer: ask it
                        // the new way before trying again.
                        tls.speak(on);
                        if let Err(e) = switched
                            && probe.ping(local).await.is_err()
                        {
                            tls.speak(!on);
                            warn!(error = %e, tls = on, "the server did not switch yet; trying again");
                        } else {
                            reconnect_replication(&probe, &executor, local, on).await;
                        }
                    }
                }
            }
            (Ok(said), None) => {
                let tls = common.tls.is_some();
                if said != told && said.is_some_and(|on| on != tls) {
                    error!(path = %zk.tls_path(), group_tls = !tls, task_tls = tls,
                        "the group switched to what this task cannot speak: it cannot talk to the others; \
                         replace it with a task that speaks what the group speaks (docs/deploying.md)");
                }
                told = said;
            }
            _ => {}
        }
        // A task that cannot follow has only a log line to give: the watch
        // tells at once, a look every 10 s is the net (the node is read from
        // the watched copy).
        let every = if follows.is_some() { TLS_LOOK } else { TLS_LOOK * 10 };
        tokio::select! {
            _ = changes.changed() => {}
            _ = sessions.changed() => {}
            _ = sleep(every) => {}
        }
    }
}

/// Keeps the launcher's session (a [`Keeper`]), follows the group's
/// `<root>/tls` with the child ([`follow_group_tls`]), and registers what
/// this launcher can speak under `<root>/speakers` for as long as it runs.
/// `kind` is the binary's name, `addr` its server's or Sentinel's address.
pub fn keep_session(common: &Common, zk: Zk, child: ChildTls, kind: &str, addr: Option<&Endpoint>) -> Keeper {
    let keeper = Keeper::spawn(zk);
    tokio::spawn(follow_group_tls(common.clone(), child, keeper.subscribe()));
    let speaker = Speaker {
        kind: kind.into(),
        addr: addr.cloned(),
        plain: common.tls.as_ref().is_none_or(Tls::follows_group),
        tls: common.tls.is_some(),
    };
    let path = format!("{}/{}", keeper.zk().speakers_dir(), uuid::Uuid::new_v4());
    keeper.register(&path, &speaker.to_bytes());
    keeper
}

/// How long a replica that switched to TLS waits for its master to speak
/// TLS before it drops its link anyway.
const MASTER_SWITCH_WAIT: Duration = Duration::from_secs(10);

/// After the own server switched: a replica drops its link to its master,
/// which it opens again speaking the new way (a partial resync). To TLS,
/// only once its master answers over TLS: a TLS handshake sent to a
/// plain-text master gets no answer, and the replica would wait
/// `repl-timeout` (60 s) before it tried again. The other way a refused
/// handshake fails at once and is retried every second.
async fn reconnect_replication(probe: &Probe, executor: &Executor<'_>, local: &Endpoint, on: bool) {
    let Ok(crate::model::Role::Replica { master, .. }) = probe.role(local).await else {
        return;
    };
    if on {
        let deadline = tokio::time::Instant::now() + MASTER_SWITCH_WAIT;
        while probe.ping(&master).await.is_err() && tokio::time::Instant::now() < deadline {
            sleep(Duration::from_millis(100)).await;
        }
    }
    match executor.execute(&Action::DropMasterLink, None).await {
        Ok(()) => info!(tls = on, master = %master, "the server switched; its link to its master opens again"),
        Err(e) => {
            warn!(error = %e, "the server switched, but its link to its master was not dropped; it stays as it was opened")
        }
    }
}
