//! The benchmark (`scripts/bench.sh`, `cargo bench --bench rzk`): real
//! ZooKeeper, redis-server and redis-sentinel processes on loopback, each
//! figure measured over repeated rounds and printed next to a baseline taken
//! in the same run, because absolute times differ between machines.
//!
//! It sits beside the test harness and uses it, but is a module of only
//! the two crates that run it: `tests/bench_smoke.rs` (once, with tiny
//! round counts, proving it works and asserting no times) and the bench
//! target (in full). The other test binaries do not compile it.
#![allow(dead_code)] // each of the two uses a part (the smoke test `tiny`, the bench `full`)

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use zookeeper_client::{Client, Error as ZkError};

use crate::common::group::*;
use crate::common::*;

/// How much to run.
#[derive(Debug, Clone)]
pub struct Opts {
    /// P1/P2 rounds per side (rzk and raw, interleaved).
    pub failover_rounds: usize,
    /// P3 group sizes.
    pub sizes: Vec<usize>,
    /// P3 rounds per size.
    pub start_rounds: usize,
    /// P5 rounds per side.
    pub pong_rounds: usize,
    /// F1/F2 rounds per side (rzk and raw, interleaved).
    pub forced_rounds: usize,
    /// P2c rounds per side (rzk and raw, interleaved).
    pub crash_rounds: usize,
    /// Length of each idle window of the steady-state cost.
    pub idle: Duration,
    /// Only these parts (`P6`, `P5`, `P2` for P1/P2, `T` for TLS on vs off,
    /// `P2c`, `F` for F1–F3, `P3`, `P4` for the idle costs); all when empty.
    pub only: Vec<String>,
}

impl Opts {
    /// The full run that `BENCHMARKS.md` records.
    pub fn full() -> Opts {
        Opts {
            failover_rounds: 10,
            sizes: vec![5, 10, 30],
            start_rounds: 3,
            pong_rounds: 10,
            forced_rounds: 5,
            crash_rounds: 5,
            idle: Duration::from_secs(60),
            only: vec![],
        }
    }

    /// One of everything but T, for the smoke test. T's round is P2's
    /// (which the smoke test runs) on a TLS group and a plain one, 12 s in
    /// all with one round each; tests/tls.rs runs that failover over TLS.
    pub fn tiny() -> Opts {
        Opts {
            failover_rounds: 1,
            sizes: vec![3],
            start_rounds: 1,
            pong_rounds: 1,
            forced_rounds: 1,
            crash_rounds: 1,
            idle: Duration::from_secs(5),
            only: PARTS.iter().filter(|p| **p != "T").map(|p| p.to_string()).collect(),
        }
    }

    /// Reads `--rounds N`, `--sizes 5,10`, `--start-rounds N`,
    /// `--pong-rounds N`, `--forced-rounds N`, `--crash-rounds N`, `--idle-secs N`,
    /// `--only P2,F` over [`Opts::full`].
    pub fn from_args(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts::full();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--bench" {
                continue; // cargo bench passes it
            }
            let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
            let n = || v.parse::<usize>().map_err(|_| format!("{a} {v}: expected a number"));
            match a.as_str() {
                "--rounds" => o.failover_rounds = n()?.max(1),
                "--start-rounds" => o.start_rounds = n()?.max(1),
                "--pong-rounds" => o.pong_rounds = n()?.max(1),
                "--forced-rounds" => o.forced_rounds = n()?.max(1),
                "--crash-rounds" => o.crash_rounds = n()?.max(1),
                "--only" => {
                    o.only = v.split(',').map(|p| p.trim().to_uppercase()).collect();
                    if let Some(p) = o.only.iter().find(|p| !PARTS.contains(&p.as_str())) {
                        return Err(format!("--only {v}: unknown part {p} (known: {})", PARTS.join(",")));
                    }
                }
                "--idle-secs" => o.idle = Duration::from_secs(n()?.max(1) as u64),
                "--sizes" => {
                    o.sizes = v
                        .split(',')
                        .map(|s| {
                            s.trim()
                                .parse::<usize>()
                                .map_err(|_| format!("--sizes {v}: expected numbers like 5,10,30"))
                        })
                        .collect::<Result<_, _>>()?
                }
                _ => {
                    return Err(format!(
                        "unknown option {a} (known: --rounds --sizes --start-rounds --pong-rounds --forced-rounds --crash-rounds --idle-secs --only)"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// The parts `--only` can pick.
const PARTS: [&str; 8] = ["P6", "P5", "P2", "T", "P2C", "F", "P3", "P4"];

impl Opts {
    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// Samples of one figure.
#[derive(Debug, Clone, Default)]
pub struct Series(pub Vec<f64>);

impl Series {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }
    /// Nearest-rank percentile; `None` without samples.
    pub fn pct(&self, p: f64) -> Option<f64> {
        let v = self.sorted();
        if v.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
        Some(v[rank.min(v.len()) - 1])
    }
    pub fn median(&self) -> Option<f64> {
        let v = self.sorted();
        match v.len() {
            0 => None,
            n if n % 2 == 1 => Some(v[n / 2]),
            n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub what: String,
    pub unit: &'static str,
    pub ours: Series,
    pub base_what: String,
    pub base: Series,
    pub target: String,
}

impl Row {
    fn new(id: &str, what: &str, unit: &'static str, base_what: &str, target: &str) -> Row {
        Row {
            id: id.into(),
            what: what.into(),
            unit,
            ours: Series::default(),
            base_what: base_what.into(),
            base: Series::default(),
            target: target.into(),
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Free-text lines printed under the table (arithmetic, notes).
    pub notes: Vec<String>,
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

impl Report {
    /// The table as Markdown.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| | measure | unit | n | min | median | p99 | max | baseline (same run) | n | baseline median | ratio | target |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let ratio = match (r.ours.median(), r.base.median()) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.id,
                r.what,
                r.unit,
                r.ours.0.len(),
                fmt(r.ours.pct(0.0)),
                fmt(r.ours.median()),
                fmt(r.ours.pct(99.0)),
                fmt(r.ours.pct(100.0)),
                r.base_what,
                r.base.0.len(),
                fmt(r.base.median()),
                ratio,
                r.target
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "\n{n}");
        }
        s
    }

    pub fn row(&self, id: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.id == id)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs every part of the benchmark and returns the table.
pub async fn run(o: &Opts) -> Report {
    let mut rep = Report::default();
    if o.runs("P6") {
        eprintln!("bench: P6 binary sizes");
        rep.rows.push(p6_sizes());
    }
    if o.runs("P5") {
        eprintln!("bench: P5 start to PONG, {} rounds", o.pong_rounds);
        rep.rows.push(p5_pong(o.pong_rounds).await);
    }
    if o.runs("P2") {
        eprintln!(
            "bench: P1/P2 failover, {} rounds each side, interleaved",
            o.failover_rounds
        );
        rep.rows.extend(p1_p2_failover(o.failover_rounds).await);
    }
    if o.runs("T") {
        eprintln!(
            "bench: T failover and RSS, TLS on vs off, {} rounds each side, interleaved",
            o.failover_rounds
        );
        rep.rows.extend(tls_on_off(o.failover_rounds).await);
    }
    if o.runs("P2C") {
        eprintln!(
            "bench: P2c crash of the master's server, {} rounds each side, interleaved",
            o.crash_rounds
        );
        rep.rows.push(p2c_crash(o.crash_rounds).await);
    }
    if o.runs("F") {
        eprintln!(
            "bench: F1/F2 forced failover under a WAIT 1 writer, {} rounds each side, interleaved",
            o.forced_rounds
        );
        let (rows, note) = f1_f2_forced(o.forced_rounds).await;
        rep.rows.extend(rows);
        rep.notes.push(note);
    }
    if o.runs("P3") {
        for &n in &o.sizes {
            eprintln!("bench: P3 {n} launchers at once, {} rounds", o.start_rounds);
            rep.rows.push(p3_start(n, o.start_rounds).await);
        }
    }
    if o.runs("P4") {
        eprintln!("bench: P4 and steady-state cost, idle windows of {:?}", o.idle);
        let (rows, notes) = idle_cost(o.idle).await;
        rep.rows.extend(rows);
        rep.notes.extend(notes);
    }
    rep
}

// ---------------------------------------------------------------------------
// P6: binary sizes
// ---------------------------------------------------------------------------

fn p6_sizes() -> Row {
    let mut r = Row::new(
        "P6",
        "binary size (rzk-redis, rzk-sentinel, rzk-watcher, rzkctl)",
        "MB",
        "redis-server binary",
        "≤ 5 MB each",
    );
    for b in [RZK_REDIS, RZK_SENTINEL, RZK_WATCHER, RZKCTL] {
        let len = fs::metadata(b).map(|m| m.len()).unwrap_or(0);
        r.ours.0.push(len as f64 / 1e6);
    }
    let redis = which("redis-server")
        .and_then(|p| fs::metadata(p).ok())
        .map(|m| m.len());
    r.base.0.extend(redis.map(|l| l as f64 / 1e6));
    r
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
        .and_then(|p| fs::canonicalize(p).ok())
}

// ---------------------------------------------------------------------------
// P5: start -> PONG
// ---------------------------------------------------------------------------

/// Sends `PING` on a fresh connection; true on `+PONG`.
async fn pong(ip: &str, port: u16) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"+PONG"))
    };
    tokio::time::timeout(Duration::from_millis(200), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Time from `t0` until `ip:port` answers PONG (polled every millisecond).
async fn until_pong(ip: &str, port: u16, t0: Instant, what: &str) -> Duration {
    let deadline = t0 + Duration::from_secs(30);
    loop {
        if pong(ip, port).await {
            return t0.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{what} on {ip}:{port} gave no PONG within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn p5_pong(rounds: usize) -> Row {
    let mut r = Row::new(
        "P5",
        "rzk-redis start → PONG, fresh group",
        "ms",
        "bare redis-server start → PONG",
        "≤ 15 ms over bare",
    );
    // One warm-up round of each, not counted: the first connection to a
    // fresh ZooKeeper runs through its JIT's cold paths (a first round of
    // 600 ms was seen, against 20-30 ms after it).
    for round in 0..=rounds {
        let mut g = Group::new("bench-p5");
        g.launcher_defaults = true;
        let t = task();
        let t0 = Instant::now();
        g.start_redis_as(t.clone());
        let ours = ms(until_pong(&t.ip, t.port, t0, "rzk-redis").await);
        drop(g);
        let t = task();
        let t0 = Instant::now();
        let p = plain_redis_server(&t);
        let bare = ms(until_pong(&t.ip, t.port, t0, "redis-server").await);
        drop(p);
        eprintln!(
            "bench: P5 round {round}{}: rzk-redis {ours:.1} ms, bare {bare:.1} ms",
            if round == 0 { " (warm-up)" } else { "" }
        );
        if round > 0 {
            r.ours.0.push(ours);
            r.base.0.push(bare);
        }
    }
    // The overhead is the difference of the medians; keep it visible.
    if let (Some(a), Some(b)) = (r.ours.median(), r.base.median()) {
        r.what = format!("rzk-redis start → PONG, fresh group (median overhead {:.1} ms)", a - b);
    }
    r
}

// ---------------------------------------------------------------------------
// P1/P2: failover
// ---------------------------------------------------------------------------

/// The instant of the first `+switch-master` any of `sentinels` publishes.
async fn switch_ears(
    sentinels: &[String],
    channel: &str,
) -> (
    mpsc::UnboundedReceiver<(String, Instant)>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = vec![];
    for s in sentinels {
        let (addr, tx) = (s.clone(), tx.clone());
        let (ip, port) = addr.split_once(' ').expect("ip port");
        let mut ps = match crate::common::tls::client() {
            // A TLS group (part T): the checks' own configuration.
            Some(tls) => {
                let stream = crate::common::tls::connect(tls.clone(), ip, port.parse().expect("port"))
                    .await
                    .expect("TLS to a sentinel");
                let settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
                redis::aio::PubSub::new(&settings, stream)
                    .await
                    .expect("subscribe to a sentinel")
            }
            None => {
                let client = redis::Client::open(format!("redis://{ip}:{port}")).expect("sentinel url");
                client.get_async_pubsub().await.expect("subscribe to a sentinel")
            }
        };
        ps.subscribe(channel).await.expect("subscribe to a failover event");
        tasks.push(tokio::spawn(async move {
            let mut stream = ps.into_on_message();
            if stream.next().await.is_some() {
                let _ = tx.send((addr, Instant::now()));
            }
        }));
    }
    (rx, tasks)
}

/// Waits (on ZooKeeper watches, not polls) until `path` holds something
/// other than `old`; returns the new data and the instant the watch fired.
async fn record_change(c: &Client, path: &str, old: &str, timeout: Duration) -> (String, Instant) {
    let deadline = Instant::now() + timeout;
    loop {
        let (data, w) = match c.get_and_watch_data(path).await {
            Ok((d, _, w)) => (Some(String::from_utf8_lossy(&d).into_owned()), w),
            Err(ZkError::NoNode) => match c.check_and_watch_stat(path).await {
                Ok((_, w)) => (None, w),
                Err(e) => panic!("watching {path}: {e}"),
            },
            Err(e) => panic!("watching {path}: {e}"),
        };
        if let Some(d) = data
            && d != old
        {
            return (d, Instant::now());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, w.changed()).await {
            Ok(_) => {
                let fired = Instant::now();
                if let Ok((d, _)) = c.get_data(path).await {
                    let d = String::from_utf8_lossy(&d).into_owned();
                    if d != old {
                        return (d, fired);
                    }
                }
            }
            Err(_) => panic!("{path} still {old:?} after {timeout:?}"),
        }
    }
}

async fn until_master(addr: &str, deadline: Instant) -> Instant {
    loop {
        if role(addr).await.as_deref() == Ok("master") {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{addr} never answered ROLE master");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

const BUDGET: Duration = Duration::from_secs(30);

/// A fresh 3+3+1 group `g` as shipped, down-after `down_after_ms`, settled:
/// every Sentinel knows every replica, the watcher has reconciled.
async fn settled_group(mut g: Group, down_after_ms: u64) -> (Group, String, Vec<String>) {
    g.launcher_defaults = true;
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", down_after_ms.to_string()));
    let g = Group::start_with(g, 3, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let replicas: Vec<String> = g.redis.iter().map(Member::addr).filter(|a| *a != master).collect();
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    wait_sentinels_know(&sentinels, &replicas, None, Duration::from_secs(30)).await;
    wait_for("the watcher to reconcile", Duration::from_secs(15), || async {
        let log = g.watchers[0].proc.log();
        if log.contains("reconciled after subscribing") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    (g, master, sentinels)
}

/// What one rzk failover round measured.
struct Failover {
    /// P1: first +promoted-slave → watch fired.
    p1: f64,
    /// P2: SIGKILL → the record names a server answering ROLE master.
    p2: f64,
    /// SIGKILL → first +switch-master.
    switch: f64,
    /// RSS (MB) of each launcher of the settled group, by kind, just
    /// before the SIGKILL.
    rss: BTreeMap<&'static str, Vec<f64>>,
}

/// One rzk round: the fresh 3+3+1 group `g`, settled; SIGKILL the
/// master's task.
async fn rzk_failover_round(g: Group) -> Failover {
    let (g, master, sentinels) = settled_group(g, DOWN_AFTER_MS).await;
    let mut rss: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for (kind, ms) in [
        ("rzk-redis", &g.redis),
        ("rzk-sentinel", &g.sentinels),
        ("rzk-watcher", &g.watchers),
    ] {
        rss.insert(
            kind,
            ms.iter().map(|m| rss_threads(m.proc.pid()).0 as f64 / 1024.0).collect(),
        );
    }
    let (mut promoted, promoted_tasks) = switch_ears(&sentinels, "+promoted-slave").await;
    let (mut ears, tasks) = switch_ears(&sentinels, "+switch-master").await;
    let c = g.zk_client().await;
    let path = format!("{}/master", g.root);
    let mi = g.master_index().await.expect("a master");
    let t0 = Instant::now();
    g.redis[mi].proc.signal(libc::SIGKILL);
    let (new, fired) = record_change(&c, &path, &master, BUDGET).await;
    let live = until_master(&new, t0 + BUDGET).await;
    let (_, first) = tokio::time::timeout(Duration::from_secs(5), ears.recv())
        .await
        .expect("the record moved but no +switch-master was heard")
        .expect("ears");
    let (_, promotion) = tokio::time::timeout(Duration::from_secs(5), promoted.recv())
        .await
        .expect("the record moved but no +promoted-slave was heard")
        .expect("ears");
    for t in tasks.into_iter().chain(promoted_tasks) {
        t.abort();
    }
    // Signed: the bench's own subscription may hear the event after the
    // watcher has already written the record.
    let p1 = if fired >= promotion {
        ms(fired - promotion)
    } else {
        -ms(promotion - fired)
    };
    Failover {
        p1,
        p2: ms(live - t0),
        switch: ms(first - t0),
        rss,
    }
}

/// One P2c round: a fresh 3+3+1 group at the contract's default
/// down-after; SIGKILL of the master's `redis-server` only (its launcher
/// lives) → the record names a server answering ROLE master.
async fn rzk_crash_round() -> f64 {
    let (g, master, _) = settled_group(Group::new("bench-p2c"), CRASH_DOWN_AFTER_MS).await;
    let c = zk_client().await;
    let path = format!("{}/master", g.root);
    let pid = server_pid(&master).await;
    let t0 = Instant::now();
    signal_pid(pid, libc::SIGKILL);
    let (new, _) = record_change(&c, &path, &master, BUDGET).await;
    let live = until_master(&new, t0 + BUDGET).await;
    ms(live - t0)
}

/// The contract's default `SENTINEL_DOWN_AFTER_MS`, for P2c.
const CRASH_DOWN_AFTER_MS: u64 = 5000;

/// A raw Sentinel group: 3 redis-server, 3 redis-sentinel, the same
/// settings as the rzk group's (down-after, failover-timeout, quorum 2).
struct RawGroup {
    servers: Vec<(Task, Proc)>,
    sentinels: Vec<(Task, Proc)>,
}

fn raw_server(t: &Task, replica_of: Option<&Task>) -> Proc {
    let port = t.port.to_string();
    let mut args = vec![
        "--port".to_string(),
        port,
        // As the launcher renders it: both addresses, and announced by
        // the task's own (a replica's link comes from 127.0.0.1).
        "--bind".into(),
        format!("{} 127.0.0.1", t.ip),
        "--replica-announce-ip".into(),
        t.ip.clone(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--repl-diskless-sync-delay".into(),
        "0".into(),
        "--dir".into(),
        t.dir.display().to_string(),
    ];
    if let Some(m) = replica_of {
        args.extend(["--replicaof".into(), m.ip.clone(), m.port.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::spawn("redis-server", &args, &[], t.dir.join("redis.log"))
}

impl RawGroup {
    async fn start(n: usize, sentinels: usize, down_after_ms: u64) -> RawGroup {
        let tasks: Vec<Task> = (0..n).map(|_| task()).collect();
        let mut servers = vec![];
        for (i, t) in tasks.iter().enumerate() {
            let p = raw_server(t, (i > 0).then(|| &tasks[0]));
            servers.push((t.clone(), p));
        }
        let mut sents = vec![];
        for _ in 0..sentinels {
            let t = task();
            let conf = t.dir.join("sentinel.conf");
            fs::write(
                &conf,
                format!(
                    "port {}\nbind {ip} 127.0.0.1\nsentinel announce-ip {ip}\ndir {}\nsentinel monitor mymaster {} {} 2\n\
                     sentinel down-after-milliseconds mymaster {down_after_ms}\n\
                     sentinel failover-timeout mymaster {FAILOVER_TIMEOUT_MS}\n\
                     sentinel parallel-syncs mymaster 1\n",
                    t.port,
                    t.dir.display(),
                    tasks[0].ip,
                    tasks[0].port,
                    ip = t.ip
                ),
            )
            .expect("write sentinel.conf");
            let p = Proc::spawn(
                "redis-sentinel",
                &[conf.to_str().unwrap()],
                &[],
                t.dir.join("sentinel.log"),
            );
            sents.push((t, p));
        }
        RawGroup {
            servers,
            sentinels: sents,
        }
    }

    fn master(&self) -> String {
        self.servers[0].0.addr()
    }

    fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(|(t, _)| t.addr()).collect()
    }

    /// Waits until every replica is linked to the first server, every
    /// Sentinel counts the two others (as in the rzk group) and knows every
    /// replica as promotable.
    async fn settle(&self) {
        self.linked(Duration::from_secs(30)).await;
        let replicas: Vec<String> = self.servers[1..].iter().map(|(t, _)| t.addr()).collect();
        let sentinels = self.sentinel_addrs();
        let peers = (sentinels.len() - 1).to_string();
        for s in &sentinels {
            wait_for(
                "each raw Sentinel to see its peers",
                Duration::from_secs(30),
                || async {
                    let n = sentinel_master_field(s, "num-other-sentinels").await?;
                    if n == peers {
                        Ok(())
                    } else {
                        Err(format!("{s}: {n} peers"))
                    }
                },
            )
            .await;
        }
        wait_sentinels_know(&sentinels, &replicas, None, Duration::from_secs(30)).await;
    }

    /// Waits until every replica is linked to the first server.
    async fn linked(&self, timeout: Duration) {
        let master = self.master();
        let want = self.servers.len() - 1;
        wait_for("the raw replicas to link", timeout, || async {
            let online = online_replicas(&master).await?;
            if online >= want {
                Ok(())
            } else {
                Err(format!("{online} of {want} replicas online"))
            }
        })
        .await;
    }
}

/// `state=online` replicas in the master's `INFO replication`.
async fn online_replicas(master: &str) -> Result<usize, String> {
    let v = redis_cmd(master, None, &["INFO", "replication"]).await?;
    let text = value_text(&v).ok_or_else(|| format!("INFO gave {v:?}"))?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count())
}

/// One raw round: SIGKILL the master → the first `+switch-master`.
async fn raw_failover_round(down_after_ms: u64) -> f64 {
    let g = RawGroup::start(3, 3, down_after_ms).await;
    g.settle().await;
    let (mut ears, tasks) = switch_ears(&g.sentinel_addrs(), "+switch-master").await;
    let t0 = Instant::now();
    g.servers[0].1.signal(libc::SIGKILL);
    let (_, first) = tokio::time::timeout(BUDGET, ears.recv())
        .await
        .expect("the raw group gave no +switch-master")
        .expect("ears");
    for t in tasks {
        t.abort();
    }
    ms(first - t0)
}

async fn p1_p2_failover(rounds: usize) -> Vec<Row> {
    let mut p1 = Row::new(
        "P1",
        "first +promoted-slave anywhere → ZK watch on /master fires",
        "ms",
        "-",
        "≤ 10 ms p99",
    );
    let mut p2 = Row::new(
        "P2",
        "SIGKILL master task → record names a server answering ROLE master",
        "ms",
        "raw Sentinel group: SIGKILL master → first +switch-master",
        "ratio ≤ 1.05",
    );
    let mut switch = Row::new(
        "P2s",
        "rzk group: SIGKILL master → first +switch-master",
        "ms",
        "raw Sentinel group: SIGKILL master → first +switch-master",
        "no slower than raw",
    );
    for i in 0..rounds {
        let Failover {
            p1: a,
            p2: b,
            switch: s,
            ..
        } = rzk_failover_round(Group::new("bench-p2")).await;
        let raw = raw_failover_round(DOWN_AFTER_MS).await;
        eprintln!(
            "bench: failover round {i}: P1 {a:.1} ms, P2 {b:.0} ms (rzk switch {s:.0} ms), raw switch {raw:.0} ms"
        );
        p1.ours.0.push(a);
        p2.ours.0.push(b);
        p2.base.0.push(raw);
        switch.ours.0.push(s);
        switch.base.0.push(raw);
    }
    vec![p1, p2, switch]
}

// ---------------------------------------------------------------------------
// T: TLS on vs off
// ---------------------------------------------------------------------------

/// Part T: P2's SIGKILL round on a 3+3+1 group with every link TLS
/// (contract section 11: the three files, ZooKeeper over `tcp+tls://` with
/// client authentication, the admin API over HTTPS) and on the same group
/// in plain text, rounds interleaved; both as shipped (`ADMIN_PORT` set)
/// and on one ZooKeeper, its TLS port for one and its plain port for the
/// other. The RSS of every launcher is read in each settled group, just
/// before the kill. The checks follow the group: TLS with the PKI's leaf
/// during a TLS round, plain text otherwise.
async fn tls_on_off(rounds: usize) -> Vec<Row> {
    use crate::common::tls::{ZkTls, checks_in_plain_text, checks_over_tls, pki, readable_by_the_redis_group};
    let pki = pki();
    let zk = ZkTls::start_with(pki, true);
    let dir = fresh_dir("bench-tls-");
    let (cert, key, ca) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
    fs::copy(pki.ca_cert(), &ca).expect("copy the CA");
    readable_by_the_redis_group(&ca);
    pki.install(pki.cert(), pki.key(), &cert, &key);
    let group = |tls: bool| {
        let mut g = Group::new(if tls { "bench-tls" } else { "bench-plain" });
        g.admin = true;
        // The checks read ZooKeeper on its plain port.
        g.zk = Some(zk.connect_string());
        if tls {
            for (k, f) in [
                ("TLS_CERT_FILE", &cert),
                ("TLS_KEY_FILE", &key),
                ("TLS_CA_CERT_FILE", &ca),
            ] {
                g.extra.push((k, f.display().to_string()));
            }
            g.extra.push(("ZK_HOSTS", zk.secure_connect_string()));
        }
        g
    };
    let mut time = Row::new(
        "T",
        "TLS on (every link, ZooKeeper included), 3+3+1, ADMIN_PORT set: SIGKILL master task → record names a server answering ROLE master",
        "ms",
        "the same group in plain text",
        "ratio ≤ 1.1",
    );
    let kinds = ["rzk-redis", "rzk-sentinel", "rzk-watcher"];
    let mut rss: Vec<Row> = kinds
        .iter()
        .map(|k| {
            Row::new(
                &format!("T {k}"),
                &format!("{k} RSS, TLS on, settled group before the kill"),
                "MB",
                "the same in plain text",
                "-",
            )
        })
        .collect();
    for i in 0..rounds {
        checks_over_tls(pki);
        let on = rzk_failover_round(group(true)).await;
        checks_in_plain_text();
        let off = rzk_failover_round(group(false)).await;
        eprintln!(
            "bench: TLS round {i}: on {:.0} ms (switch {:.0} ms), off {:.0} ms (switch {:.0} ms); RSS MB on {:?}, off {:?}",
            on.p2, on.switch, off.p2, off.switch, on.rss, off.rss
        );
        time.ours.0.push(on.p2);
        time.base.0.push(off.p2);
        for (row, kind) in rss.iter_mut().zip(kinds) {
            row.ours.0.extend(on.rss.get(kind).into_iter().flatten());
            row.base.0.extend(off.rss.get(kind).into_iter().flatten());
        }
    }
    drop(zk);
    std::iter::once(time).chain(rss).collect()
}

async fn p2c_crash(rounds: usize) -> Row {
    let mut r = Row::new(
        "P2c",
        "SIGKILL of the master's redis-server only (its launcher lives), down-after 5000 ms → record names a server answering ROLE master",
        "ms",
        "raw Sentinel group, down-after 5000 ms: SIGKILL master → first +switch-master",
        "≤ 1500 ms, ratio ≤ 0.3",
    );
    for i in 0..rounds {
        let ours = rzk_crash_round().await;
        let raw = raw_failover_round(CRASH_DOWN_AFTER_MS).await;
        eprintln!("bench: crash round {i}: rzk {ours:.0} ms, raw switch {raw:.0} ms");
        r.ours.0.push(ours);
        r.base.0.push(raw);
    }
    r
}

// ---------------------------------------------------------------------------
// F1/F2: a failover forced at a Sentinel under a WAIT 1 writer
// ---------------------------------------------------------------------------

/// The Sentinels' `down-after-milliseconds` in these rounds, on both sides:
/// the tests' value, short, which makes the race likelier.
const FORCED_DOWN_AFTER_MS: u64 = 1000;

/// What one forced failover cost the writer.
struct Forced {
    acked: usize,
    lost: usize,
    /// The longest time between two acknowledged writes that survived:
    /// what a client really waited, since a write acknowledged and then
    /// lost is no write.
    gap_ms: f64,
    /// The longest time between two acknowledged writes, lost ones
    /// included: what the client saw at the time.
    seen_gap_ms: f64,
}

/// Lets the writer run, forces `SENTINEL FAILOVER` at `sentinel`, waits
/// until the old master `old` follows a new one, lets the writer reach it,
/// and checks the ledger against the new master.
async fn forced_failover(sentinel: &str, old: &str, writer: Writer) -> Forced {
    tokio::time::sleep(Duration::from_secs(1)).await;
    match redis_cmd(sentinel, None, &["SENTINEL", "FAILOVER", "mymaster"]).await {
        Ok(redis::Value::Okay) => {}
        other => panic!("SENTINEL FAILOVER at {sentinel}: {other:?}"),
    }
    let new = wait_for("the old master to follow a new one", BUDGET, || async {
        let host = info_field(old, "replication", "master_host").await?;
        let port = info_field(old, "replication", "master_port").await?;
        let new = format!("{host} {port}");
        match role(&new).await?.as_str() {
            "master" => Ok(new),
            r => Err(format!("{old} follows {new}, which is {r}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ledger = writer.finish().await;
    let missing: std::collections::HashSet<String> =
        missing_keys(&new, None, &ledger.acked).await.into_iter().collect();
    let kept: Vec<Instant> = ledger
        .acked
        .iter()
        .zip(&ledger.acked_by)
        .filter(|(k, _)| !missing.contains(*k))
        .map(|(_, (_, t))| *t)
        .collect();
    let gap = kept.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    Forced {
        acked: ledger.acked.len(),
        lost: missing.len(),
        gap_ms: ms(gap),
        seen_gap_ms: ms(ledger.longest_gap),
    }
}

async fn rzk_forced_round() -> Forced {
    let mut g = Group::new("bench-forced");
    g.launcher_defaults = true;
    g.extra
        .push(("SENTINEL_DOWN_AFTER_MS", FORCED_DOWN_AFTER_MS.to_string()));
    let g = Group::start_with(g, 3, 3, 2).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let replicas: Vec<String> = g.redis.iter().map(Member::addr).filter(|a| *a != master).collect();
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    wait_sentinels_know(&sentinels, &replicas, None, Duration::from_secs(30)).await;
    let writer = g.start_writer("forced", None, 1);
    forced_failover(&sentinels[0], &master, writer).await
}

async fn raw_forced_round() -> Forced {
    let g = RawGroup::start(3, 3, FORCED_DOWN_AFTER_MS).await;
    g.settle().await;
    let sentinels = g.sentinel_addrs();
    let writer = spawn_writer_at(None, sentinels.clone(), None, "forced", None, 1, false);
    forced_failover(&sentinels[0], &g.master(), writer).await
}

async fn f1_f2_forced(rounds: usize) -> (Vec<Row>, String) {
    let mut lost = Row::new(
        "F1",
        "SENTINEL FAILOVER forced at a Sentinel, 3+3+2, down-after 1000 ms: acknowledged writes (SET + WAIT 1 ≥ 1) lost",
        "writes",
        "raw Sentinel group 3+3, same writer and failover",
        "0",
    );
    let mut gap = Row::new(
        "F2",
        "the same failover: longest gap between two acknowledged writes that survived",
        "ms",
        "raw Sentinel group 3+3, same writer and failover",
        "≤ raw + 500 ms",
    );
    let mut seen = Row::new(
        "F3",
        "the same failover: longest gap between two acknowledged writes as the writer saw it (lost ones included)",
        "ms",
        "raw Sentinel group 3+3, same writer and failover",
        "≤ raw + 500 ms",
    );
    let (mut acked, mut raw_acked) = (0, 0);
    for i in 0..rounds {
        let ours = rzk_forced_round().await;
        let raw = raw_forced_round().await;
        eprintln!(
            "bench: forced round {i}: rzk {} lost of {} acknowledged, gap {:.0} ms (seen {:.0} ms); raw {} lost of {}, gap {:.0} ms (seen {:.0} ms)",
            ours.lost, ours.acked, ours.gap_ms, ours.seen_gap_ms, raw.lost, raw.acked, raw.gap_ms, raw.seen_gap_ms
        );
        seen.ours.0.push(ours.seen_gap_ms);
        seen.base.0.push(raw.seen_gap_ms);
        acked += ours.acked;
        raw_acked += raw.acked;
        lost.ours.0.push(ours.lost as f64);
        lost.base.0.push(raw.lost as f64);
        gap.ours.0.push(ours.gap_ms);
        gap.base.0.push(raw.gap_ms);
    }
    let sum = |s: &Series| s.0.iter().sum::<f64>();
    let note = format!(
        "F1 in total: rzk lost {} of {acked} acknowledged writes, raw Sentinel {} of {raw_acked}, over {rounds} forced failovers each.",
        sum(&lost.ours),
        sum(&lost.base)
    );
    (vec![lost, gap, seen], note)
}

// ---------------------------------------------------------------------------
// P3: N launchers at once
// ---------------------------------------------------------------------------

async fn p3_start(n: usize, rounds: usize) -> Row {
    let mut r = Row::new(
        &format!("P3 N={n}"),
        &format!(
            "{n} rzk-redis started at once → one master, {} replicas online, record, {n} /nodes",
            n - 1
        ),
        "ms",
        &format!("{n} bare redis-server, replicaof preset → all online"),
        match n {
            0..=5 => "≤ 1.5 s",
            6..=10 => "≤ 2.5 s",
            _ => "≤ 5 s",
        },
    );
    for _ in 0..rounds {
        let mut g = Group::new("bench-p3");
        g.launcher_defaults = true;
        let tasks: Vec<Task> = (0..n).map(|_| task()).collect();
        let t0 = Instant::now();
        for t in &tasks {
            g.start_redis_as(t.clone());
        }
        let c = zk_client().await;
        let root = g.root.clone();
        let took = wait_for(
            &format!("{n} launchers to form a group"),
            Duration::from_secs(120),
            || async {
                let rec = zk_get(&c, &format!("{root}/master"))
                    .await
                    .map(|(d, _)| String::from_utf8_lossy(&d).into_owned());
                let Some(master) = rec else {
                    return Err("no record".to_string());
                };
                let nodes = zk_children(&c, &format!("{root}/nodes")).await.len();
                let online = online_replicas(&master).await?;
                if nodes == n && online == n - 1 && role(&master).await.as_deref() == Ok("master") {
                    Ok(t0.elapsed())
                } else {
                    Err(format!("record {master}, {nodes} nodes, {online} replicas online"))
                }
            },
        )
        .await;
        r.ours.0.push(ms(took));
        drop(g);
        let t0 = Instant::now();
        let raw = RawGroup::start(n, 0, DOWN_AFTER_MS).await;
        raw.linked(Duration::from_secs(60)).await;
        r.base.0.push(ms(t0.elapsed()));
    }
    r
}

// ---------------------------------------------------------------------------
// P4 and the steady-state cost
// ---------------------------------------------------------------------------

/// `zk_packets_received` and `zk_packets_sent` from ZooKeeper's `mntr`.
fn zk_packets() -> (u64, u64) {
    let mut s = TcpStream::connect(("127.0.0.1", zk().port())).expect("connect for mntr");
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    s.write_all(b"mntr").expect("mntr");
    let mut out = String::new();
    s.read_to_string(&mut out).ok();
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {k} in mntr: {out}"))
    };
    (get("zk_packets_received"), get("zk_packets_sent"))
}

/// (VmRSS in kB, threads) of a process.
fn rss_threads(pid: i32) -> (u64, u64) {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k)?.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("Threads:"))
}

/// The first child of `pid` (the launcher's redis-server or redis-sentinel).
fn child_of(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

async fn total_commands(addr: &str) -> u64 {
    info_field(addr, "stats", "total_commands_processed")
        .await
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Idle {
    /// ZooKeeper packets received per minute.
    zk_per_min: f64,
    /// Per launcher kind: CPU % of each launcher over the window.
    cpu: BTreeMap<&'static str, Vec<f64>>,
    /// Per launcher kind: (RSS kB, threads) of each launcher, and of its child.
    mem: BTreeMap<&'static str, Vec<(u64, u64, u64)>>,
    /// Commands per second processed by the group's servers and Sentinels.
    cmds_per_s: f64,
}

async fn measure_idle(g: Option<&Group>, raw: Option<&RawGroup>, window: Duration) -> Idle {
    let mut procs: Vec<(&'static str, i32)> = vec![];
    let mut addrs: Vec<String> = vec![];
    if let Some(g) = g {
        procs.extend(g.redis.iter().map(|m| ("rzk-redis", m.proc.pid())));
        procs.extend(g.sentinels.iter().map(|m| ("rzk-sentinel", m.proc.pid())));
        procs.extend(g.watchers.iter().map(|m| ("rzk-watcher", m.proc.pid())));
        addrs.extend(g.redis.iter().chain(&g.sentinels).map(Member::addr));
    }
    if let Some(r) = raw {
        addrs.extend(r.servers.iter().chain(&r.sentinels).map(|(t, _)| t.addr()));
    }
    let cpu0: Vec<Duration> = procs.iter().map(|(_, p)| cpu_time(*p)).collect();
    let mut cmds0 = 0;
    for a in &addrs {
        cmds0 += total_commands(a).await;
    }
    let (zk0, _) = zk_packets();
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let (zk1, _) = zk_packets();
    let took = t0.elapsed().as_secs_f64();
    let mut cmds1 = 0;
    for a in &addrs {
        cmds1 += total_commands(a).await;
    }
    let mut cpu: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut mem: BTreeMap<&'static str, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for ((kind, pid), c0) in procs.iter().zip(cpu0) {
        let used = cpu_time(*pid).saturating_sub(c0).as_secs_f64();
        cpu.entry(kind).or_default().push(100.0 * used / took);
        let (rss, threads) = rss_threads(*pid);
        let child_rss = child_of(*pid).map_or(0, |c| rss_threads(c).0);
        mem.entry(kind).or_default().push((rss, threads, child_rss));
    }
    Idle {
        zk_per_min: (zk1 - zk0) as f64 * 60.0 / took,
        cpu,
        mem,
        // The two INFO per address of this measurement are left in: they
        // are the same on both sides.
        cmds_per_s: (cmds1 - cmds0) as f64 / took,
    }
}

/// An idle 3+3+1 group, as shipped (`ADMIN_PORT` set) or without the admin
/// API, settled past its start-up work.
async fn idle_group(admin: bool) -> Group {
    let mut g = Group::new(if admin { "bench-idle-admin" } else { "bench-idle" });
    g.launcher_defaults = true;
    g.admin = admin;
    // The product's defaults, not the harness's quicker ones: the session
    // timeout sets the ping period, the reconcile interval the watcher's
    // questions to the Sentinels.
    g.extra.push(("ZK_SESSION_TIMEOUT_MS", "10000".into()));
    g.extra.push(("RECONCILE_INTERVAL_S", "5".into()));
    let g = Group::start_with(g, 3, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let replicas: Vec<String> = g.redis.iter().map(Member::addr).filter(|a| *a != master).collect();
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    wait_sentinels_know(&sentinels, &replicas, None, Duration::from_secs(30)).await;
    // Past the first reconciles and priority restores.
    tokio::time::sleep(Duration::from_secs(2 * RECONCILE_S + 1)).await;
    g
}

async fn idle_cost(window: Duration) -> (Vec<Row>, Vec<String>) {
    let mut rows = vec![];
    let mut notes = vec![];
    // Window 1: the group as shipped, beside a raw group (which uses no
    // ZooKeeper, so the packet count is the rzk group's alone).
    let g = idle_group(true).await;
    let raw = RawGroup::start(3, 3, DOWN_AFTER_MS).await;
    raw.linked(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let raw_idle_cmds = {
        // Measured in the same window as the rzk group, on its own addresses.
        let (a, b) = tokio::join!(
            measure_idle(Some(&g), None, window),
            measure_idle(None, Some(&raw), window)
        );
        (a, b.cmds_per_s)
    };
    let (with_admin, raw_cmds) = raw_idle_cmds;
    drop(raw);
    drop(g);
    // Window 2: without the admin API.
    let g = idle_group(false).await;
    let without = measure_idle(Some(&g), None, window).await;
    let sessions = g.redis.len() + g.sentinels.len() + g.watchers.len();
    drop(g);
    // Window 3: the floor: as many bare sessions, with the launchers'
    // session timeout, doing nothing.
    let mut bare = vec![];
    for _ in 0..sessions {
        bare.push(
            // The launchers' session settings (src/zk: a connection
            // timeout of 2/5 of the session): the same pings.
            Client::connector()
                .with_session_timeout(Duration::from_secs(10))
                .with_connection_timeout(Duration::from_secs(4))
                .connect(&zk().connect_string())
                .await
                .expect("bare session"),
        );
    }
    let floor = measure_idle(None, None, window).await;
    drop(bare);

    let mut zk = Row::new(
        "ZK",
        &format!(
            "ZooKeeper packets/min, idle 3+3+1 group, ADMIN_PORT set (as shipped); without it: {:.0}",
            without.zk_per_min
        ),
        "pkt/min",
        &format!("{sessions} bare idle sessions (pings only)"),
        "≤ 150",
    );
    zk.ours.0.push(with_admin.zk_per_min);
    zk.base.0.push(floor.zk_per_min);
    rows.push(zk);
    let mut cmds = Row::new(
        "CMD",
        "Redis commands/s processed by the group's servers and Sentinels, idle, ADMIN_PORT set",
        "cmd/s",
        "raw Sentinel group 3+3, same window",
        "-",
    );
    cmds.ours.0.push(with_admin.cmds_per_s);
    cmds.base.0.push(raw_cmds);
    rows.push(cmds);
    for kind in ["rzk-redis", "rzk-sentinel", "rzk-watcher"] {
        let mut cpu = Row::new(
            &format!("CPU {kind}"),
            &format!("{kind} CPU while idle, ADMIN_PORT set"),
            "%",
            "without ADMIN_PORT",
            "≤ 0.25%",
        );
        cpu.ours.0 = with_admin.cpu.get(kind).cloned().unwrap_or_default();
        cpu.base.0 = without.cpu.get(kind).cloned().unwrap_or_default();
        rows.push(cpu);
        let mut rss = Row::new(
            &format!("P4 {kind}"),
            &format!("{kind} RSS without ADMIN_PORT"),
            "MB",
            "with ADMIN_PORT",
            "≤ 3 MB without, ≤ 4 MB with",
        );
        rss.ours.0 = without
            .mem
            .get(kind)
            .map(|v| v.iter().map(|m| m.0 as f64 / 1024.0).collect())
            .unwrap_or_default();
        rss.base.0 = with_admin
            .mem
            .get(kind)
            .map(|v| v.iter().map(|m| m.0 as f64 / 1024.0).collect())
            .unwrap_or_default();
        let threads: Vec<u64> = without
            .mem
            .get(kind)
            .map(|v| v.iter().map(|m| m.1).collect())
            .unwrap_or_default();
        let threads_admin: Vec<u64> = with_admin
            .mem
            .get(kind)
            .map(|v| v.iter().map(|m| m.1).collect())
            .unwrap_or_default();
        let child: Vec<u64> = without
            .mem
            .get(kind)
            .map(|v| v.iter().map(|m| m.2 / 1024).collect())
            .unwrap_or_default();
        rss.what = format!(
            "{kind} RSS without ADMIN_PORT (threads {threads:?}, with admin {threads_admin:?}; its child's RSS MB {child:?})"
        );
        rows.push(rss);
    }
    let per_group = with_admin.zk_per_min;
    notes.push(format!(
        "Steady state: an idle 3+3+1 group sends ZooKeeper {per_group:.0} packets/min with ADMIN_PORT ({:.0} without); \
         {sessions} bare sessions doing nothing send {:.0}/min. 10,000 such groups: {:.0} packets/s on the ensemble, \
         {:.0} per server of 3, and {} sessions.",
        without.zk_per_min,
        floor.zk_per_min,
        per_group * 10_000.0 / 60.0,
        per_group * 10_000.0 / 60.0 / 3.0,
        sessions * 10_000
    ));
    (rows, notes)
}
