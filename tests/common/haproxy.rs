//! A real HAProxy (Debian's package) in front of a group, configured with
//! the docs' recipe, `docs/haproxy.cfg`, word for word: only the frontends'
//! `bind` addresses and the backends' `server` lines are the test's own.
//! And the clients the proxy tests run through it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::*;

/// The recipe, as shipped.
pub const RECIPE: &str = include_str!("../../docs/haproxy.cfg");

/// One redis task behind the proxy.
#[derive(Debug, Clone)]
pub struct Backend {
    /// `"ip port"` of its Redis.
    pub addr: String,
    /// Its `ADMIN_PORT`.
    pub admin: u16,
}

/// Renders `recipe` with `binds` (frontend name → `ip:port`) and one server
/// line per backend in every backend section, in the recipe's own form:
/// `server rN <ip>:<port> check port <admin>`. Fails when the recipe's
/// server lines have another form (the renderer would then not run what
/// the docs say) or a frontend has no bind given.
pub fn render(recipe: &str, binds: &[(&str, String)], servers: &[Backend]) -> Result<String, String> {
    let mut out = String::new();
    let mut section: (String, String) = Default::default();
    let mut servers_written = false;
    let server_form = |l: &str| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.len() == 6
            && w[0] == "server"
            && w[2].rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && w[3] == "check"
            && w[4] == "port"
            && w[5].parse::<u16>().is_ok()
    };
    for line in recipe.lines() {
        let t = line.trim();
        let indent = &line[..line.len() - line.trim_start().len()];
        if !line.starts_with(char::is_whitespace) && !t.is_empty() && !t.starts_with('#') {
            let mut w = t.split_whitespace();
            section = (w.next().unwrap_or("").to_string(), w.next().unwrap_or("").to_string());
            servers_written = false;
        }
        if t.starts_with("bind ") {
            let (_, addr) = binds
                .iter()
                .find(|(name, _)| section == ("frontend".to_string(), name.to_string()))
                .ok_or_else(|| format!("no bind address given for {section:?}"))?;
            out.push_str(&format!("{indent}bind {addr}\n"));
            continue;
        }
        if t.starts_with("server ") {
            if !server_form(t) {
                return Err(format!(
                    "the recipe's server line {t:?} is not `server NAME IP:PORT check port ADMIN_PORT`"
                ));
            }
            if !servers_written {
                for (i, b) in servers.iter().enumerate() {
                    let (ip, port) = b.addr.split_once(' ').ok_or("bad backend address")?;
                    out.push_str(&format!("{indent}server r{i} {ip}:{port} check port {}\n", b.admin));
                }
                servers_written = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// The proxy, with its two frontends.
pub struct Haproxy {
    pub proc: Proc,
    /// `"ip port"` of the write frontend: the one address a client knows.
    pub write: String,
    /// `"ip port"` of the read frontend.
    pub read: String,
    socket: PathBuf,
    pub config: String,
}

impl Haproxy {
    /// HAProxy on `ip` (a fresh loopback address when `None`) in front of
    /// every redis task of `g`, which must serve the admin API. With `netns`,
    /// it runs in that network namespace, whose address `ip` must be.
    pub fn start(g: &group::Group, ip: Option<&str>, netns: Option<&str>) -> Haproxy {
        let servers: Vec<Backend> = g
            .redis
            .iter()
            .map(|m| Backend {
                addr: m.addr(),
                admin: m
                    .admin
                    .expect("the proxy checks the admin port: start the group with admin"),
            })
            .collect();
        Haproxy::start_with(RECIPE, &servers, ip, netns)
    }

    /// [`Haproxy::start`] with another recipe (to show that a test fails
    /// against it) and explicit servers.
    pub fn start_with(recipe: &str, servers: &[Backend], ip: Option<&str>, netns: Option<&str>) -> Haproxy {
        let t = task();
        let ip = ip.map_or(t.ip.clone(), str::to_string);
        let (wp, rp) = if netns.is_some() {
            (6379, 6380)
        } else {
            (free_port(&[&ip]), free_port(&[&ip]))
        };
        let socket = t.dir.join("haproxy.sock");
        let mut config = render(
            recipe,
            &[
                ("redis_write", format!("{ip}:{wp}")),
                ("redis_read", format!("{ip}:{rp}")),
            ],
            servers,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // The test's own: a socket to ask which servers are up. HAProxy
        // merges a second global section into the first.
        config.push_str(&format!(
            "\nglobal\n    stats socket {} level admin\n",
            socket.display()
        ));
        let path = t.dir.join("haproxy.cfg");
        std::fs::write(&path, &config).unwrap();
        let check = Command::new("haproxy").args(["-c", "-q", "-f"]).arg(&path).output();
        match check {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "haproxy -c refused the rendered recipe:\n{}\n{config}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("haproxy not installed ({e}): bash scripts/deps.sh installs it"),
        }
        let path = path.display().to_string();
        let proc = match netns {
            Some(ns) => Proc::spawn(
                "ip",
                &["netns", "exec", ns, "haproxy", "-db", "-f", &path],
                &[],
                t.dir.join("haproxy.log"),
            ),
            None => Proc::spawn("haproxy", &["-db", "-f", &path], &[], t.dir.join("haproxy.log")),
        };
        let h = Haproxy {
            proc,
            write: format!("{ip} {wp}"),
            read: format!("{ip} {rp}"),
            socket,
            config,
        };
        wait_for_sync("haproxy's stats socket", Duration::from_secs(10), || {
            if !h.proc.is_running() {
                panic!("haproxy exited:\n{}", h.proc.log());
            }
            h.stat_sync().map(drop)
        });
        h
    }

    fn stat_sync(&self) -> Result<String, String> {
        stat(&self.socket)
    }

    /// A question for [`Haproxy::up`] that needs no `Haproxy` (for a thread).
    fn ask(
        socket: &std::path::Path,
        names: &std::collections::BTreeMap<String, String>,
        backend: &str,
    ) -> impl Fn() -> Result<BTreeSet<String>, String> {
        let (socket, names, backend) = (socket.to_path_buf(), names.clone(), backend.to_string());
        move || {
            let text = stat(&socket)?;
            let mut lines = text.lines();
            let header: Vec<&str> = lines
                .next()
                .ok_or("empty stat")?
                .trim_start_matches("# ")
                .split(',')
                .collect();
            let col = |n: &str| header.iter().position(|h| *h == n).ok_or(format!("no {n} column"));
            let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
            let mut up = BTreeSet::new();
            for l in lines {
                let f: Vec<&str> = l.split(',').collect();
                if f.get(px) == Some(&backend.as_str())
                    && f.get(st).is_some_and(|s| s.starts_with("UP"))
                    && let Some(addr) = f.get(sv).and_then(|n| names.get(*n))
                {
                    up.insert(addr.clone());
                }
            }
            Ok(up)
        }
    }

    /// The servers of `backend` HAProxy sends connections to now (status
    /// `UP`, or `UP` and going down), by `"ip port"`.
    pub async fn up(&self, backend: &str) -> Result<BTreeSet<String>, String> {
        Haproxy::ask(&self.socket, &self.server_names(), backend)()
    }

    /// Server name → `"ip port"`.
    fn server_names(&self) -> std::collections::BTreeMap<String, String> {
        self.config
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.first() == Some(&"server")).then(|| (w[1].to_string(), w[2].replacen(':', " ", 1)))
            })
            .collect()
    }

    /// Waits until exactly `addr` is up in `backend`.
    pub async fn wait_only_up(&self, backend: &str, addr: &str, timeout: Duration) {
        let want: BTreeSet<String> = [addr.to_string()].into();
        wait_for(&format!("{backend} to send to {addr} only"), timeout, || async {
            let up = self.up(backend).await?;
            if up == want { Ok(()) } else { Err(format!("up: {up:?}")) }
        })
        .await;
    }

    /// HAProxy's own lines about a server changing state (`is UP`, `is
    /// DOWN`), in order.
    pub fn state_changes(&self) -> Vec<String> {
        self.proc
            .log()
            .lines()
            .filter(|l| l.contains(" is UP") || l.contains(" is DOWN"))
            .map(str::to_string)
            .collect()
    }
}

/// `show stat` on the stats socket at `socket`.
fn stat(socket: &std::path::Path) -> Result<String, String> {
    use std::os::unix::net::UnixStream;
    let mut s = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"show stat\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A RESP connection that speaks only what the proxy tests need: commands
/// whose replies are one line (`+OK`, `:n`, `-ERR …`).
pub struct Resp {
    r: BufReader<TcpStream>,
}

impl Resp {
    /// Connects to `addr` ("ip port") within 1 s and names the connection
    /// (`CLIENT SETNAME`), so that the servers' `CLIENT LIST` shows it.
    pub async fn connect(addr: &str, name: &str) -> Result<Resp, String> {
        let (ip, port) = addr.split_once(' ').ok_or("bad address")?;
        let s = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(format!("{ip}:{port}")))
            .await
            .map_err(|_| format!("{addr}: connect timed out"))?
            .map_err(|e| format!("{addr}: connect: {e}"))?;
        s.set_nodelay(true).ok();
        let mut c = Resp { r: BufReader::new(s) };
        match c
            .call(&[&["CLIENT", "SETNAME", name]], Duration::from_secs(1))
            .await?
            .as_slice()
        {
            [ok] if ok == "+OK" => Ok(c),
            other => Err(format!("{addr}: CLIENT SETNAME: {other:?}")),
        }
    }

    /// Sends `cmds` at once and reads one reply line each, within `limit`.
    /// An error reply is a line starting with `-`, not an `Err`.
    pub async fn call(&mut self, cmds: &[&[&str]], limit: Duration) -> Result<Vec<String>, String> {
        let out = super::resp_encode(cmds);
        let io = async {
            self.r.get_mut().write_all(&out).await.map_err(|e| e.to_string())?;
            let mut replies = Vec::with_capacity(cmds.len());
            for _ in cmds {
                let mut line = String::new();
                if self.r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed".to_string());
                }
                replies.push(line.trim_end().to_string());
            }
            Ok(replies)
        };
        tokio::time::timeout(limit, io)
            .await
            .map_err(|_| format!("no reply within {limit:?}"))?
    }

    /// Waits until the other end closes the connection (or `limit`
    /// passes): when that was seen.
    pub async fn closed_at(mut self, limit: Duration) -> Option<Instant> {
        let mut buf = [0u8; 64];
        let until = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(until, self.r.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// What a [`ProxyWriter`] saw.
#[derive(Debug, Default)]
pub struct ProxyLedger {
    /// Keys whose `SET` was answered `+OK` and whose `WAIT 1` counted a
    /// replica, with when the `WAIT` reply came.
    pub wait_acked: Vec<(String, Instant)>,
    /// Keys whose `SET` was answered `+OK` but no replica confirmed: `WAIT`
    /// counted none, or its reply never came.
    pub plain_ok: Vec<(String, Instant)>,
    /// Failed writes: error replies, timeouts, closed connections.
    pub errors: Vec<(Instant, String)>,
    /// Connections opened through the proxy.
    pub connections: usize,
}

impl ProxyLedger {
    /// The counts a MEASURE line reports, with how many of each kind were
    /// lost.
    pub fn tally(&self, wait_lost: usize, plain_lost: usize) -> String {
        format!(
            "{} confirmed by WAIT ({wait_lost} lost), {} plain OK ({plain_lost} lost), {} errors, {} connections",
            self.wait_acked.len(),
            self.plain_ok.len(),
            self.errors.len(),
            self.connections
        )
    }

    /// Every key the servers answered `+OK` to.
    pub fn all_ok(&self) -> Vec<String> {
        self.wait_acked
            .iter()
            .chain(&self.plain_ok)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The first write confirmed by `WAIT` after `t`, as a delay from `t`.
    pub fn first_ack_after(&self, t: Instant) -> Option<Duration> {
        self.wait_acked.iter().find(|(_, at)| *at > t).map(|(_, at)| *at - t)
    }

    /// The gap between the last confirmed write before `t` and the first
    /// after it: how long the writer was kept from writing.
    pub fn gap_around(&self, t: Instant) -> Option<Duration> {
        let before = self.wait_acked.iter().rev().find(|(_, at)| *at <= t)?.1;
        let after = self.wait_acked.iter().find(|(_, at)| *at > t)?.1;
        Some(after - before)
    }
}

/// A client that knows one address, the proxy's, and keeps one connection
/// open as client pools do: `SET`, then `WAIT 1 1000` once the `SET` is
/// answered, on it, a key at a time. Like most clients it does not reconnect on an error reply
/// (`READONLY`, `NOREPLICAS`): it retries on the same connection 20 ms
/// later. It reconnects only when the connection is closed or a reply
/// takes more than 3 s.
pub struct ProxyWriter {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<ProxyLedger>,
}

/// The name of the writer's connections in `CLIENT LIST`.
pub const WRITER_NAME: &str = "rzk-proxy-writer";

impl ProxyWriter {
    pub fn start(proxy: String, tag: &str) -> ProxyWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, tag) = (stop.clone(), tag.to_string());
        let handle = tokio::spawn(async move {
            let mut l = ProxyLedger::default();
            let mut conn: Option<Resp> = None;
            let mut i = 0u64;
            while !flag.load(Ordering::SeqCst) {
                let Some(c) = conn.as_mut() else {
                    match Resp::connect(&proxy, WRITER_NAME).await {
                        Ok(c) => {
                            l.connections += 1;
                            conn = Some(c);
                        }
                        Err(e) => {
                            l.errors.push((Instant::now(), e));
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    continue;
                };
                i += 1;
                let key = format!("{tag}:{i}");
                // SET and WAIT one after the other, so that a SET answered
                // +OK whose WAIT never came back (the connection closed)
                // still counts as acknowledged by the server: a plain OK.
                match c.call(&[&["SET", &key, "v"]], Duration::from_secs(3)).await {
                    Ok(r) if r[0] == "+OK" => match c.call(&[&["WAIT", "1", "1000"]], Duration::from_secs(3)).await {
                        Ok(w) => {
                            let acks: i64 = w[0].strip_prefix(':').and_then(|n| n.parse().ok()).unwrap_or(0);
                            if acks >= 1 {
                                l.wait_acked.push((key, Instant::now()));
                            } else {
                                l.plain_ok.push((key, Instant::now()));
                            }
                        }
                        Err(e) => {
                            l.plain_ok.push((key, Instant::now()));
                            l.errors.push((Instant::now(), format!("WAIT: {e}")));
                            conn = None;
                        }
                    },
                    Ok(r) => {
                        l.errors.push((Instant::now(), r.join(" ")));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => {
                        l.errors.push((Instant::now(), e));
                        conn = None;
                    }
                }
            }
            l
        });
        ProxyWriter { stop, handle }
    }

    pub async fn finish(self) -> ProxyLedger {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.await.expect("proxy writer")
    }
}

/// An idle connection named `name` to `addr`, opened now: when (and
/// whether, within `limit`) the other end closed it.
pub async fn idle_connection(addr: &str, name: &str, limit: Duration) -> tokio::task::JoinHandle<Option<Instant>> {
    let c = Resp::connect(addr, name)
        .await
        .unwrap_or_else(|e| panic!("idle connection {name} to {addr}: {e}"));
    tokio::spawn(c.closed_at(limit))
}

/// Names of the normal clients connected to `addr` now (`CLIENT LIST TYPE
/// normal`), without this query's own.
pub async fn client_names(addr: &str) -> Result<Vec<String>, String> {
    let v = redis_cmd(addr, None, &["CLIENT", "LIST", "TYPE", "normal"]).await?;
    let text = value_text(&v).ok_or("odd CLIENT LIST reply")?;
    Ok(text
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("name=")).map(str::to_string))
        .collect())
}

/// The record's changes, each with when the watch told of it: a
/// ZooKeeper watch on `<root>/master`, set now.
pub struct RecordWatch {
    pub changes: Arc<Mutex<Vec<(Instant, String)>>>,
    handle: tokio::task::JoinHandle<()>,
}

impl RecordWatch {
    pub async fn start(root: &str) -> RecordWatch {
        let path = format!("{root}/master");
        let c = zk_client().await;
        let changes: Arc<Mutex<Vec<(Instant, String)>>> = Default::default();
        let mut w = c
            .watch(&path, zookeeper_client::AddWatchMode::Persistent)
            .await
            .unwrap_or_else(|e| panic!("watch {path}: {e}"));
        let seen = changes.clone();
        let handle = tokio::spawn(async move {
            let c = c;
            loop {
                let e = w.changed().await;
                let at = Instant::now();
                if e.event_type == zookeeper_client::EventType::Session {
                    if e.session_state.is_terminated() {
                        return;
                    }
                    continue;
                }
                let data = zk_get(&c, &path)
                    .await
                    .map(|(d, _)| String::from_utf8_lossy(&d).into_owned())
                    .unwrap_or_default();
                seen.lock().unwrap().push((at, data));
            }
        });
        RecordWatch { changes, handle }
    }

    /// When the record first named something other than `old`, and what.
    pub fn moved_from(&self, old: &str) -> Option<(Instant, String)> {
        self.changes.lock().unwrap().iter().find(|(_, d)| d != old).cloned()
    }

    /// Waits up to `timeout` for the record to move away from `old`.
    pub async fn wait_moved(&self, old: &str, timeout: Duration) -> (Instant, String) {
        wait_for("the record to move", timeout, || async {
            self.moved_from(old)
                .ok_or_else(|| format!("changes so far: {:?}", self.changes.lock().unwrap()))
        })
        .await
    }
}

impl Drop for RecordWatch {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Each pool seen, with when.
pub type PoolChanges = Arc<Mutex<Vec<(Instant, BTreeSet<String>)>>>;

/// How a proxy's pool changed: `show stat` asked every 20 ms, each change
/// of the set of servers it sends `backend`'s connections to stamped with
/// when it was seen (so within 20 ms of HAProxy's own change).
pub struct PoolWatch {
    pub changes: PoolChanges,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PoolWatch {
    pub fn start(proxy: &Haproxy, backend: &str) -> PoolWatch {
        let changes: PoolChanges = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, flag) = (changes.clone(), stop.clone());
        let (socket, names, backend) = (proxy.socket.clone(), proxy.server_names(), backend.to_string());
        let handle = std::thread::spawn(move || {
            let ask = Haproxy::ask(&socket, &names, &backend);
            while !flag.load(Ordering::SeqCst) {
                if let Ok(up) = ask() {
                    let mut c = seen.lock().unwrap();
                    if c.last().is_none_or(|(_, last)| *last != up) {
                        c.push((Instant::now(), up));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        PoolWatch {
            changes,
            stop,
            handle: Some(handle),
        }
    }

    /// The first time `addr` was seen out of the pool after `t`, if it
    /// stayed out from then on.
    pub fn left_for_good(&self, addr: &str, t: Instant) -> Option<Instant> {
        let c = self.changes.lock().unwrap();
        let i = c.iter().position(|(at, up)| *at >= t && !up.contains(addr))?;
        c[i..].iter().all(|(_, up)| !up.contains(addr)).then_some(c[i].0)
    }

    /// Every change, relative to `t`, for messages.
    pub fn describe(&self, t: Instant) -> String {
        self.changes
            .lock()
            .unwrap()
            .iter()
            .map(|(at, up)| {
                let d = if *at >= t {
                    format!("+{:?}", *at - t)
                } else {
                    format!("-{:?}", t - *at)
                };
                format!("{d}: {up:?}")
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Drop for PoolWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
