//! A whole redis-zk group for tests: rzk-redis, rzk-sentinel and rzk-watcher
//! tasks sharing one fresh `ZK_ROOT`, with the checks every scenario needs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;

pub const RZK_REDIS: &str = env!("CARGO_BIN_EXE_rzk-redis");
pub const RZK_SENTINEL: &str = env!("CARGO_BIN_EXE_rzk-sentinel");
pub const RZK_WATCHER: &str = env!("CARGO_BIN_EXE_rzk-watcher");
pub const RZKCTL: &str = env!("CARGO_BIN_EXE_rzkctl");

/// Sentinel timing used by the group tests. Not lower: at 1000 ms Sentinel
/// now and then failed a just-promoted master over a second time (seen
/// twice in CI-like runs; upstream redis/redis#8607), which made the tests
/// see a master change nobody caused.
pub const DOWN_AFTER_MS: u64 = 2000;
pub const FAILOVER_TIMEOUT_MS: u64 = 5000;

/// How long a Sentinel failover of a dead master may take, from the kill
/// to the record moving: the down-after, then one failed vote (a Sentinel
/// waits for its election up to the failover-timeout and tries again
/// 2 × failover-timeout after it started, which two Sentinels asking at
/// once can cause), then the promotion and the watcher's write, with
/// margin for a loaded machine. A wait's deadline, not a measure: the
/// benchmark (P2) has the figure, about 3.3 s.
pub fn failover_budget() -> Duration {
    Duration::from_millis(DOWN_AFTER_MS + 2 * FAILOVER_TIMEOUT_MS + 5000)
}
pub const RECONCILE_S: u64 = 2;

/// One task of the group.
pub struct Member {
    pub task: Task,
    pub proc: Proc,
    /// Its `ADMIN_PORT`, when the group serves the admin API.
    pub admin: Option<u16>,
}

impl Member {
    pub fn addr(&self) -> String {
        self.task.addr()
    }

    /// `GET path` on its admin port over loopback: (status, body).
    pub async fn admin_get(&self, path: &str) -> Result<(u16, String), String> {
        let port = self.admin.ok_or("this member has no ADMIN_PORT")?;
        http_get("127.0.0.1", port, path).await
    }
}

/// Which binary a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Sentinel,
    Watcher,
}

/// How to start a task of a [`Kind`]: a command that runs the binary
/// (given after it, with its arguments), and variables that override the
/// group's.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub prefix: Vec<String>,
    pub env: Vec<(&'static str, String)>,
}

/// Chooses each task's [`Launch`].
pub type Launcher = std::sync::Arc<dyn Fn(Kind) -> Launch + Send + Sync>;

/// A group under its own root.
pub struct Group {
    pub root: String,
    pub redis: Vec<Member>,
    pub sentinels: Vec<Member>,
    pub watchers: Vec<Member>,
    /// Extra variables for every task started from now on.
    pub extra: Vec<(&'static str, String)>,
    /// `REDIS_PASSWORD` of the group, used by every check.
    pub password: Option<String>,
    /// Give the tasks `REDIS_PASSWORD_FILE` (this file) instead of
    /// `REDIS_PASSWORD`; `password` must then hold its content.
    pub password_file: Option<PathBuf>,
    /// Extra pass-through arguments for every rzk-redis started from now on.
    pub redis_args: Vec<String>,
    /// Give every task started from now on an `ADMIN_PORT`.
    pub admin: bool,
    /// Start rzk-redis with the launcher's own defaults, without the
    /// harness's `--repl-diskless-sync-delay 0` (the benchmark measures the
    /// product as shipped).
    pub launcher_defaults: bool,
    /// The ZooKeeper the tasks and the checks use (`host:port,…`); `None`:
    /// the binary's own [`zk()`].
    pub zk: Option<String>,
    /// How tasks are started; `None`: the binary itself.
    pub launch: Option<Launcher>,
}

impl Group {
    pub fn new(tag: &str) -> Group {
        Group {
            root: unique_root(tag),
            redis: vec![],
            sentinels: vec![],
            watchers: vec![],
            extra: vec![],
            password: None,
            password_file: None,
            redis_args: vec![],
            admin: false,
            launcher_defaults: false,
            zk: None,
            launch: None,
        }
    }

    /// The ZooKeeper connect string of this group.
    pub fn zk_hosts(&self) -> String {
        self.zk.clone().unwrap_or_else(|| zk().connect_string())
    }

    /// A client session on this group's ZooKeeper.
    pub async fn zk_client(&self) -> zookeeper_client::Client {
        match &self.zk {
            Some(hosts) => zk_client_at(hosts).await,
            None => zk_client().await,
        }
    }

    /// The environment of a task (`task` None for the watcher).
    pub fn env(&self, task: Option<&Task>) -> Vec<(&'static str, String)> {
        let mut env: Vec<(&'static str, String)> = vec![
            ("ZK_HOSTS", self.zk_hosts()),
            ("ZK_ROOT", self.root.clone()),
            ("ZK_SESSION_TIMEOUT_MS", "4000".into()),
            ("SENTINEL_DOWN_AFTER_MS", DOWN_AFTER_MS.to_string()),
            ("SENTINEL_FAILOVER_TIMEOUT_MS", FAILOVER_TIMEOUT_MS.to_string()),
            ("RECONCILE_INTERVAL_S", RECONCILE_S.to_string()),
            ("TAKEOVER_GRACE_S", "3".into()),
            ("MASTER_WAIT_TIMEOUT_S", "30".into()),
        ];
        if let Some(t) = task {
            env.push(("BIND_IP", t.ip.clone()));
            env.push(("PORT0", t.port.to_string()));
            env.push(("DATA_DIR", t.dir.display().to_string()));
        }
        match (&self.password_file, &self.password) {
            (Some(f), _) => env.push(("REDIS_PASSWORD_FILE", f.display().to_string())),
            (None, Some(p)) => env.push(("REDIS_PASSWORD", p.clone())),
            (None, None) => {}
        }
        for (k, v) in &self.extra {
            env.retain(|(e, _)| e != k);
            env.push((k, v.clone()));
        }
        env
    }

    fn spawn(&self, bin: &str, args: &[&str], task: Option<&Task>, log: PathBuf) -> (Proc, Option<u16>) {
        let mut env = self.env(task);
        // Free on every address: the watcher's admin API listens on all.
        let admin = self.admin.then(|| free_port(&["0.0.0.0"]));
        if let Some(p) = admin {
            env.push(("ADMIN_PORT", p.to_string()));
        }
        let kind = match bin {
            RZK_REDIS => Kind::Redis,
            RZK_SENTINEL => Kind::Sentinel,
            _ => Kind::Watcher,
        };
        let launch = self.launch.as_ref().map(|f| f(kind)).unwrap_or_default();
        for (k, v) in launch.env {
            env.retain(|(e, _)| *e != k);
            env.push((k, v));
        }
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        let proc = match launch.prefix.split_first() {
            None => Proc::spawn(bin, args, &env, log),
            Some((program, rest)) => {
                let mut all: Vec<&str> = rest.iter().map(String::as_str).collect();
                all.push(bin);
                all.extend(args);
                Proc::spawn(program, &all, &env, log)
            }
        };
        (proc, admin)
    }

    /// Starts an rzk-redis task; returns its index in `redis`.
    pub fn start_redis(&mut self) -> usize {
        self.start_redis_as(task())
    }

    /// Starts an rzk-redis task as `t` (e.g. a new port on an old task's
    /// `DATA_DIR`, as Marathon restarts a task on a persistent volume).
    pub fn start_redis_as(&mut self, t: Task) -> usize {
        // No 5 s wait before a replica's first sync. (No `--save ""`: the
        // launcher's PERSISTENCE default already writes no snapshots.)
        let mut args = if self.launcher_defaults {
            vec![]
        } else {
            vec!["--repl-diskless-sync-delay", "0"]
        };
        args.extend(self.redis_args.iter().map(String::as_str));
        let (p, admin) = self.spawn(RZK_REDIS, &args, Some(&t), t.dir.join("launcher.log"));
        self.redis.push(Member {
            task: t,
            proc: p,
            admin,
        });
        self.redis.len() - 1
    }

    /// Starts an rzk-sentinel task; returns its index in `sentinels`.
    pub fn start_sentinel(&mut self) -> usize {
        let t = task();
        let (p, admin) = self.spawn(RZK_SENTINEL, &[], Some(&t), t.dir.join("launcher.log"));
        self.sentinels.push(Member {
            task: t,
            proc: p,
            admin,
        });
        self.sentinels.len() - 1
    }

    /// Starts an rzk-watcher; returns its index in `watchers`.
    pub fn start_watcher(&mut self) -> usize {
        let t = task(); // only for its log directory
        let (p, admin) = self.spawn(RZK_WATCHER, &[], None, t.dir.join("watcher.log"));
        self.watchers.push(Member {
            task: t,
            proc: p,
            admin,
        });
        self.watchers.len() - 1
    }

    /// Starts `r` redis tasks (waiting for the first to be master), then `s`
    /// sentinels and `w` watchers, and waits until the group is healthy.
    pub async fn start(tag: &str, r: usize, s: usize, w: usize) -> Group {
        Group::start_with(Group::new(tag), r, s, w).await
    }

    /// [`Group::start`] for a group already given its `extra` settings.
    pub async fn start_with(mut g: Group, r: usize, s: usize, w: usize) -> Group {
        g.start_redis();
        wait_for("first master", Duration::from_secs(30), || async {
            g.record().await.ok_or_else(|| "no record yet".to_string())
        })
        .await;
        for _ in 1..r {
            g.start_redis();
        }
        for _ in 0..s {
            g.start_sentinel();
        }
        for _ in 0..w {
            g.start_watcher();
        }
        g.wait_healthy(Duration::from_secs(60)).await;
        g
    }

    pub async fn record(&self) -> Option<String> {
        self.record_with_version().await.map(|(r, _)| r)
    }

    pub async fn record_with_version(&self) -> Option<(String, i32)> {
        let c = self.zk_client().await;
        zk_get(&c, &format!("{}/master", self.root))
            .await
            .map(|(d, s)| (String::from_utf8_lossy(&d).into_owned(), s.version))
    }

    /// `(child, data)` of every registration under `<root>/<dir>`.
    pub async fn registered(&self, dir: &str) -> Vec<(String, String)> {
        let c = self.zk_client().await;
        let path = format!("{}/{dir}", self.root);
        let mut out = vec![];
        for child in zk_children(&c, &path).await {
            if let Some((d, stat)) = zk_get(&c, &format!("{path}/{child}")).await {
                assert_ne!(stat.ephemeral_owner, 0, "{path}/{child} must be ephemeral");
                out.push((child, String::from_utf8_lossy(&d).into_owned()));
            }
        }
        out
    }

    fn pw(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// `(data, ephemeral owner)` of every registration under `<root>/<dir>`.
    pub async fn registration_owners(&self, dir: &str) -> Vec<(String, i64)> {
        let c = self.zk_client().await;
        let path = format!("{}/{dir}", self.root);
        let mut out = vec![];
        for child in zk_children(&c, &path).await {
            if let Some((d, stat)) = zk_get(&c, &format!("{path}/{child}")).await {
                out.push((String::from_utf8_lossy(&d).into_owned(), stat.ephemeral_owner));
            }
        }
        out
    }

    pub fn live_redis(&self) -> impl Iterator<Item = &Member> {
        self.redis.iter().filter(|m| m.proc.is_running())
    }

    pub fn live_sentinels(&self) -> impl Iterator<Item = &Member> {
        self.sentinels.iter().filter(|m| m.proc.is_running())
    }

    /// The index of the redis member that is master now.
    pub async fn master_index(&self) -> Option<usize> {
        for (i, m) in self.redis.iter().enumerate() {
            if m.proc.is_running() && role_pw(&m.addr(), self.pw()).await.as_deref() == Ok("master") {
                return Some(i);
            }
        }
        None
    }

    /// One check of the whole group: exactly one master among live servers,
    /// every other live server linked to it, the record naming it, every
    /// live Sentinel agreeing, and the registrations matching the live tasks.
    pub async fn health(&self) -> Result<String, String> {
        let mut masters = vec![];
        for m in self.live_redis() {
            if role_pw(&m.addr(), self.pw()).await.as_deref() == Ok("master") {
                masters.push(m.addr());
            }
        }
        let [master] = masters.as_slice() else {
            return Err(format!("masters among live servers: {masters:?}"));
        };
        for m in self.live_redis().filter(|m| m.addr() != *master) {
            let link = info_field_pw(&m.addr(), self.pw(), "replication", "master_link_status").await?;
            let host = info_field_pw(&m.addr(), self.pw(), "replication", "master_host").await?;
            let port = info_field_pw(&m.addr(), self.pw(), "replication", "master_port").await?;
            if link != "up" || format!("{host} {port}") != *master {
                return Err(format!(
                    "{}: link {link} to {host} {port}, master is {master}",
                    m.addr()
                ));
            }
        }
        let rec = self.record().await;
        if rec.as_deref() != Some(master.as_str()) {
            return Err(format!("record {rec:?} but the master is {master}"));
        }
        let live_sentinels = self.live_sentinels().count();
        for s in self.live_sentinels() {
            // A Sentinel in TILT mode (its timer ran more than 2 s late,
            // e.g. blocked in an fsync on a busy disk) does nothing for
            // 30 s: no failover. Seen once before a SIGKILL failover.
            if info_field_pw(&s.addr(), self.pw(), "sentinel", "sentinel_tilt").await? != "0" {
                return Err(format!("sentinel {} is in TILT mode", s.addr()));
            }
            let says = sentinel_master_pw(&s.addr(), self.pw()).await?;
            if says != *master {
                return Err(format!("sentinel {} says {says}, master is {master}", s.addr()));
            }
            // Until the Sentinels have met (hello messages every 2 s) they
            // cannot agree that a master is down.
            let peers = sentinel_master_field_pw(&s.addr(), self.pw(), "num-other-sentinels").await?;
            let peers: usize = peers
                .parse()
                .map_err(|e| format!("sentinel {}: num-other-sentinels {peers:?}: {e}", s.addr()))?;
            // Exactly: a dead peer a Sentinel still counts (a ghost) raises
            // the majority a failover needs, and can block it.
            if peers + 1 != live_sentinels {
                return Err(format!(
                    "sentinel {} counts {peers} peers, {} live",
                    s.addr(),
                    live_sentinels - 1
                ));
            }
            // Sentinel learns replicas from the master's INFO, every 10 s; it
            // can only promote a replica it knows.
            let known = sentinel_replicas_pw(&s.addr(), self.pw()).await?;
            for r in self.live_redis().map(Member::addr).filter(|a| a != master) {
                if !known.contains(&r) {
                    return Err(format!(
                        "sentinel {} does not know replica {r} yet (knows {known:?})",
                        s.addr()
                    ));
                }
            }
        }
        let want: BTreeSet<String> = self.live_sentinels().map(Member::addr).collect();
        let got: BTreeSet<String> = self.registered("sentinels").await.into_iter().map(|(_, d)| d).collect();
        if want != got {
            return Err(format!("registered sentinels {got:?}, live {want:?}"));
        }
        let want: BTreeSet<String> = self.live_redis().map(Member::addr).collect();
        let got: BTreeSet<String> = self.registered("nodes").await.into_iter().map(|(_, d)| d).collect();
        if want != got {
            return Err(format!("registered nodes {got:?}, live {want:?}"));
        }
        Ok(master.clone())
    }

    /// Waits for [`Group::health`]. On timeout the panic carries, besides
    /// the last finding, each task's role and the notable lines of its log
    /// (Sentinel events, launcher warnings), so that a failure in CI, where
    /// the scratch directories are gone, can still be explained.
    pub async fn wait_healthy(&self, timeout: Duration) -> String {
        match try_wait_for(timeout, || self.health()).await {
            Ok(master) => master,
            Err(last) => panic!(
                "timed out after {timeout:?} waiting for a healthy group; last seen: {last}\n{}",
                self.diagnose().await
            ),
        }
    }

    /// Every task's state and the notable lines of its log.
    pub async fn diagnose(&self) -> String {
        let mut out = format!("record: {:?}\n", self.record_with_version().await);
        let kinds = [
            ("redis", &self.redis),
            ("sentinel", &self.sentinels),
            ("watcher", &self.watchers),
        ];
        for (kind, members) in kinds {
            for m in members {
                let state = if !m.proc.is_running() {
                    "launcher gone".to_string()
                } else if kind == "redis" {
                    let role = role_pw(&m.addr(), self.pw()).await;
                    let host = info_field_pw(&m.addr(), self.pw(), "replication", "master_host").await;
                    format!("ROLE {role:?}, master_host {host:?}")
                } else {
                    "running".to_string()
                };
                out.push_str(&format!("--- {kind} {} ({state})\n", m.addr()));
                let log = m.proc.log_or_error();
                let notable: Vec<&str> = log.lines().filter(|l| notable(l)).collect();
                for line in &notable[notable.len().saturating_sub(25)..] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// `SENTINEL get-master-addr-by-name mymaster` as `"ip port"`.
pub async fn sentinel_master(sentinel: &str) -> Result<String, String> {
    match redis_cmd(sentinel, None, &["SENTINEL", "get-master-addr-by-name", "mymaster"]).await? {
        Value::Array(v) if v.len() == 2 => {
            let text = |x: &Value| match x {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            };
            Ok(format!("{} {}", text(&v[0]), text(&v[1])))
        }
        other => Err(format!("{sentinel}: get-master-addr-by-name gave {other:?}")),
    }
}

fn text(x: &Value) -> String {
    match x {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The replicas a Sentinel knows, as `"ip port"`.
pub async fn sentinel_replicas(sentinel: &str) -> Result<Vec<String>, String> {
    sentinel_replicas_pw(sentinel, None).await
}

/// [`sentinel_replicas`] with a password.
pub async fn sentinel_replicas_pw(sentinel: &str, password: Option<&str>) -> Result<Vec<String>, String> {
    let v = redis_cmd(sentinel, password, &["SENTINEL", "REPLICAS", "mymaster"]).await?;
    let Value::Array(replicas) = v else {
        return Err(format!("{sentinel}: SENTINEL REPLICAS gave {v:?}"));
    };
    let mut out = vec![];
    for r in replicas {
        let Value::Array(items) = r else { continue };
        let get = |k: &str| {
            items
                .chunks_exact(2)
                .find(|kv| text(&kv[0]) == k)
                .map(|kv| text(&kv[1]))
        };
        if let (Some(ip), Some(port)) = (get("ip"), get("port")) {
            out.push(format!("{ip} {port}"));
        }
    }
    Ok(out)
}

/// A `SENTINEL MASTER mymaster` field.
pub async fn sentinel_master_field(sentinel: &str, field: &str) -> Result<String, String> {
    sentinel_master_field_pw(sentinel, None, field).await
}

/// [`sentinel_master_field`] with a password.
pub async fn sentinel_master_field_pw(sentinel: &str, password: Option<&str>, field: &str) -> Result<String, String> {
    let v = redis_cmd(sentinel, password, &["SENTINEL", "MASTER", "mymaster"]).await?;
    let Value::Array(items) = v else {
        return Err(format!("{sentinel}: SENTINEL MASTER gave {v:?}"));
    };
    let text = |x: &Value| match x {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => format!("{other:?}"),
    };
    items
        .chunks_exact(2)
        .find(|kv| text(&kv[0]) == field)
        .map(|kv| text(&kv[1]))
        .ok_or_else(|| format!("{sentinel}: no field {field}"))
}

/// What a [`Writer`] saw.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Keys whose write was acknowledged (OK, and WAIT met when asked for).
    pub acked: Vec<String>,
    /// For each key of `acked`, at the same index: the server that
    /// acknowledged it and when the acknowledgement arrived.
    pub acked_by: Vec<(String, Instant)>,
    /// Writes that failed or were not acknowledged by enough replicas.
    pub failed: usize,
    /// The longest time between two acknowledged writes.
    pub longest_gap: Duration,
    /// When each failed write failed, and what it got.
    pub refusals: Vec<(Instant, String)>,
}

/// A client writing keys continuously to whatever the Sentinels (or, failing
/// them, the record) call the master, keeping a ledger of acknowledged writes.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::task::JoinHandle<Ledger>,
}

impl Writer {
    /// Stops writing and returns the ledger.
    pub async fn finish(self) -> Ledger {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.await.expect("writer task")
    }
}

impl Group {
    /// Starts a writer. With `wait_replicas` > 0 a write counts as
    /// acknowledged only when `WAIT <n> 1000` confirms it.
    pub fn start_writer(&self, tag: &str, password: Option<String>, wait_replicas: usize) -> Writer {
        self.start_writer_with(tag, password, wait_replicas, false)
    }

    /// A writer that, with `sticky`, keeps writing to the first master it
    /// found even after errors: a client with a stale view of the group,
    /// the kind that loses writes to a master that comes back from a hang.
    pub fn start_writer_with(&self, tag: &str, password: Option<String>, wait_replicas: usize, sticky: bool) -> Writer {
        let sentinels: Vec<String> = self.sentinels.iter().map(Member::addr).collect();
        spawn_writer_at(
            self.zk.clone(),
            sentinels,
            Some(self.root.clone()),
            tag,
            password,
            wait_replicas,
            sticky,
        )
    }
}

/// A writer that finds the master through `sentinels` (and, failing them,
/// the record under `root` in the ZooKeeper `zk_hosts`, `None`: the
/// binary's own [`zk()`]); see [`Group::start_writer_with`].
pub fn spawn_writer_at(
    zk_hosts: Option<String>,
    sentinels: Vec<String>,
    root: Option<String>,
    tag: &str,
    password: Option<String>,
    wait_replicas: usize,
    sticky: bool,
) -> Writer {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tag, flag) = (tag.to_string(), stop.clone());
    let handle = tokio::spawn(async move {
        let mut ledger = Ledger::default();
        let mut master: Option<String> = None;
        let mut last_ok = Instant::now();
        let mut i = 0u64;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let Some(m) = master.clone() else {
                master = find_master(&sentinels, root.as_deref(), zk_hosts.as_deref(), password.as_deref()).await;
                if master.is_none() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            };
            i += 1;
            let key = format!("{tag}:{i}");
            let pw = password.as_deref();
            let value = i.to_string();
            let outcome = if wait_replicas == 0 {
                match redis_cmd(&m, pw, &["SET", &key, &value]).await {
                    Ok(Value::Okay) => Ok(()),
                    other => Err(format!("{m}: {other:?}")),
                }
            } else {
                let n = wait_replicas.to_string();
                let set: &[&str] = &["SET", &key, &value];
                let wait: &[&str] = &["WAIT", &n, "1000"];
                match redis_pipe(&m, pw, &[set, wait]).await.as_deref() {
                    Ok([Value::Okay, Value::Int(acks)]) if *acks >= wait_replicas as i64 => Ok(()),
                    other => Err(format!("{m}: {other:?}")),
                }
            };
            match outcome {
                Ok(()) => {
                    ledger.longest_gap = ledger.longest_gap.max(last_ok.elapsed());
                    last_ok = Instant::now();
                    ledger.acked.push(key);
                    ledger.acked_by.push((m.clone(), last_ok));
                }
                Err(why) => {
                    ledger.failed += 1;
                    ledger.refusals.push((Instant::now(), why));
                    if sticky {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    } else {
                        master = None;
                    }
                }
            }
        }
        ledger
    });
    Writer { stop, handle }
}

/// The master as the Sentinels name it (confirmed by ROLE), else the record.
async fn find_master(
    sentinels: &[String],
    root: Option<&str>,
    zk_hosts: Option<&str>,
    password: Option<&str>,
) -> Option<String> {
    for s in sentinels {
        if let Ok(m) = sentinel_master_pw(s, password).await
            && redis_cmd(&m, password, &["ROLE"])
                .await
                .is_ok_and(|v| matches!(&v, Value::Array(a) if a.first().map(text).as_deref() == Some("master")))
        {
            return Some(m);
        }
    }
    let path = format!("{}/master", root?);
    let c = match zk_hosts {
        Some(hosts) => zk_client_at(hosts).await,
        None => zk_client().await,
    };
    zk_get(&c, &path)
        .await
        .map(|(d, _)| String::from_utf8_lossy(&d).into_owned())
}

/// `get-master-addr-by-name` with an optional password.
pub async fn sentinel_master_pw(sentinel: &str, password: Option<&str>) -> Result<String, String> {
    match redis_cmd(sentinel, password, &["SENTINEL", "get-master-addr-by-name", "mymaster"]).await? {
        Value::Array(v) if v.len() == 2 => Ok(format!("{} {}", text(&v[0]), text(&v[1]))),
        other => Err(format!("{sentinel}: get-master-addr-by-name gave {other:?}")),
    }
}

/// The keys of `keys` that `master` does not have.
pub async fn missing_keys(master: &str, password: Option<&str>, keys: &[String]) -> Vec<String> {
    // One connection per 500 keys, and only `EXISTS` answering 0 counts as
    // missing: a check that opened a connection per key, after a writer's
    // tens of thousands of connections, ran out of ephemeral ports
    // (TIME_WAIT) and took its failed connects for lost keys.
    let mut missing = vec![];
    for chunk in keys.chunks(500) {
        let cmds: Vec<[&str; 2]> = chunk.iter().map(|k| ["EXISTS", k.as_str()]).collect();
        let cmds: Vec<&[&str]> = cmds.iter().map(|c| &c[..]).collect();
        let mut attempt = 0;
        let replies = loop {
            match redis_pipe(master, password, &cmds).await {
                Ok(r) if r.len() == chunk.len() => break r,
                other => {
                    attempt += 1;
                    assert!(attempt < 50, "cannot check keys on {master}: {other:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        for (k, r) in chunk.iter().zip(replies) {
            if r == Value::Int(0) {
                missing.push(k.clone());
            }
        }
    }
    missing
}

/// A log line worth showing when a test fails: a launcher's warning or
/// error, a decision, or a Redis/Sentinel event logged at warning level
/// (`#`), which is where Sentinel logs `+sdown`, `+switch-master` and the
/// failover steps.
fn notable(line: &str) -> bool {
    const NOISE: [&str; 5] = [
        "oO0OoO0O",
        "Redis version=",
        "Configuration loaded",
        "Server initialized",
        "overcommit",
    ];
    if NOISE.iter().any(|n| line.contains(n)) {
        return false;
    }
    line.contains(" WARN ")
        || line.contains(" ERROR ")
        || line.contains(" # ")
        || line.contains("promot")
        || line.contains("master=")
        || line.contains("REPLICAOF")
}

/// Waits until every Sentinel knows every replica in `replicas` as
/// promotable (priority above 0, link ok). Sentinel learns of replicas from
/// the master's INFO every 10 s: killing a master before that can only end
/// in `-failover-abort-no-good-slave`.
/// Waits until no Sentinel of `sentinels` has a failover of the master in
/// progress (the last one ended: replicas reconfigured).
pub async fn wait_no_failover(sentinels: &[String], timeout: Duration) {
    for s in sentinels {
        wait_for("no failover in progress", timeout, || async {
            let v = redis_cmd(s, None, &["SENTINEL", "MASTER", "mymaster"]).await?;
            let f = redis_zk::reply::fields(&v);
            let flags = f
                .iter()
                .find(|(n, _)| n == "flags")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            if flags.contains("failover") {
                Err(format!("{s}: flags {flags}"))
            } else {
                Ok(())
            }
        })
        .await;
    }
}

pub async fn wait_sentinels_know(sentinels: &[String], replicas: &[String], password: Option<&str>, timeout: Duration) {
    for s in sentinels {
        wait_for(
            "every Sentinel to know every replica as promotable",
            timeout,
            || async {
                let v = redis_cmd(s, password, &["SENTINEL", "REPLICAS", "mymaster"]).await?;
                let redis::Value::Array(items) = v else {
                    return Err(format!("SENTINEL REPLICAS gave {v:?}"));
                };
                let mut known = vec![];
                let mut seen = vec![];
                for item in &items {
                    let f = redis_zk::reply::fields(item);
                    let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                    let addr = format!("{} {}", get("ip").unwrap_or_default(), get("port").unwrap_or_default());
                    seen.push(format!(
                        "{addr}: priority {:?}, link {:?}, flags {:?}",
                        get("slave-priority"),
                        get("master-link-status"),
                        get("flags")
                    ));
                    if get("slave-priority").is_some_and(|p| p != "0")
                        && get("master-link-status").as_deref() == Some("ok")
                    {
                        known.push(addr);
                    }
                }
                if replicas.iter().all(|r| known.contains(r)) {
                    Ok(())
                } else {
                    Err(format!(
                        "{s} knows {known:?} as promotable, replicas are {replicas:?}; it sees {seen:?}"
                    ))
                }
            },
        )
        .await;
    }
}

/// Preloads `n` keys `pre:<i>` of `len` bytes each, 1000 per MSET.
pub async fn preload(addr: &str, n: usize, len: usize) {
    let value = "x".repeat(len);
    let keys: Vec<String> = (0..n).map(|i| format!("pre:{i}")).collect();
    for chunk in keys.chunks(1000) {
        let mut args = vec!["MSET"];
        for k in chunk {
            args.push(k);
            args.push(&value);
        }
        // Setup, not the check: a write refused for a moment (NOREPLICAS
        // while a loaded replica catches up, or the fence on a starved
        // host) is retried until a deadline, which fails with the answer.
        let args = &args;
        wait_for("a preload MSET to be taken", Duration::from_secs(30), || async move {
            match redis_cmd(addr, None, args).await {
                Ok(Value::Okay) => Ok(()),
                other => Err(format!("{:.200}", format!("{other:?}"))),
            }
        })
        .await;
    }
}

/// How many of the `n` preloaded keys `addr` holds.
pub async fn preloaded_present(addr: &str, n: usize) -> Result<usize, String> {
    let keys: Vec<String> = (0..n).map(|i| format!("pre:{i}")).collect();
    let mut present = 0;
    for chunk in keys.chunks(1000) {
        let mut args = vec!["EXISTS"];
        args.extend(chunk.iter().map(String::as_str));
        match redis_cmd(addr, None, &args).await? {
            Value::Int(k) => present += k as usize,
            other => return Err(format!("EXISTS gave {other:?}")),
        }
    }
    Ok(present)
}

/// Waits until every live redis task of `g` holds at least `n` keys (the
/// replicas have the preload).
pub async fn wait_preloaded(g: &Group, n: usize) {
    wait_for("the replicas to have the preload", Duration::from_secs(60), || async {
        let mut sizes = vec![];
        for m in g.live_redis() {
            sizes.push(dbsize(&m.addr()).await?);
        }
        if sizes.iter().all(|k| *k >= n as i64) {
            Ok(())
        } else {
            Err(format!("DBSIZE {sizes:?}"))
        }
    })
    .await;
}

/// `DBSIZE` of `addr`.
pub async fn dbsize(addr: &str) -> Result<i64, String> {
    match redis_cmd(addr, None, &["DBSIZE"]).await? {
        Value::Int(n) => Ok(n),
        other => Err(format!("DBSIZE gave {other:?}")),
    }
}

/// The `slave-priority` every live Sentinel of `g` has cached for
/// `replica` ("unknown" where it does not know the replica yet).
pub async fn sentinel_priorities(g: &Group, replica: &str) -> Result<Vec<String>, String> {
    let mut out = vec![];
    for s in g.live_sentinels() {
        let v = redis_cmd(&s.addr(), None, &["SENTINEL", "REPLICAS", "mymaster"]).await?;
        let Value::Array(items) = v else {
            return Err(format!("SENTINEL REPLICAS gave {v:?}"));
        };
        let mut found = None;
        for item in &items {
            let f = redis_zk::reply::fields(item);
            let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if get("ip").zip(get("port")).map(|(i, p)| format!("{i} {p}")).as_deref() == Some(replica) {
                found = get("slave-priority");
            }
        }
        out.push(found.unwrap_or_else(|| "unknown".into()));
    }
    Ok(out)
}

/// The pid of the server behind `addr`, from its `INFO`.
pub async fn server_pid(addr: &str) -> i32 {
    info_field(addr, "server", "process_id")
        .await
        .unwrap_or_else(|e| panic!("{addr}: {e}"))
        .parse()
        .unwrap()
}

/// One message a Sentinel published, as the test received it.
#[derive(Debug, Clone)]
pub struct SentinelEvent {
    pub sentinel: String,
    pub channel: String,
    pub payload: String,
    /// When the message reached the test.
    pub at: Instant,
}

/// The test's own subscriptions to Sentinel event channels (Sentinel
/// publishes each event, `+sdown`, `+try-failover`, `+switch-master`…, on
/// a channel of that name), on every Sentinel given: event times from the
/// events themselves, not from polling. Unsubscribed on drop.
pub struct SentinelEvents {
    rx: tokio::sync::mpsc::UnboundedReceiver<SentinelEvent>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Every event received so far, in order of arrival.
    pub seen: Vec<SentinelEvent>,
}

impl SentinelEvents {
    /// Subscribes to `channels` on every Sentinel of `sentinels`; returns
    /// once every subscription is confirmed.
    pub async fn listen(sentinels: &[String], password: Option<&str>, channels: &[&str]) -> SentinelEvents {
        use futures_util::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = vec![];
        for s in sentinels {
            let (ip, port) = s.split_once(' ').expect("an \"ip port\" address");
            let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
            if let Some(p) = password {
                settings = settings.set_password(p);
            }
            let info = ConnectionAddr::Tcp(ip.to_string(), port.parse().expect("a port"))
                .into_connection_info()
                .unwrap()
                .set_redis_settings(settings);
            let client = redis::Client::open(info).unwrap();
            let mut ps = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
                .await
                .unwrap_or_else(|_| panic!("subscribing to {s}: connect timed out"))
                .unwrap_or_else(|e| panic!("subscribing to {s}: {e}"));
            for ch in channels {
                ps.subscribe(*ch)
                    .await
                    .unwrap_or_else(|e| panic!("SUBSCRIBE {ch} on {s}: {e}"));
            }
            let (tx, sentinel) = (tx.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                let mut stream = ps.into_on_message();
                while let Some(msg) = stream.next().await {
                    let event = SentinelEvent {
                        sentinel: sentinel.clone(),
                        channel: msg.get_channel_name().to_string(),
                        payload: msg.get_payload::<String>().unwrap_or_else(|e| format!("<{e}>")),
                        at: Instant::now(),
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }));
        }
        SentinelEvents {
            rx,
            tasks,
            seen: vec![],
        }
    }

    /// Takes every event that has arrived into `seen`.
    pub fn drain(&mut self) {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
    }

    /// The first event on `channel` (received before or within `timeout`).
    pub async fn first(&mut self, channel: &str, timeout: Duration) -> Result<SentinelEvent, String> {
        self.drain();
        if let Some(e) = self.seen.iter().find(|e| e.channel == channel) {
            return Ok(e.clone());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(e)) => {
                    self.seen.push(e.clone());
                    if e.channel == channel {
                        return Ok(e);
                    }
                }
                Ok(None) => {
                    return Err(format!(
                        "every subscription ended before {channel}; seen {:?}",
                        self.seen
                    ));
                }
                Err(_) => return Err(format!("no {channel} within {timeout:?}; seen {:?}", self.seen)),
            }
        }
    }
}

impl Drop for SentinelEvents {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Group {
    /// Runs `rzkctl` with the group's ZooKeeper and root, without blocking
    /// the runtime: its exit code, stdout and stderr.
    pub async fn rzkctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = tokio::process::Command::new(RZKCTL)
            .args(args)
            .env_clear()
            .env("ZK_HOSTS", zk().connect_string())
            .env("ZK_ROOT", &self.root)
            // A TLS group's files and ZooKeeper (tests/tls.rs).
            .envs(
                self.extra
                    .iter()
                    .filter(|(k, _)| k.starts_with("TLS_") || k.starts_with("ZK_"))
                    .map(|(k, v)| (*k, v)),
            )
            .output()
            .await
            .expect("run rzkctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
