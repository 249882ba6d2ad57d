//! Shared integration-test harness: a real ZooKeeper per test binary, loopback
//! address/port/dir allocation, child-process guards, deadline-bound waits and
//! small Redis / ZooKeeper client helpers.
//!
//! Include it from a test binary with `mod common;`. Every external process is
//! started with `PR_SET_PDEATHSIG(SIGKILL)` from one never-exiting spawner thread,
//! so nothing outlives the test binary, even when it panics or is killed.
#![allow(dead_code)]

pub mod alerts;
pub mod engine;
pub mod ensemble;
pub mod group;
pub mod haproxy;
pub mod net;
pub mod rolling;
pub mod scenarios;
pub mod tls;

use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Value};
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, Stat};

/// How often the wait helpers re-check their condition.
const POLL: Duration = Duration::from_millis(50);
/// Connect and response timeout of every `redis_cmd`.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// How long ZooKeeper may take to answer `ruok` after launch.
const ZK_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Session timeout of `zk_client()` (also its connect deadline).
const ZK_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// The test server's `tickTime`. It expires sessions in buckets of one
/// tick: a session is expired at most one tick after its timeout ran out.
pub const ZK_TICK: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------
// Scratch directories
// ---------------------------------------------------------------------------

/// `$TMPDIR/rzk-tests/<pid>/`: this test binary's scratch area. Directories are
/// kept after the run so logs can be read after a failure; directories of dead
/// test processes older than an hour are swept on first use to bound growth.
fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = std::env::temp_dir().join("rzk-tests");
        sweep_stale(&base);
        let root = base.join(std::process::id().to_string());
        fs::create_dir_all(&root).expect("create test scratch dir");
        root
    })
}

fn sweep_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > Duration::from_secs(3600));
        if old && !pid_alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh, kept (not auto-deleted) directory under this binary's scratch area.
pub fn fresh_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch_root())
        .expect("create temp dir")
        .keep()
}

/// Last `n` lines of a file, for panic messages.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// Process spawning
// ---------------------------------------------------------------------------

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from a dedicated thread that never exits, with
/// `PR_SET_PDEATHSIG(SIGKILL)`.
///
/// PDEATHSIG fires when the *thread* that forked the child exits, not the process.
/// Tokio worker/blocking threads and libtest's per-test threads come and go, so
/// forking from them could kill children early; forking from a thread that lives
/// as long as the process makes "child dies iff the test binary dies" exact.
fn spawn_with_pdeathsig(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("test-spawner".into())
            // The sender lives in a static, so `recv` never fails and the thread never exits.
            .spawn(move || {
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
                loop {
                    std::thread::park();
                }
            })
            .expect("start spawner thread");
        tx
    });
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.send((cmd, reply_tx)).expect("spawner thread alive");
    reply_rx.recv().expect("spawner thread replies")
}

/// True if `pid` exists and is not a zombie (a dead child not yet reaped still
/// answers `kill(pid, 0)`, so `/proc/<pid>/stat` is consulted too).
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence/permission.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    // The state is the first field after the parenthesised command name.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// Guard for a spawned child process: SIGKILLed and reaped on drop. All methods
/// take `&self` (the `Child` sits behind a mutex) so guards can be shared and
/// inspected from `wait_for` closures.
pub struct Proc {
    child: Mutex<Child>,
    pid: i32,
    log_path: PathBuf,
}

impl Proc {
    /// Spawns `bin args…` with the inherited environment plus `envs`, stdin from
    /// /dev/null and stdout+stderr appended to `log_path`. Panics if it can't start.
    pub fn spawn(bin: &str, args: &[&str], envs: &[(&str, String)], log_path: PathBuf) -> Proc {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("open log {}: {e}", log_path.display()));
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log fd"))
            .stderr(log);
        let child = spawn_with_pdeathsig(cmd).unwrap_or_else(|e| panic!("spawn {bin} {args:?}: {e}"));
        Proc {
            pid: child.id() as i32,
            child: Mutex::new(child),
            log_path,
        }
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig` (e.g. `libc::SIGSTOP`); a no-op once the child has been reaped,
    /// so a recycled pid is never signalled.
    pub fn signal(&self, sig: i32) {
        // Hold the lock so the child can't be reaped between the check and kill(2).
        let mut child = self.child();
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: plain kill(2) on our own, unreaped child.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// Exit status if the child has exited (reaps it), else `None`.
    pub fn try_status(&self) -> Option<ExitStatus> {
        self.child().try_wait().expect("try_wait")
    }

    /// Polls every 20 ms until the child exits or `timeout` elapses.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&self) -> bool {
        self.try_status().is_none()
    }

    /// Everything the child has written to its log so far. Panics if the
    /// log cannot be read: an empty string would pass every "the log does
    /// not contain …" check.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot read the log {}: {e}", self.log_path.display()))
    }

    /// [`Proc::log`] for failure messages: the read error instead of a panic.
    pub fn log_or_error(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Waits until the log contains `needle`, failing after `timeout` with
    /// the log as seen then.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        wait_for(&format!("the log to contain {needle:?}"), timeout, || async {
            let log = self.log();
            if log.contains(needle) {
                Ok(())
            } else {
                Err(format!("its log so far:\n{log}"))
            }
        })
        .await
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Loopback addresses, ports, task slots
// ---------------------------------------------------------------------------

/// Sends `sig` to a process a test started by other means (a server whose
/// pid it read from `INFO`).
pub fn signal_pid(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a process this test started.
    unsafe { libc::kill(pid, sig) };
}

/// Resumes (SIGCONT) these processes, and ZooKeeper with `zk`, however the
/// test ends: a failed check leaves nothing frozen for the next scenario.
pub struct Thaw {
    pub pids: Vec<i32>,
    pub zk: bool,
}

impl Drop for Thaw {
    fn drop(&mut self) {
        for p in &self.pids {
            signal_pid(*p, libc::SIGCONT);
        }
        if self.zk {
            zk().resume();
        }
    }
}

/// Next port that binds on every address in `ips`. Ports come from
/// 20000..32000, below Linux's ephemeral port range. `scripts/test.sh` runs
/// test binaries side by side and gives each its own share of that range
/// (`RZK_TEST_PORT_SLOT` of `RZK_TEST_PORT_SLOTS`), so that one binary never
/// takes a port another has probed but not yet bound. Run alone, a binary
/// starts at an offset derived from its pid.
pub fn free_port(ips: &[&str]) -> u16 {
    static RANGE: OnceLock<(u32, u32, AtomicU32)> = OnceLock::new();
    let (base, len, next) = RANGE.get_or_init(|| {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
        match (var("RZK_TEST_PORT_SLOT"), var("RZK_TEST_PORT_SLOTS")) {
            (Some(slot), Some(slots)) if slot < slots && slots <= 60 => {
                let len = 12000 / slots;
                (20000 + slot * len, len, AtomicU32::new(0))
            }
            _ => (
                20000,
                12000,
                AtomicU32::new(std::process::id().wrapping_mul(7919) % 12000),
            ),
        }
    });
    for _ in 0..*len {
        let port = (base + next.fetch_add(1, Ordering::Relaxed) % len) as u16;
        if ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
    panic!("no free port on {ips:?}");
}

/// Everything one redis/sentinel/agent instance needs: its own loopback IP, a
/// port free on that IP and on 127.0.0.1, and a kept scratch directory.
#[derive(Clone, Debug)]
pub struct Task {
    pub ip: String,
    pub port: u16,
    pub dir: PathBuf,
}

impl Task {
    /// `"ip port"`, the address format used throughout the project.
    pub fn addr(&self) -> String {
        format!("{} {}", self.ip, self.port)
    }
}

/// A bare `redis-server` (no launcher) as task `t`: on its address and
/// port, in its directory, with no persistence; logs to `t.dir/redis.log`.
pub fn plain_redis_server(t: &Task) -> Proc {
    redis_server_with(t, &[])
}

/// [`plain_redis_server`] with `extra` arguments after its own (a later
/// one wins: `--port 0 --tls-port N` makes it TLS only).
pub fn redis_server_with(t: &Task, extra: &[&str]) -> Proc {
    redis_server_in(None, t, extra)
}

/// [`redis_server_with`], in network namespace `ns` when given.
pub fn redis_server_in(ns: Option<&str>, t: &Task, extra: &[&str]) -> Proc {
    let port = t.port.to_string();
    let mut args = match ns {
        Some(ns) => vec!["netns", "exec", ns, "redis-server"],
        None => vec![],
    };
    args.extend([
        "--port",
        &port,
        "--bind",
        &t.ip,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        t.dir.to_str().unwrap(),
    ]);
    args.extend(extra);
    let program = if ns.is_some() { "ip" } else { "redis-server" };
    Proc::spawn(program, &args, &[], t.dir.join("redis.log"))
}

/// Makes `b` a replica of `a`, waits until it is in step, then promotes
/// it by hand (`REPLICAOF NO ONE`), as a Sentinel would while `a` still
/// runs.
pub async fn promote_by_hand(a: &Task, b: &Task) {
    redis_cmd(&b.addr(), None, &["REPLICAOF", &a.ip, &a.port.to_string()])
        .await
        .unwrap();
    wait_for(
        "the replica in step with its master",
        Duration::from_secs(20),
        || async {
            let link = info_field(&b.addr(), "replication", "master_link_status").await?;
            let (mo, ro) = (
                info_field(&a.addr(), "replication", "master_repl_offset").await?,
                info_field(&b.addr(), "replication", "slave_repl_offset").await?,
            );
            (link == "up" && mo == ro)
                .then_some(())
                .ok_or(format!("link {link}, offsets {mo} / {ro}"))
        },
    )
    .await;
    redis_cmd(&b.addr(), None, &["REPLICAOF", "NO", "ONE"]).await.unwrap();
}

/// The one copy a demotion kept in `t`'s `DATA_DIR`: its writes, as the
/// stream carried them (`writes.resp`).
pub fn kept_writes(t: &Task) -> Vec<u8> {
    let kept = std::fs::read_dir(t.dir.join(".rzk-diverged"))
        .expect("a kept copy")
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(kept.len(), 1, "{kept:?}");
    std::fs::read(kept[0].join("writes.resp")).expect("the kept writes")
}

/// The executor's demotion of `own`'s server to a replica of `to`, with
/// what only it has kept in its `DATA_DIR`, as the guard, the freeze and
/// the hand-over use it, through `probe`.
pub async fn demote_with(probe: &redis_zk::probe::Probe, own: &Task, to: &Task) {
    use redis_zk::act::{Action, Executor};
    use redis_zk::model::Endpoint;
    let local = Endpoint::new(&own.ip, own.port);
    let executor = Executor {
        keep_in: Some(&own.dir),
        ..Executor::with_local(probe, "m", &local)
    };
    executor
        .execute(&Action::Follow(Endpoint::new(&to.ip, to.port)), None)
        .await
        .expect("the demotion");
}

/// Allocates a new [`Task`]. IPs cycle through 127.0.0.2..=127.0.0.254; the
/// (ip, port) pair stays unique within the binary because ports never repeat.
pub fn task() -> Task {
    static NEXT_IP: AtomicU32 = AtomicU32::new(0);
    let ip = format!("127.0.0.{}", 2 + NEXT_IP.fetch_add(1, Ordering::Relaxed) % 253);
    let port = free_port(&[&ip, "127.0.0.1"]);
    Task {
        ip,
        port,
        dir: fresh_dir("task-"),
    }
}

// ---------------------------------------------------------------------------
// ZooKeeper server
// ---------------------------------------------------------------------------

/// The single ZooKeeper server of this test binary. It is shared by all tests in
/// the binary, so `pause()` affects them all: keep tests that pause it in their
/// own binary (or otherwise serialised).
pub struct Zk {
    port: u16,
    pid: std::sync::atomic::AtomicI32,
    dir: PathBuf,
}

impl Zk {
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// Freezes the server (SIGSTOP): clients see it hang, not disconnect.
    pub fn pause(&self) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.pid(), libc::SIGSTOP) };
    }

    /// Undoes [`Zk::pause`].
    pub fn resume(&self) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
    }

    /// [`Zk::pause`] until the guard is dropped: a test that fails while
    /// ZooKeeper is frozen still resumes it (the panic unwinds through the
    /// guard), so the tests after it in the binary find it running.
    #[must_use = "ZooKeeper resumes when the guard is dropped"]
    pub fn paused(&'static self) -> Frozen {
        self.pause();
        Frozen { zk: true, pids: vec![] }
    }

    /// Kills the server (SIGKILL), waits `down` and starts it again on the
    /// same port with the same data: a ZooKeeper restart. Sessions survive
    /// if it is back within their timeout.
    pub fn restart(&self, down: Duration) {
        let old = self.pid();
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(old, libc::SIGKILL) };
        wait_for_sync("old zookeeper to die", Duration::from_secs(10), || {
            if pid_alive(old) {
                Err(format!("pid {old} alive"))
            } else {
                Ok(())
            }
        });
        std::thread::sleep(down);
        self.pid.store(launch_zk(&self.dir), Ordering::SeqCst);
        wait_zk_ready(self);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Last lines of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.join("zookeeper.log"), 40)
    }

    /// Whether the server has logged that it expired `session` (its own
    /// declaration: "Expiring session 0x…, timeout of … exceeded"). Needs
    /// the server's log, which exists only with slf4j-simple (Debian's
    /// libslf4j-java, a dependency of its zookeeper): without it this
    /// panics, rather than answer no.
    pub fn declared_expired(&self, session: i64) -> bool {
        let path = self.dir.join("zookeeper.log");
        let log = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(
            log.contains("binding to port"),
            "ZooKeeper logs nothing ({}): is /usr/share/java/slf4j-simple.jar (libslf4j-java) installed?",
            path.display()
        );
        log.contains(&format!("Expiring session 0x{session:x},"))
    }
}

/// The binary's ZooKeeper, started on first call (blocking, up to 60 s).
pub fn zk() -> &'static Zk {
    static ZK: OnceLock<Zk> = OnceLock::new();
    ZK.get_or_init(start_zk)
}

fn start_zk() -> Zk {
    let dir = fresh_dir("zk-");
    let port = free_port(&["127.0.0.1"]);
    fs::write(
        dir.join("zoo.cfg"),
        format!(
            "tickTime={}\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n\
             dataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n",
            ZK_TICK.as_millis(),
            dir.join("data").display()
        ),
    )
    .expect("write zoo.cfg");
    let zk = Zk {
        port,
        pid: std::sync::atomic::AtomicI32::new(launch_zk(&dir)),
        dir,
    };
    wait_zk_ready(&zk);
    zk
}

/// Starts the server of `dir/zoo.cfg`, appending to `dir/zookeeper.log`.
/// The child is never reaped: it runs until the test binary exits
/// (PDEATHSIG), and a killed one is recognised as a zombie by `pid_alive`.
fn launch_zk(dir: &Path) -> i32 {
    launch_zk_in(dir, None)
}

/// [`launch_zk`] in the network namespace `netns` (`ip netns exec`, which
/// execs java in place: the pid is the server's).
fn launch_zk_in(dir: &Path, netns: Option<&str>) -> i32 {
    launch_zk_with(dir, netns, &[])
}

/// [`launch_zk_in`] with `extra_jars` appended to the classpath (the TLS
/// server of [`tls::ZkTls`] needs `netty-codec.jar`).
#[allow(clippy::zombie_processes)]
fn launch_zk_with(dir: &Path, netns: Option<&str>, extra_jars: &[&str]) -> i32 {
    // Debian's zookeeper.jar ships no SLF4J binding, so the server logs nothing;
    // add slf4j-simple (logs to stderr → our file) when it is installed.
    let mut classpath = String::from("/etc/zookeeper/conf:/usr/share/java/zookeeper.jar");
    if Path::new("/usr/share/java/slf4j-simple.jar").exists() {
        classpath.push_str(":/usr/share/java/slf4j-simple.jar");
    }
    for jar in extra_jars {
        classpath.push(':');
        classpath.push_str(jar);
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("zookeeper.log"))
        .expect("open zookeeper.log");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "java"]);
            c
        }
        None => Command::new("java"),
    };
    cmd.arg("-Xmx256m")
        .arg(format!("-Dzookeeper.log.dir={}", dir.display()))
        .arg("-Dorg.slf4j.simpleLogger.showDateTime=true")
        .args(["-cp", &classpath, "org.apache.zookeeper.server.quorum.QuorumPeerMain"])
        .arg(dir.join("zoo.cfg"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log fd"))
        .stderr(log);
    let child = spawn_with_pdeathsig(cmd).unwrap_or_else(|e| panic!("spawn java for zookeeper: {e}"));
    child.id() as i32
}

fn wait_zk_ready(zk: &Zk) {
    let deadline = Instant::now() + ZK_START_TIMEOUT;
    loop {
        match ruok(zk.port) {
            Ok(()) => return,
            Err(e) if !pid_alive(zk.pid()) => {
                panic!("zookeeper exited during startup ({e}); log tail:\n{}", zk.log_tail())
            }
            Err(e) if Instant::now() >= deadline => panic!(
                "zookeeper not ready after {ZK_START_TIMEOUT:?} (last: {e}); log tail:\n{}",
                zk.log_tail()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// ZooKeeper's four-letter health check: `ruok` must be answered with `imok`.
fn ruok(port: u16) -> Result<(), String> {
    match four_letters(port, "ruok")? {
        reply if reply == "imok" => Ok(()),
        reply => Err(format!("ruok answered {reply:?}")),
    }
}

/// The answer of ZooKeeper on `port` to a four-letter command (`cons`,
/// `wchp`, …; all are allowed by the test server's configuration).
fn four_letters(port: u16, cmd: &str) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| format!("{cmd}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    s.write_all(cmd.as_bytes()).map_err(|e| format!("{cmd}: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| format!("{cmd}: {e}"))?;
    Ok(reply)
}

impl Zk {
    /// This server's answer to a four-letter command, e.g. `wchp` (the
    /// watches by path and the sessions holding them) or `cons` (every
    /// connection, with its session id and its last request's xid).
    pub fn four_letters(&self, cmd: &str) -> Result<String, String> {
        four_letters(self.port, cmd)
    }
}

/// Processes frozen with SIGSTOP, or this binary's ZooKeeper paused: all
/// resumed (SIGCONT) when the guard is dropped, also when a check failed
/// meanwhile. See [`Zk::paused`] and [`Frozen::pids`].
#[must_use = "the processes resume when the guard is dropped"]
pub struct Frozen {
    zk: bool,
    pids: Vec<i32>,
}

impl Frozen {
    /// SIGSTOPs every pid in `pids` (in order) until the guard is dropped.
    pub fn pids(pids: &[i32]) -> Frozen {
        for p in pids {
            // SAFETY: plain kill(2) on a test process.
            unsafe { libc::kill(*p, libc::SIGSTOP) };
        }
        Frozen {
            zk: false,
            pids: pids.to_vec(),
        }
    }

    /// Resumes now (the same as dropping the guard).
    pub fn resume(self) {}
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if self.zk {
            zk().resume();
        }
        for p in &self.pids {
            // SAFETY: plain kill(2) on a test process.
            unsafe { libc::kill(*p, libc::SIGCONT) };
        }
    }
}

/// A fresh ZK_ROOT such as `/t-failover-3-12345`: unique per call and per binary.
pub fn unique_root(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "/t-{tag}-{}-{}",
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

// ---------------------------------------------------------------------------
// Waiting with deadlines
// ---------------------------------------------------------------------------

/// Polls `f` every 50 ms until it returns `Ok`, panicking after `timeout` with the
/// last error so a failing test says what it was actually seeing. An attempt that
/// is still pending at the deadline is abandoned.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    match try_wait_for(timeout, f).await {
        Ok(v) => v,
        Err(last) => panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}"),
    }
}

/// [`wait_for`] that returns the last error instead of panicking, for
/// callers that add their own diagnostics to the failure.
pub async fn try_wait_for<T, F, Fut>(timeout: Duration, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = String::from("<no attempt finished>");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last_err = e,
            Err(_) => last_err = format!("attempt still pending at deadline (before that: {last_err})"),
        }
        if Instant::now() >= deadline {
            return Err(last_err);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Blocking twin of [`wait_for`], for code outside an async context (e.g. Drop checks).
pub fn wait_for_sync<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last_err = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last_err}");
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// Redis helpers
// ---------------------------------------------------------------------------

fn split_addr(addr: &str) -> Result<(String, u16), String> {
    let (ip, port) = addr
        .split_once(' ')
        .ok_or_else(|| format!("bad address {addr:?}, want \"ip port\""))?;
    let port = port.parse().map_err(|e| format!("bad port in {addr:?}: {e}"))?;
    Ok((ip.to_string(), port))
}

/// Text of a string-like reply.
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Runs one command against `addr` ("ip port") on a fresh connection (1 s
/// connect, 1 s reply timeout). Server error replies come back as `Err`.
pub async fn redis_cmd(addr: &str, password: Option<&str>, args: &[&str]) -> Result<Value, String> {
    let mut replies = redis_pipe(addr, password, &[args]).await?;
    Ok(replies.remove(0))
}

/// Runs several commands in order on one connection (so that `WAIT` counts
/// the `SET` before it) and returns their replies; a server error in any of
/// them is an `Err`.
pub async fn redis_pipe(addr: &str, password: Option<&str>, cmds: &[&[&str]]) -> Result<Vec<Value>, String> {
    RedisConn::open(addr, password).await?.pipe(cmds).await
}

/// One connection kept open, for a poller that must not pay a connect per
/// sample (the same timeouts as [`redis_cmd`]).
pub struct RedisConn {
    addr: String,
    conn: redis::aio::MultiplexedConnection,
}

impl RedisConn {
    pub async fn open(addr: &str, password: Option<&str>) -> Result<RedisConn, String> {
        let (ip, port) = split_addr(addr)?;
        // No CLIENT SETINFO: sentinel and older servers reject it.
        let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(p) = password {
            settings = settings.set_password(p);
        }
        // No response timeout of the crate's own (500 ms by default): it cut
        // `WAIT 1 1000` short; every command is bounded below instead.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        if let Some(tls) = tls::client() {
            let opened = async {
                let stream = tls::connect(tls.clone(), &ip, port).await?;
                let (conn, driver) = redis::aio::MultiplexedConnection::new_with_config(&settings, stream, config)
                    .await
                    .map_err(|e| format!("{addr}: connect: {e}"))?;
                tokio::spawn(driver);
                Ok::<_, String>(conn)
            };
            let conn = tokio::time::timeout(REDIS_TIMEOUT, opened)
                .await
                .map_err(|_| format!("{addr}: connect timed out"))??;
            return Ok(RedisConn {
                addr: addr.to_string(),
                conn,
            });
        }
        let info = ConnectionAddr::Tcp(ip, port)
            .into_connection_info()
            .map_err(|e| e.to_string())?
            .set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(
            REDIS_TIMEOUT,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| format!("{addr}: connect timed out"))?
        .map_err(|e| format!("{addr}: connect: {e}"))?;
        Ok(RedisConn {
            addr: addr.to_string(),
            conn,
        })
    }

    /// Runs the commands in order on this connection, as [`redis_pipe`].
    pub async fn pipe(&mut self, cmds: &[&[&str]]) -> Result<Vec<Value>, String> {
        let (addr, conn) = (&self.addr, &mut self.conn);
        let mut out = Vec::with_capacity(cmds.len());
        for args in cmds {
            let (name, rest) = args.split_first().ok_or("empty command")?;
            let mut cmd = redis::cmd(name);
            cmd.arg(rest);
            // WAIT blocks up to its own timeout (1 s in the tests) by design.
            let limit = if name.eq_ignore_ascii_case("WAIT") {
                REDIS_TIMEOUT * 2
            } else {
                REDIS_TIMEOUT
            };
            match tokio::time::timeout(limit, cmd.query_async::<Value>(conn)).await {
                Err(_) => return Err(format!("{addr}: {args:?} timed out")),
                Ok(Err(e)) => return Err(format!("{addr}: {args:?}: {e}")),
                Ok(Ok(Value::ServerError(e))) => return Err(format!("{addr}: {args:?}: {e:?}")),
                Ok(Ok(v)) => out.push(v),
            }
        }
        Ok(out)
    }
}

/// Value of `field` in the text of an `INFO` reply.
pub fn info_text_field(reply: &Value, field: &str) -> Result<String, String> {
    let text = value_text(reply).ok_or_else(|| format!("odd INFO reply {reply:?}"))?;
    text.lines()
        .find_map(|l| l.trim_end().strip_prefix(field)?.strip_prefix(':').map(str::to_string))
        .ok_or_else(|| format!("no {field:?} in INFO"))
}

/// First element of `ROLE`: "master", "slave" or "sentinel".
pub async fn role(addr: &str) -> Result<String, String> {
    role_pw(addr, None).await
}

/// [`role`] with a password.
pub async fn role_pw(addr: &str, password: Option<&str>) -> Result<String, String> {
    match redis_cmd(addr, password, &["ROLE"]).await? {
        Value::Array(items) => items
            .first()
            .and_then(value_text)
            .ok_or_else(|| format!("{addr}: odd ROLE reply {items:?}")),
        other => Err(format!("{addr}: odd ROLE reply {other:?}")),
    }
}

/// Value of `field` in the `INFO section` reply (lines of `field:value`).
pub async fn info_field(addr: &str, section: &str, field: &str) -> Result<String, String> {
    info_field_pw(addr, None, section, field).await
}

/// [`info_field`] with a password.
pub async fn info_field_pw(addr: &str, password: Option<&str>, section: &str, field: &str) -> Result<String, String> {
    let reply = redis_cmd(addr, password, &["INFO", section]).await?;
    let text = value_text(&reply).ok_or_else(|| format!("{addr}: odd INFO reply {reply:?}"))?;
    text.lines()
        .find_map(|l| l.trim_end().strip_prefix(field)?.strip_prefix(':').map(str::to_string))
        .ok_or_else(|| format!("{addr}: no {field:?} in INFO {section}"))
}

// ---------------------------------------------------------------------------
// ZooKeeper client helpers
// ---------------------------------------------------------------------------

/// A client session (10 s timeout) on this binary's [`zk()`]. Panics if the
/// session can't be established within 10 s.
pub async fn zk_client() -> Client {
    let connect_string = zk().connect_string();
    let connecting = Client::connector()
        .with_session_timeout(ZK_SESSION_TIMEOUT)
        .connect(&connect_string);
    match tokio::time::timeout(ZK_SESSION_TIMEOUT, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("zk connect {connect_string}: {e}; log tail:\n{}", zk().log_tail()),
        Err(_) => panic!("zk connect {connect_string} timed out; log tail:\n{}", zk().log_tail()),
    }
}

/// A client session (10 s timeout) on the ZooKeeper `hosts`
/// (`host:port,…`). Panics if the session can't be established within 10 s.
pub async fn zk_client_at(hosts: &str) -> Client {
    let connecting = Client::connector()
        .with_session_timeout(ZK_SESSION_TIMEOUT)
        .connect(hosts);
    match tokio::time::timeout(ZK_SESSION_TIMEOUT, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("zk connect {hosts}: {e}"),
        Err(_) => panic!("zk connect {hosts} timed out"),
    }
}

/// Data and stat of `path`, or `None` if it does not exist.
pub async fn zk_get(c: &Client, path: &str) -> Option<(Vec<u8>, Stat)> {
    match c.get_data(path).await {
        Ok(v) => Some(v),
        Err(ZkError::NoNode) => None,
        Err(e) => panic!("zk get {path}: {e}"),
    }
}

/// Sorted children of `path`; empty if it does not exist.
pub async fn zk_children(c: &Client, path: &str) -> Vec<String> {
    match c.list_children(path).await {
        Ok(mut v) => {
            v.sort();
            v
        }
        Err(ZkError::NoNode) => Vec::new(),
        Err(e) => panic!("zk children {path}: {e}"),
    }
}

/// Writes `data` to persistent node `path`, creating it and its parents as needed
/// (open ACL), bypassing the code under test.
pub async fn zk_set_raw(c: &Client, path: &str, data: &[u8]) {
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    if let Some(parent) = path.rfind('/').filter(|&i| i > 0).map(|i| &path[..i]) {
        c.mkdir(parent, &opts)
            .await
            .unwrap_or_else(|e| panic!("zk mkdir {parent}: {e}"));
    }
    match c.create(path, data, &opts).await {
        Ok(_) => {}
        Err(ZkError::NodeExists) => {
            c.set_data(path, data, None)
                .await
                .unwrap_or_else(|e| panic!("zk set {path}: {e}"));
        }
        Err(e) => panic!("zk create {path}: {e}"),
    }
}

/// A plain HTTP/1.1 `GET` (the admin API): (status, body); HTTPS when the
/// binary's checks are TLS ([`tls::client`]). Bounded by 5 s.
pub async fn http_get(ip: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
    impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
    let fut = async {
        let mut s: Box<dyn Io> = match tls::client() {
            Some(tls) => Box::new(tls::connect(tls.clone(), ip, port).await?),
            None => Box::new(
                tokio::net::TcpStream::connect((ip, port))
                    .await
                    .map_err(|e| format!("connect {ip}:{port}: {e}"))?,
            ),
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .ok_or_else(|| format!("an HTTP answer without the end of its headers: {text:?}"))?;
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| Err(format!("GET {path} on {ip}:{port} timed out")))
}

/// Forwards `ip:port` to the test's ZooKeeper on loopback: a
/// [`ZkGate`] on `ip` that is never shut and lives until the test process
/// ends.
pub fn forward_zk(ip: &str) -> u16 {
    let gate = ZkGate::on(ip);
    let port = gate.port;
    std::mem::forget(gate); // its sender stays, so it never shuts
    port
}

/// CPU time (user + system) a process has used so far, from `/proc`.
/// Panics if it cannot be read: a zero would pass "it used little CPU".
pub fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    // Fields after the command name, which is in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("odd /proc/{pid}/stat: {stat}"));
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> u64 {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no CPU time in /proc/{pid}/stat: {stat}"))
    };
    let ticks = field(11) + field(12);
    // SAFETY: plain sysconf.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// A door between some clients and this binary's ZooKeeper that the test
/// can shut: a forwarder on 127.0.0.1 whose [`ZkGate::close`] drops every
/// connection through it and turns new ones away until
/// [`ZkGate::open`]. The server then hears nothing more from the sessions
/// behind it and expires them itself once their timeout has passed, as it
/// would the sessions of a host cut off from it, while every other client
/// (the test's own) carries on. Runs on a thread and runtime of its own:
/// on the test's runtime, whose workers also run the clients and the
/// blocking `ip` commands, ZooKeeper pings were seen to stall past the
/// session's ping deadline.
pub struct ZkGate {
    port: u16,
    open: tokio::sync::watch::Sender<bool>,
}

impl ZkGate {
    pub fn new() -> ZkGate {
        ZkGate::on("127.0.0.1")
    }

    /// A gate listening on `ip`.
    pub fn on(ip: &str) -> ZkGate {
        let l = std::net::TcpListener::bind((ip, 0)).expect("bind the ZooKeeper gate");
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let zk_port = zk().port();
        let (open, state) = tokio::sync::watch::channel(true);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                // Ends when the gate is dropped (its sender gone).
                while state.has_changed().is_ok() {
                    let Ok((mut inbound, _)) = l.accept().await else {
                        continue;
                    };
                    let mut state = state.clone();
                    if !*state.borrow_and_update() {
                        continue; // shut: the connection is dropped at once
                    }
                    tokio::spawn(async move {
                        let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", zk_port)).await else {
                            return;
                        };
                        let _ = inbound.set_nodelay(true);
                        let _ = out.set_nodelay(true);
                        let shut = async {
                            while state.changed().await.is_ok() {
                                if !*state.borrow() {
                                    return;
                                }
                            }
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {},
                            () = shut => {},
                        }
                    });
                }
            });
        });
        ZkGate { port, open }
    }

    /// `ZK_HOSTS` for the clients behind the gate.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cuts the clients behind the gate off from ZooKeeper.
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    /// Lets them through again.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

/// A count from the environment variable `name`, `default` when it is
/// unset, for knobs such as `ROLLING_RUNS`. Anything but a whole number of
/// at least 1 fails the test: 0 rounds would be a green run that checked
/// nothing, and a typo would silently be the default.
pub fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => default,
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => panic!("{name}={v:?}: expected a whole number of at least 1 (0 would be a run that checks nothing)"),
        },
        Err(e) => panic!("{name}: {e}"),
    }
}

/// The tag in the names of the network namespaces, bridges and veths the
/// namespace tests create: every such name is `rzk`, one letter for the
/// kind of thing, this tag, `-` and a number, at most 15 characters (the
/// kernel's limit for a link name). `scripts/test.sh` passes its run's
/// tag in `RZK_TEST_TAG` (hex digits), so that after a binary was killed it
/// removes exactly what its own run left, never what a run beside it made;
/// run alone, a binary uses `p` and its pid in hex.
pub fn run_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| match std::env::var("RZK_TEST_TAG") {
        Ok(t) => {
            assert!(
                (1..=7).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                "RZK_TEST_TAG={t:?}: expected 1 to 7 lower-case hex digits"
            );
            t
        }
        Err(_) => format!("p{:x}", std::process::id()),
    })
}

/// Changes of one znode's data as a ZooKeeper data watch reports them, on
/// one client: each change is timestamped when its event arrives, not when
/// a poll happens to see it.
pub struct DataWatch {
    client: Client,
    path: String,
    watcher: Option<zookeeper_client::OneshotWatcher>,
    /// The data and version last read (`None`: no node).
    pub last: Option<(Vec<u8>, i32)>,
}

impl DataWatch {
    /// Reads `path` and leaves a watch on it (also when it does not exist).
    pub async fn new(path: &str) -> DataWatch {
        let client = zk_client().await;
        let (last, watcher) = Self::read(&client, path).await;
        DataWatch {
            client,
            path: path.to_string(),
            watcher: Some(watcher),
            last,
        }
    }

    async fn read(c: &Client, path: &str) -> (Option<(Vec<u8>, i32)>, zookeeper_client::OneshotWatcher) {
        loop {
            match c.get_and_watch_data(path).await {
                Ok((d, stat, w)) => return (Some((d, stat.version)), w),
                Err(ZkError::NoNode) => {}
                Err(e) => panic!("zk get {path}: {e}"),
            }
            match c.check_and_watch_stat(path).await {
                Ok((None, w)) => return (None, w),
                Ok((Some(_), _)) => continue, // created between the two calls
                Err(e) => panic!("zk exists {path}: {e}"),
            }
        }
    }

    /// Waits (up to `timeout`) for the watch to fire, then reads the node
    /// again and re-arms the watch. Returns when the event arrived.
    pub async fn next_change(&mut self, timeout: Duration) -> Result<Instant, String> {
        let watcher = match self.watcher.take() {
            Some(w) => w,
            None => Self::read(&self.client, &self.path).await.1,
        };
        let fired = tokio::time::timeout(timeout, watcher.changed()).await;
        let at = Instant::now();
        if fired.is_err() {
            return Err(format!(
                "no change of {} within {timeout:?} (last {:?})",
                self.path,
                self.last_text()
            ));
        }
        let (last, w) = Self::read(&self.client, &self.path).await;
        self.last = last;
        self.watcher = Some(w);
        Ok(at)
    }

    /// Waits until the data differs from `from`: returns the new data, its
    /// version and when the watch event announcing the change arrived.
    pub async fn until_not(&mut self, from: &str, timeout: Duration) -> Result<(String, i32, Instant), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let at = self
                .next_change(deadline.saturating_duration_since(Instant::now()))
                .await?;
            if let Some((d, v)) = &self.last
                && d != from.as_bytes()
            {
                return Ok((String::from_utf8_lossy(d).into_owned(), *v, at));
            }
        }
    }

    pub fn last_text(&self) -> Option<String> {
        self.last.as_ref().map(|(d, _)| String::from_utf8_lossy(d).into_owned())
    }
}

/// A Redis log line's time (`04 Dec 2026 13:15:28.515`) in milliseconds
/// of the day, and a launcher's (`2026-12-04T13:15:28.515123Z`).
pub fn redis_ms(line: &str) -> Option<u64> {
    let t = line.split_whitespace().nth(4)?;
    clock_ms(t)
}

pub fn launcher_ms(line: &str) -> Option<u64> {
    let t = line.split('T').nth(1)?.split('Z').next()?;
    clock_ms(t)
}

pub fn clock_ms(t: &str) -> Option<u64> {
    let mut p = t.split(':');
    let (h, m, s): (u64, u64, f64) = (
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
        p.next()?.parse().ok()?,
    );
    Some(h * 3_600_000 + m * 60_000 + (s * 1000.0) as u64)
}

/// `cmds` as RESP arrays of bulk strings, ready to send at once.
pub fn resp_encode(cmds: &[&[&str]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cmds {
        out.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
        for a in *c {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    out
}

/// Fails naming `who`, how many of `total` acknowledged writes are `lost`,
/// and the first few, unless none is.
pub fn assert_none_lost(who: &str, lost: &[String], total: usize) {
    assert!(
        lost.is_empty(),
        "{who} lost {} of {total} acknowledged writes: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
