//! The admin HTTP API against a real group: every row of the table on
//! every binary, the 503 rows by breaking what they check, 404 for unknown
//! paths, no port without `ADMIN_PORT`, a flood of garbage and idle
//! connections during a failover, and a real Prometheus scraping it all.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::alerts::*;
use common::group::*;
use common::*;
use serde_json::Value;

const PATHS_REDIS: &[&str] = &["/health", "/ready", "/master", "/replica", "/liveness"];

/// The scenarios that fail a group over or flood it, or that take a group
/// through its 503 rows with time bounds, take turns (libtest runs two
/// tests of a binary at once).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One row of the admin table in docs/contract.md, section 9.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    /// `all`, `rzk-redis`, `rzk-sentinel` or `rzk-watcher`.
    binary: String,
    path: String,
    /// The "otherwise" column: `503` or `–`.
    otherwise: String,
}

/// The fields of `rzk-redis`'s JSON body, as the contract lists them
/// ("… is the same object: `role`, `addr`, …"; values in parentheses are
/// not fields).
fn contract_fields() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/contract.md")).unwrap();
    let list = doc
        .split_once("is the same object:")
        .and_then(|(_, rest)| rest.split_once("`rzkctl status --json`"))
        .expect("the contract lists the fields of rzk-redis's JSON body")
        .0;
    let mut plain = String::new();
    let mut depth = 0;
    for ch in list.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let fields: Vec<String> = plain.split('`').skip(1).step_by(2).map(str::to_string).collect();
    assert!(fields.len() >= 20, "too few fields read from the contract: {fields:?}");
    fields
}

/// The rows of the admin table of docs/contract.md, in the section named
/// "The admin HTTP API" (whatever its number).
fn contract_rows() -> Vec<Row> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/contract.md")).unwrap();
    let section = doc
        .split("\n## ")
        .find(|s| {
            s.split_once(". ")
                .is_some_and(|(_, t)| t.starts_with("The admin HTTP API"))
        })
        .expect("docs/contract.md has a section titled \"The admin HTTP API\"");
    let table = section
        .split("| binary | path |")
        .nth(1)
        .expect("the admin section has the table of paths");
    let mut rows = vec![];
    for line in table.lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 4, "a row of the admin table without 4 cells: {line}");
        let path = cells[1]
            .strip_prefix('`')
            .and_then(|p| p.strip_suffix('`'))
            .unwrap_or_else(|| panic!("a path not in backquotes: {line}"));
        let binary = cells[0].trim_matches('`');
        assert!(
            ["all", "rzk-redis", "rzk-sentinel", "rzk-watcher"].contains(&binary),
            "an unknown binary in the admin table: {line}"
        );
        assert!(
            ["503", "–"].contains(&cells[3]),
            "an 'otherwise' that is neither 503 nor –: {line}"
        );
        rows.push(Row {
            binary: binary.to_string(),
            path: path.to_string(),
            otherwise: cells[3].to_string(),
        });
    }
    assert!(!rows.is_empty(), "no rows in the admin table of docs/contract.md");
    rows
}

/// The paths the contract's table gives `binary` (`rzk-redis`, …).
fn contract_paths(binary: &str) -> BTreeSet<String> {
    contract_rows()
        .into_iter()
        .filter(|r| r.binary == "all" || r.binary == binary)
        .map(|r| r.path)
        .collect()
}

async fn admin_group(tag: &str, r: usize, s: usize, w: usize) -> Group {
    let mut g = Group::new(tag);
    g.admin = true;
    Group::start_with(g, r, s, w).await
}

/// Waits until `m`'s `path` answers `want`; returns the body.
async fn wait_code(m: &Member, path: &str, want: u16, timeout: Duration) -> Value {
    let what = format!("{path} of {} answering {want}", m.addr());
    let body = wait_for(&what, timeout, || async {
        match m.admin_get(path).await {
            Ok((code, body)) if code == want => Ok(body),
            Ok((code, body)) => Err(format!("{code} {body}")),
            Err(e) => Err(e),
        }
    })
    .await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} of {} is not JSON ({e}): {body}", m.addr()))
}

/// The inodes of the listening TCP sockets of this network namespace.
fn listening_inodes() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // An unreadable table would make every launcher look port-less.
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) if f.ends_with('6') && e.kind() == std::io::ErrorKind::NotFound => continue, // no IPv6
            Err(e) => panic!("{f}: {e}"),
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(3) == Some(&"0A") {
                out.insert(cols[9].to_string());
            }
        }
    }
    out
}

/// The listening sockets process `pid` holds.
fn listening_sockets_of(pid: i32) -> Vec<String> {
    let listening = listening_inodes();
    let mut out = vec![];
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let target = match std::fs::read_link(fd.path()) {
            Ok(t) => t,
            // Closed since the listing: it holds nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", fd.path().display()),
        };
        let t = target.to_string_lossy();
        if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']'))
            && listening.contains(inode)
        {
            out.push(inode.to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_on_every_binary_matches_the_table() {
    let _serial = SERIAL.lock().await;
    let g = admin_group("admin-table", 2, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let mi = g.master_index().await.unwrap();
    let (m, r) = (&g.redis[mi], &g.redis[1 - mi]);
    let t = Duration::from_secs(15);

    // rzk-redis, master row.
    for (path, code) in [("/health", 200), ("/ready", 200), ("/master", 200), ("/replica", 503)] {
        let body = wait_code(m, path, code, t).await;
        let fields = contract_fields();
        for k in &fields {
            assert!(body.get(k).is_some(), "{path}: {k} missing in {body}");
        }
        let extra: Vec<&String> = body
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !fields.contains(k))
            .collect();
        assert!(extra.is_empty(), "{path}: fields the contract does not list: {extra:?}");
        assert_eq!(body["role"], "master", "{body}");
        assert_eq!(body["addr"], master.as_str(), "{body}");
        assert_eq!(body["record"], master.as_str(), "{body}");
        assert_eq!(body["zk_session"], "connected", "{body}");
    }
    // rzk-redis, replica row.
    for (path, code) in [("/health", 200), ("/ready", 200), ("/master", 503), ("/replica", 200)] {
        let body = wait_code(r, path, code, t).await;
        assert_eq!(body["role"], "replica", "{body}");
        assert_eq!(body["master"], master.as_str(), "{body}");
        assert_eq!(body["link_up"], true, "{body}");
        assert_eq!(body["sync_in_progress"], false, "{body}");
        assert_eq!(body["promotable"], true, "{body}");
        assert!(body["lag_bytes"].as_i64().is_some_and(|l| l >= 0), "{body}");
    }
    replica_lag_rows(m, r, t).await;
    // rzk-sentinel.
    for s in &g.sentinels {
        for path in ["/health", "/ready"] {
            let body = wait_code(s, path, 200, t).await;
            assert_eq!(body["master"], master.as_str(), "{body}");
        }
    }
    // rzk-watcher.
    let w = &g.watchers[0];
    wait_code(w, "/health", 200, t).await;
    wait_code(w, "/ready", 200, t).await;
    let (rec, version) = g.record_with_version().await.unwrap();
    let body = wait_code(w, "/master", 200, t).await;
    assert_eq!(body, serde_json::json!({"addr": rec, "version": version}));
    let body = wait_code(w, "/sentinels", 200, t).await;
    let got: BTreeSet<String> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["addr"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = g.sentinels.iter().map(Member::addr).collect();
    assert_eq!(got, want);

    // Every binary serves exactly the paths the contract's table gives it
    // (a known path answers 200 or 503), and 404 for every other path of
    // the table.
    let all_paths: BTreeSet<String> = contract_rows().into_iter().map(|r| r.path).collect();
    let kinds = [
        ("rzk-redis", &g.redis),
        ("rzk-sentinel", &g.sentinels),
        ("rzk-watcher", &g.watchers),
    ];
    for (binary, members) in kinds {
        let served = contract_paths(binary);
        for member in members.iter() {
            for path in &all_paths {
                let (code, body) = member.admin_get(path).await.unwrap();
                if served.contains(path) {
                    assert!(
                        code == 200 || code == 503,
                        "{binary} {}: {path} is in the table, answered {code}: {body}",
                        member.addr()
                    );
                } else {
                    assert_eq!(
                        code,
                        404,
                        "{binary} {}: {path} is not in its table rows: {body}",
                        member.addr()
                    );
                }
            }
        }
    }
    // Every binary: /metrics, and 404 for anything else.
    for member in g.redis.iter().chain(&g.sentinels).chain(&g.watchers) {
        let (code, text) = member.admin_get("/metrics").await.unwrap();
        assert_eq!(code, 200, "{text}");
        assert!(text.contains("rzk_zk_session{state=\"connected\"} 1"), "{text}");
        for path in ["/nope", "/", "/health/x", "/metrics2"] {
            let (code, body) = member.admin_get(path).await.unwrap();
            assert_eq!(code, 404, "{path} on {}: {body}", member.addr());
        }
    }
    let (_, text) = m.admin_get("/metrics").await.unwrap();
    assert!(text.contains("rzk_role{role=\"master\"} 1"), "{text}");
    let (_, text) = r.admin_get("/metrics").await.unwrap();
    assert!(
        text.contains("rzk_role{role=\"replica\"} 1") && text.contains("rzk_promotable 1"),
        "{text}"
    );

    // The 503 rows. A replica whose server does not answer is not healthy.
    let child = child_pid_of(r.proc.pid());
    let frozen = Frozen::pids(&[child]);
    let body = wait_code(r, "/health", 503, t).await;
    // Its launcher's loop runs all the same: /liveness says so.
    let (code, live) = r.admin_get("/liveness").await.unwrap();
    assert_eq!(code, 200, "/liveness of a launcher whose server is frozen: {live}");
    frozen.resume();
    assert_eq!(body["role"], Value::Null, "{body}");
    wait_code(r, "/ready", 200, t).await;
    // A Sentinel without a quorum of usable peers is not ready.
    for s in &g.sentinels[1..] {
        s.proc.signal(libc::SIGKILL);
    }
    let body = wait_code(&g.sentinels[0], "/ready", 503, Duration::from_secs(30)).await;
    assert_ne!(body["ckquorum"], "OK", "{body}");
    wait_code(&g.sentinels[0], "/health", 200, t).await;
    // A watcher with no Sentinel to follow is not ready.
    g.sentinels[0].proc.signal(libc::SIGKILL);
    wait_code(w, "/ready", 503, t).await;
    wait_code(w, "/health", 200, t).await;
    // The master, with no Sentinel to outvote it, is still the master.
    wait_code(m, "/master", 200, t).await;
}

/// `/replica?lag=BYTES` (Patroni's `lag`): a replica really behind its
/// master (`CLIENT PAUSE WRITE` on it holds its replication stream back,
/// its link stays up) answers 503 under a bound smaller than its lag, and
/// 200 under a larger one and without one; a bad bound is 400. Once it
/// catches up, 200 again.
async fn replica_lag_rows(m: &Member, r: &Member, t: Duration) {
    wait_code(r, "/replica?lag=0", 200, t).await;
    for bad in ["/replica?lag=", "/replica?lag=-5", "/replica?lag=1MB"] {
        let (code, body) = r.admin_get(bad).await.unwrap();
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body.contains("lag must be a whole number of bytes"), "{bad}: {body}");
    }
    redis_cmd(&r.addr(), None, &["CLIENT", "PAUSE", "30000", "WRITE"])
        .await
        .unwrap();
    let value = "x".repeat(10_000);
    for i in 0..20 {
        redis_cmd(&m.addr(), None, &["SET", &format!("lag-{i}"), &value])
            .await
            .unwrap();
    }
    let body = wait_code(r, "/replica?lag=100000", 503, t).await;
    let lag = body["lag_bytes"].as_i64().unwrap_or(0);
    assert!(lag > 100_000, "the body shows the lag: {body}");
    let (code, body) = r.admin_get("/replica").await.unwrap();
    assert_eq!(code, 200, "/replica without a bound, lagging {lag} bytes: {body}");
    // Master pings may add a few bytes meanwhile.
    let bound = lag + 1000;
    let (code, body) = r.admin_get(&format!("/replica?lag={bound}")).await.unwrap();
    assert_eq!(code, 200, "/replica?lag={bound}: {body}");
    redis_cmd(&r.addr(), None, &["CLIENT", "UNPAUSE"]).await.unwrap();
    wait_code(r, "/replica?lag=1000", 200, t).await;
}

/// A master that every registered Sentinel outvotes (names another
/// master) is still the recorded master, but holds no lease from them: it
/// fences itself (section 8), and `/master` and `/ready` are 503, so that
/// a router sends it no writes. The Sentinel is a plain redis-sentinel the
/// test registers, monitoring an address where nothing listens: the
/// launcher's guard demotes only for a live master, so the row holds until
/// the registration goes; then, with no Sentinel registered, the record in
/// ZooKeeper renews the lease and the fence is lifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outvoted_master_answers_503_on_master() {
    let g = admin_group("admin-outvoted", 1, 0, 0).await;
    let m = &g.redis[0];
    wait_code(m, "/master", 200, Duration::from_secs(15)).await;
    let elsewhere = task().addr(); // nothing listens there
    let s = task();
    let conf = s.dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {}\nbind {}\nsentinel monitor mymaster {elsewhere} 1\n",
            s.port, s.ip
        ),
    )
    .unwrap();
    let _sentinel = Proc::spawn(
        "redis-sentinel",
        &[conf.to_str().unwrap()],
        &[],
        s.dir.join("sentinel.log"),
    );
    wait_for(
        "the plain Sentinel to name the other master",
        Duration::from_secs(10),
        || async {
            match sentinel_master(&s.addr()).await {
                Ok(a) if a == elsewhere => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let c = zk_client().await;
    let reg = format!("{}/sentinels/test-registered", g.root);
    c.create(
        &reg,
        s.addr().as_bytes(),
        &zookeeper_client::CreateMode::Ephemeral.with_acls(zookeeper_client::Acls::anyone_all()),
    )
    .await
    .unwrap();
    let body = wait_code(m, "/master", 503, Duration::from_secs(15)).await;
    assert_eq!(body["role"], "master", "{body}");
    assert_eq!(body["record"], m.addr().as_str(), "{body}");
    assert_eq!(body["sentinels_name"], elsewhere.as_str(), "{body}");
    let body = wait_code(m, "/ready", 503, Duration::from_secs(15)).await;
    assert_eq!(body["fenced"], true, "outvoted by every registered Sentinel: {body}");
    assert_eq!(body["ready"], false, "{body}");
    // The vote, not anything else, made it 503: without it, 200 again.
    c.delete(&reg, None).await.unwrap();
    let body = wait_code(m, "/master", 200, Duration::from_secs(15)).await;
    assert_eq!(body["sentinels_name"], Value::Null, "{body}");
    assert_eq!(body["fenced"], false, "{body}");
    assert_eq!(m.admin_get("/ready").await.map(|(c, _)| c), Ok(200));
}

/// The watcher's 503 rows and its null master, over HTTP: `/master` is
/// `{"addr": null}` before any record; `/ready` is 503 while the record
/// differs from the master the Sentinels confirm; `/health` is 503 once its
/// ZooKeeper session has expired (for real: the watcher reaches ZooKeeper
/// through a gate the test shuts, and the server expires the session), and
/// 200 again with a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchers_503_rows_and_its_null_master() {
    let _serial = SERIAL.lock().await;
    let t = Duration::from_secs(15);
    let session = Duration::from_millis(2000);
    let gate = ZkGate::new();
    let mut g = Group::new("admin-watcher");
    g.admin = true;
    g.extra.push(("SENTINEL_QUORUM", "1".into()));
    // Only the watcher goes through the gate, and it reconciles only when
    // it (re)subscribes: a record made wrong by hand stays wrong.
    g.extra.push(("ZK_HOSTS", gate.connect_string()));
    g.extra.push(("ZK_SESSION_TIMEOUT_MS", session.as_millis().to_string()));
    g.extra.push(("RECONCILE_INTERVAL_S", "3600".into()));
    let wi = g.start_watcher();
    g.extra.clear();
    g.extra.push(("SENTINEL_QUORUM", "1".into()));
    let w = &g.watchers[wi];
    // No record yet.
    let body = wait_code(w, "/master", 200, t).await;
    assert_eq!(body, serde_json::json!({"addr": null}));
    wait_code(w, "/health", 200, t).await;
    wait_code(w, "/ready", 503, t).await;

    g.start_redis();
    let master = wait_for("the record", Duration::from_secs(30), || async {
        g.record().await.ok_or_else(|| "no record yet".to_string())
    })
    .await;
    g.start_sentinel();
    let w = &g.watchers[wi];
    let body = wait_code(w, "/ready", 200, Duration::from_secs(30)).await;
    assert_eq!(body["confirmed_master"], master.as_str(), "{body}");

    // A record that differs from the master the Sentinels confirm.
    let c = zk_client().await;
    let path = format!("{}/master", g.root);
    zk_set_raw(&c, &path, b"127.0.0.99 1").await;
    let body = wait_code(w, "/ready", 503, t).await;
    assert_eq!(body["record"], "127.0.0.99 1", "{body}");
    assert_eq!(body["confirmed_master"], master.as_str(), "{body}");
    assert_eq!(body["healthy"], true, "{body}");
    zk_set_raw(&c, &path, master.as_bytes()).await;
    wait_code(w, "/ready", 200, t).await;

    // Its session expires for real.
    gate.close();
    let shut = Instant::now();
    // The client calls its session expired once it could not reconnect
    // within 7/5 of the session timeout (zookeeper-client); the page is
    // renewed every second; 3 s of margin.
    let body = wait_code(w, "/health", 503, session * 7 / 5 + Duration::from_secs(1 + 3)).await;
    assert_eq!(body["zk_session"], "expired", "{body}");
    assert_eq!(body["healthy"], false, "{body}");
    let expired_after = shut.elapsed();
    let id: i64 = {
        let log = w.proc.log();
        log.lines()
            .filter(|l| l.contains("connected to ZooKeeper"))
            .find_map(|l| l.split("session=").nth(1)?.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no session in the watcher's log:\n{log}"))
    };
    wait_for_sync("the server to log the expiry", Duration::from_secs(5), || {
        if zk().declared_expired(id) {
            Ok(())
        } else {
            Err(format!("no expiry of {id:#x} in:\n{}", zk().log_tail()))
        }
    });
    gate.open();
    let body = wait_code(w, "/health", 200, Duration::from_secs(30)).await;
    assert_eq!(body["zk_session"], "connected", "{body}");
    eprintln!(
        "MEASURE watcher /health 503 (session expired) {expired_after:?} after the cut; 200 again with a new session"
    );
}

/// The child process (redis-server) of launcher `pid`.
fn child_pid_of(pid: i32) -> i32 {
    let path = format!("/proc/{pid}/task/{pid}/children");
    let children = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    children
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("launcher {pid} has no child ({path}: {children:?})"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_port_opens_no_port() {
    let g = Group::start("admin-none", 1, 1, 1).await;
    g.wait_healthy(Duration::from_secs(60)).await;
    for member in g.redis.iter().chain(&g.sentinels).chain(&g.watchers) {
        let held = listening_sockets_of(member.proc.pid());
        assert!(
            held.is_empty(),
            "launcher {} listens on {held:?} without ADMIN_PORT",
            member.proc.pid()
        );
    }
    // The same check sees the admin listeners when the port is set, so it
    // can fail.
    let g = admin_group("admin-some", 1, 0, 0).await;
    let pid = g.redis[0].proc.pid();
    wait_for("the admin listeners", Duration::from_secs(10), || async {
        let n = listening_sockets_of(pid).len();
        // The task address and 127.0.0.1.
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} listening sockets"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_connections_disturbs_neither_supervision_nor_failover() {
    let _serial = SERIAL.lock().await;
    let g = admin_group("admin-flood", 3, 3, 1).await;
    let old = g.wait_healthy(Duration::from_secs(60)).await;
    let mi = g.master_index().await.unwrap();
    let targets: Vec<u16> = g
        .redis
        .iter()
        .chain(&g.sentinels)
        .chain(&g.watchers)
        .filter_map(|m| m.admin)
        .collect();

    // 200 connections at a time against each admin port, half sending
    // garbage, half nothing, renewed as they close, for the whole failover.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flooders = vec![];
    for i in 0..200 * targets.len() {
        let port = targets[i % targets.len()];
        let stop = stop.clone();
        flooders.push(tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut opened = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                opened += 1;
                if i % 2 == 0 {
                    let _ = s
                        .write_all(b"\x16\x03\x01 garbage \xff\xfe\r\n\r\nGET / HTTP/9\r\n\r\n")
                        .await;
                }
                let mut buf = [0u8; 512];
                let _ = tokio::time::timeout(Duration::from_secs(8), s.read(&mut buf)).await;
            }
            opened
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t0 = Instant::now();
    g.redis[mi].proc.signal(libc::SIGKILL);
    let new = wait_for(
        "the record to move during the flood",
        Duration::from_secs(60),
        || async {
            match g.record().await {
                Some(r) if r != old && role_pw(&r, None).await.as_deref() == Ok("master") => Ok(r),
                other => Err(format!("record {other:?}")),
            }
        },
    )
    .await;
    let failover = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut opened = 0;
    for f in flooders {
        opened += f.await.unwrap();
    }
    // Every launcher still runs, and answers again once the flood is over.
    for m in g.redis.iter().enumerate().filter(|(i, _)| *i != mi).map(|(_, m)| m) {
        assert!(m.proc.is_running(), "{} died in the flood", m.addr());
    }
    let nm = g.redis.iter().find(|m| m.addr() == new).unwrap();
    wait_code(nm, "/master", 200, Duration::from_secs(15)).await;
    for m in g.sentinels.iter().chain(&g.watchers) {
        assert!(m.proc.is_running());
        wait_code(m, "/health", 200, Duration::from_secs(15)).await;
    }
    let (_, metrics) = nm.admin_get("/metrics").await.unwrap();
    let rejected: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rzk_admin_rejected_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rzk_admin_rejected_total in the new master's metrics:\n{metrics}"));
    eprintln!(
        "flood: {opened} connections opened, failover to {new} in {:.1} s; the new master refused {rejected} at its bound",
        failover.as_secs_f32()
    );
    assert!(
        opened >= 200 * targets.len() as u32,
        "the flood opened only {opened} connections"
    );
    // The bound was reached, so it is what kept the launcher safe.
    assert!(
        rejected > 0,
        "200 connections never reached the bound of the new master's admin server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_every_task() {
    let _serial = SERIAL.lock().await;
    let g = admin_group("admin-prom", 3, 3, 1).await;
    g.wait_healthy(Duration::from_secs(60)).await;
    let members: Vec<&Member> = g.redis.iter().chain(&g.sentinels).chain(&g.watchers).collect();

    // promtool accepts every /metrics page.
    for m in &members {
        let (_, text) = m.admin_get("/metrics").await.unwrap();
        let mut p = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus) must be installed");
        use std::io::Write;
        p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics on {}: {}{}",
            m.addr(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<String> = members
        .iter()
        .map(|m| format!("'127.0.0.1:{}'", m.admin.unwrap()))
        .collect();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: rzk\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let port = free_port(&["127.0.0.1"]);
    let prom = Proc::spawn(
        "prometheus",
        &[
            &format!("--config.file={}", dir.path().join("prometheus.yml").display()),
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        &[],
        dir.path().join("prometheus.log"),
    );
    let query = |q: &'static str| async move {
        let path = format!("/api/v1/query?query={}", encode(q));
        let (code, body) = http_get("127.0.0.1", port, &path).await?;
        if code != 200 {
            return Err(format!("{code} {body}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        Ok::<Vec<(String, String)>, String>(
            v["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    (
                        r["metric"]["instance"].as_str().unwrap_or("").to_string(),
                        r["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect(),
        )
    };
    let n = members.len();
    wait_for("every target up in Prometheus", Duration::from_secs(60), || async {
        let up = query("up").await?;
        let ok = up.iter().filter(|(_, v)| v == "1").count();
        if ok == n { Ok(()) } else { Err(format!("up: {up:?}")) }
    })
    .await;
    wait_for("rzk_role to agree with ROLE", Duration::from_secs(30), || async {
        let masters = query("rzk_role{role=\"master\"} == 1").await?;
        let replicas = query("rzk_role{role=\"replica\"} == 1").await?;
        let mut wrong = vec![];
        for m in &g.redis {
            let inst = format!("127.0.0.1:{}", m.admin.unwrap());
            let role = role_pw(&m.addr(), None).await?;
            let says_master = masters.iter().any(|(i, _)| *i == inst);
            let says_replica = replicas.iter().any(|(i, _)| *i == inst);
            if (role == "master") != says_master || (role == "slave") != says_replica {
                wrong.push(format!(
                    "{}: ROLE {role}, prometheus master={says_master} replica={says_replica}",
                    m.addr()
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    })
    .await;
    drop(prom);
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The admin table of docs/contract.md parses into rows, and gives
/// rzk-redis exactly its four status paths and `/metrics` (what each
/// binary serves over HTTP is checked against the same rows in
/// `every_path_on_every_binary_matches_the_table`).
#[test]
fn redis_paths_are_the_contracts() {
    let mut want: BTreeSet<String> = PATHS_REDIS.iter().map(|p| p.to_string()).collect();
    want.insert("/metrics".into());
    assert_eq!(contract_paths("rzk-redis"), want, "{:#?}", contract_rows());
    for r in contract_rows() {
        let status_page = r.path != "/metrics"
            && !(r.binary == "rzk-watcher" && ["/master", "/sentinels"].contains(&r.path.as_str()));
        assert_eq!(
            r.otherwise == "503",
            status_page,
            "{r:?}: a status page answers 503 otherwise, the others always 200"
        );
    }
}

/// One HTTP/1.1 request with any method on `127.0.0.1:port`: (status,
/// the raw header block, body). Bounded by 5 s.
async fn http_request(port: u16, method: &str, path: &str) -> Result<(u16, String, Vec<u8>), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
        let req =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("no header block in {:?}", String::from_utf8_lossy(&buf)))?;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
        Ok((status, head, buf[end + 4..].to_vec()))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| Err(format!("{method} {path} on 127.0.0.1:{port} timed out")))
}

/// What the admin API answers besides `GET`: `HEAD` as `GET` without a
/// body, and 405 for every other method (before the path is even looked
/// at); and what a launcher whose first look cannot finish yet answers:
/// 503 `starting` on its known paths. The look of an `rzk-redis` starts
/// once it has the bootstrap lock, which the test holds (a contender node
/// ahead of it, as a launcher under the lock would have); the look of an
/// `rzk-sentinel` starts once a live master exists, which none does.
/// Once the test lets go of the lock, both answer 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_405_and_503_before_the_first_look() {
    use zookeeper_client::{Acls, CreateMode};
    let mut g = Group::new("admin-early");
    g.admin = true;
    let c = zk_client().await;
    let lock_dir = format!("{}/lock", g.root);
    c.mkdir(&lock_dir, &CreateMode::Persistent.with_acls(Acls::anyone_all()))
        .await
        .unwrap();
    let (_, seq) = c
        .create(
            &format!("{lock_dir}/_c_{}-lock-", uuid::Uuid::new_v4()),
            b"127.0.0.9 1",
            &CreateMode::EphemeralSequential.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
    let held = format!("{lock_dir}/{}", zk_children(&c, &lock_dir).await[0]);
    assert!(
        held.ends_with(&seq.to_string()),
        "{held} is not the test's node ({seq})"
    );
    let r = g.start_redis();
    let s = g.start_sentinel();
    let (redis, sentinel) = (&g.redis[r], &g.sentinels[s]);
    let (rp, sp) = (redis.admin.unwrap(), sentinel.admin.unwrap());
    // Both wait: the launcher queued behind the test's node, the Sentinel
    // for a master.
    wait_for(
        "the launcher to queue for the lock",
        Duration::from_secs(15),
        || async {
            let n = zk_children(&c, &lock_dir).await.len();
            let log = redis.proc.log();
            if n == 2 && log.contains("waiting for the bootstrap lock") {
                Ok(())
            } else {
                Err(format!("{n} lock nodes; log:\n{log}"))
            }
        },
    )
    .await;
    sentinel
        .proc
        .wait_log("waiting for a live master", Duration::from_secs(15))
        .await;

    let json = |b: &[u8]| -> Value {
        serde_json::from_slice(b).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
    };
    for (port, paths) in [(rp, PATHS_REDIS), (sp, &["/health", "/ready", "/liveness"][..])] {
        for path in paths {
            let (code, _, body) = http_request(port, "GET", path).await.unwrap();
            assert_eq!(code, 503, "GET {path} on :{port} before the first look");
            assert_eq!(json(&body)["error"], "starting", "GET {path} on :{port}");
            let (code, _, body) = http_request(port, "HEAD", path).await.unwrap();
            assert_eq!(
                (code, body.len()),
                (503, 0),
                "HEAD {path} on :{port} before the first look"
            );
        }
        let (code, _, body) = http_request(port, "GET", "/metrics").await.unwrap();
        assert_eq!(code, 200, "/metrics is served from the start");
        assert!(
            String::from_utf8_lossy(&body).contains("rzk_"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let (code, _, _) = http_request(port, "GET", "/nope").await.unwrap();
        assert_eq!(code, 404);
        let (code, _, _) = http_request(port, "POST", "/health").await.unwrap();
        assert_eq!(code, 405, "POST before the first look");
    }
    // Still nobody registered or recorded: nothing got past the wait.
    assert!(g.record().await.is_none());
    assert!(g.registered("nodes").await.is_empty());

    // The test lets go of the lock: the launcher makes a fresh master, the
    // Sentinel follows, and both pages turn 200.
    c.delete(&held, None).await.unwrap();
    let t = Duration::from_secs(30);
    let health = wait_code(redis, "/health", 200, t).await;
    assert_eq!(health["role"], "master", "{health}");
    wait_code(sentinel, "/health", 200, t).await;

    // HEAD: GET's status and headers, no body.
    for (port, path) in [
        (rp, "/health"),
        (rp, "/master"),
        (rp, "/metrics"),
        (sp, "/health"),
        (rp, "/nope"),
    ] {
        let (get_code, get_head, get_body) = http_request(port, "GET", path).await.unwrap();
        let (code, head, body) = http_request(port, "HEAD", path).await.unwrap();
        assert_eq!(code, get_code, "HEAD {path} on :{port}: {head}");
        assert!(
            body.is_empty(),
            "HEAD {path} on :{port} sent a body: {:?}",
            String::from_utf8_lossy(&body)
        );
        let content_type = |h: &str| {
            h.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
                .map(str::to_string)
        };
        assert_eq!(content_type(&head), content_type(&get_head), "HEAD {path}: {head}");
        assert!(!get_body.is_empty(), "GET {path} has a body");
    }
    // Every other method is 405, on known, unknown and metrics paths.
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for (port, path) in [(rp, "/health"), (rp, "/metrics"), (rp, "/nope"), (sp, "/ready")] {
            let (code, head, body) = http_request(port, method, path).await.unwrap();
            assert_eq!(code, 405, "{method} {path} on :{port}: {head}");
            assert!(
                head.lines().any(|l| l.trim().eq_ignore_ascii_case("allow: GET, HEAD")),
                "{method} {path}: a 405 names the allowed methods (RFC 9110): {head}"
            );
            assert_eq!(json(&body)["error"], "only GET and HEAD", "{method} {path}");
        }
    }
    // A 405 changed nothing: the pages still answer.
    wait_code(redis, "/master", 200, t).await;
}

/// docs/alerts.yml is a valid rules file.
#[test]
fn the_alert_rules_pass_promtool_check() {
    let out = Command::new("promtool")
        .args([
            "check",
            "rules",
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/alerts.yml"),
        ])
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    assert!(
        out.status.success(),
        "promtool check rules docs/alerts.yml: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// docs/alerts.yml against series recorded from a real group: scraped
/// healthy, then in each fault, and run through `promtool test rules`.
/// Every rule fires in its fault and nothing fires (or is pending) in the
/// healthy group. The faults, one after the other on one group:
/// - lag: the replica held back by `CLIENT PAUSE WRITE` while 12 MB are
///   written;
/// - no promotable replica: `replica-priority 0` set on the only replica;
/// - the record names the replica while the watcher is frozen; and the
///   watcher's ZooKeeper session expired (frozen 7 s, the session is 4 s);
/// - two masters: `REPLICAOF NO ONE` on the replica, before the guard
///   demotes it;
/// - the pause ending soon: `rzkctl pause --for 10m`;
/// - fenced: every Sentinel frozen, the master fences itself;
/// - no master: the master's server frozen as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_fire_on_a_real_group() {
    let _serial = SERIAL.lock().await;
    let g = admin_group("alerts", 2, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let mi = g.master_index().await.unwrap();
    let (m, r, w) = (&g.redis[mi], &g.redis[1 - mi], &g.watchers[0]);
    let all: Vec<&Member> = g.redis.iter().chain(&g.sentinels).chain(&g.watchers).collect();
    let t = Duration::from_secs(20);
    // Settled: the replica promotable, every Sentinel agreeing.
    wait_metric(r, "rzk_promotable", |v| v == 1.0, t).await;
    for s in &g.sentinels {
        wait_metric(s, "rzk_record_matches", |v| v == 1.0, t).await;
    }
    let healthy = scrape(&all).await;
    assert!(
        healthy
            .keys()
            .any(|k| k.starts_with("rzk_info{") && k.contains(&g.root)),
        "rzk_info names the group: {healthy:?}"
    );
    let mut cases = vec![];

    // Lag.
    redis_cmd(&r.addr(), None, &["CLIENT", "PAUSE", "30000", "WRITE"])
        .await
        .unwrap();
    let mb = "x".repeat(1 << 20);
    for i in 0..12 {
        redis_cmd(&master, None, &["SET", &format!("alerts-{i}"), &mb])
            .await
            .unwrap();
    }
    wait_metric(r, "rzk_repl_lag_bytes", |v| v > 10e6, t).await;
    cases.push(Case {
        name: "lag",
        phase: scrape(&all).await,
        fires: vec!["RzkReplicationLag"],
        quiet: vec!["RzkNoMaster", "RzkTwoMasters"],
    });
    redis_cmd(&r.addr(), None, &["CLIENT", "UNPAUSE"]).await.unwrap();
    wait_metric(r, "rzk_repl_lag_bytes", |v| v < 1e6, t).await;

    // No promotable replica.
    redis_cmd(&r.addr(), None, &["CONFIG", "SET", "replica-priority", "0"])
        .await
        .unwrap();
    wait_metric(r, "rzk_promotable", |v| v == 0.0, t).await;
    cases.push(Case {
        name: "no promotable replica",
        phase: scrape(&all).await,
        fires: vec!["RzkNoPromotableReplica"],
        quiet: vec!["RzkNoMaster", "RzkTwoMasters", "RzkReplicationLag"],
    });
    redis_cmd(&r.addr(), None, &["CONFIG", "SET", "replica-priority", "100"])
        .await
        .unwrap();
    wait_metric(r, "rzk_promotable", |v| v == 1.0, t).await;

    // The record wrong while the watcher is frozen, past its session.
    let frozen = Instant::now();
    let watcher = Frozen::pids(&[w.proc.pid()]);
    let c = g.zk_client().await;
    zk_set_raw(&c, &format!("{}/master", g.root), r.addr().as_bytes()).await;
    for s in &g.sentinels {
        wait_metric(s, "rzk_record_matches", |v| v == 0.0, t).await;
    }
    let running: Vec<&Member> = all.iter().copied().filter(|x| x.addr() != w.addr()).collect();
    cases.push(Case {
        name: "record disagrees",
        phase: scrape(&running).await,
        fires: vec!["RzkRecordDisagreesWithSentinels"],
        quiet: vec!["RzkNoMaster", "RzkTwoMasters"],
    });
    // The harness's session is 4 s: frozen 7 s, it has expired.
    tokio::time::sleep(Duration::from_secs(7).saturating_sub(frozen.elapsed())).await;
    watcher.resume();
    wait_metric(w, "rzk_zk_sessions_expired_total", |v| v >= 1.0, t).await;
    cases.push(Case {
        name: "zookeeper session expired",
        phase: scrape(&all).await,
        fires: vec!["RzkZkSessionExpired"],
        quiet: vec!["RzkNoMaster", "RzkTwoMasters"],
    });
    // The watcher, back, puts the record right.
    for s in &g.sentinels {
        wait_metric(s, "rzk_record_matches", |v| v == 1.0, t).await;
    }

    // Two masters, before the guard demotes the second.
    redis_cmd(&r.addr(), None, &["REPLICAOF", "NO", "ONE"]).await.unwrap();
    wait_metric(r, "rzk_role|role=\"master\"", |v| v == 1.0, t).await;
    cases.push(Case {
        name: "two masters",
        phase: scrape(&all).await,
        fires: vec!["RzkTwoMasters"],
        quiet: vec!["RzkNoMaster"],
    });
    g.wait_healthy(Duration::from_secs(30)).await;

    // Paused for 10 minutes: the pause ends soon. Promtool's clock starts
    // at 0 and the fault's samples at minute 10, so the scraped end (Unix
    // seconds) is moved by the scrape's own time.
    let (code, out, err) = g.rzkctl(&["pause", "--for", "10m", "--reason", "alerts"]).await;
    assert_eq!(code, 0, "rzkctl pause:\n{out}{err}");
    wait_metric(m, "rzk_paused", |v| v == 1.0, t).await;
    let mut phase = scrape(&all).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (series, v) in phase.iter_mut() {
        if series.starts_with("rzk_pause_until_seconds{") && v != "0" {
            *v = (v.parse::<f64>().unwrap() - now + 600.0).round().to_string();
        }
    }
    cases.push(Case {
        name: "pause ending soon",
        phase,
        fires: vec!["RzkPauseEndingSoon"],
        quiet: vec!["RzkNoMaster", "RzkTwoMasters"],
    });
    let (code, out, err) = g.rzkctl(&["resume"]).await;
    assert_eq!(code, 0, "rzkctl resume:\n{out}{err}");

    // Fenced: no Sentinel answers the master.
    let sentinel_servers: Vec<i32> = g.sentinels.iter().map(|s| child_pid_of(s.proc.pid())).collect();
    let sentinels = Frozen::pids(&sentinel_servers);
    wait_metric(m, "rzk_fenced", |v| v == 1.0, t).await;
    cases.push(Case {
        name: "fenced",
        phase: scrape(&all).await,
        fires: vec!["RzkMasterFenced"],
        quiet: vec!["RzkNoMaster", "RzkTwoMasters"],
    });
    // No master: its server frozen too.
    let server = Frozen::pids(&[child_pid_of(m.proc.pid())]);
    wait_metric(m, "rzk_role|role=\"master\"", |v| v == 0.0, t).await;
    cases.push(Case {
        name: "no master",
        phase: scrape(&all).await,
        fires: vec!["RzkNoMaster"],
        quiet: vec!["RzkTwoMasters"],
    });
    server.resume();
    sentinels.resume();

    promtool_test_rules(&healthy, &cases);
    // Every rule of the file was made to fire.
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/alerts.yml")).unwrap();
    let fired: BTreeSet<&str> = cases.iter().flat_map(|c| c.fires.iter().copied()).collect();
    let declared: BTreeSet<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    let untested: Vec<&&str> = declared.difference(&fired).collect();
    // The diverged copy needs PERSISTENCE=aof and a lost master:
    // tests/persistence.rs records that one; a certificate needs TLS:
    // tests/tls.rs.
    assert_eq!(
        untested,
        [&"RzkDivergedCopyKept", &"RzkTlsCertExpiringSoon"],
        "rules no scenario here fires"
    );
    eprintln!(
        "MEASURE alerts: {} series healthy, {} faults, fired {fired:?}",
        healthy.len(),
        cases.len()
    );
}
