//! The admin API when a launcher's look hangs (docs/contract.md 9): pages
//! more than 5 s old answer 503 and say how old they are, and turn 200
//! again once a look finishes.
//!
//! The look that hangs here is the whole launcher's: it is frozen
//! (SIGSTOP, as `docker pause` or a stalled VM freezes it) for longer than
//! 5 s, a request is sent meanwhile (the kernel queues the connection and
//! its bytes), and the launcher is thawed. It answers that request with
//! the page in force when it accepted the connection, which it does in its
//! first turn after the thaw, before its next look can finish (a look
//! waits on the network at least once): the page it had, now too old.
//! (Before the answer was judged at the accept, a look that finished first
//! under load made the watcher answer 200 with a fresh page, once in
//! about ten runs.)
//!
//! The other scenario freezes ZooKeeper, which the contract says must
//! never fail `/health`; it freezes this binary's own ZooKeeper, one
//! scenario at a time.

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;
use serde_json::Value;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The default `ZK_SESSION_TIMEOUT_MS` (the harness gives 4 s).
const SESSION_MS: u64 = 10_000;
/// `STALE_AFTER` in src/admin.rs: the contract's 5 s.
const STALE_AFTER: Duration = Duration::from_secs(5);

/// A master and a Sentinel with the admin API and the default session
/// timeout, without the fence (it would turn pages 503 for its own reason
/// while ZooKeeper is frozen; tests/write_fence.rs and
/// tests/fence_majority.rs test it).
async fn group(tag: &str, watchers: usize) -> Group {
    let mut g = Group::new(tag);
    g.admin = true;
    g.extra.push(("ZK_SESSION_TIMEOUT_MS", SESSION_MS.to_string()));
    g.extra.push(("FENCE_AFTER_MS", "0".into()));
    Group::start_with(g, 1, 1, watchers).await
}

/// `m`'s `path`: (status, JSON body).
async fn page(m: &Member, path: &str) -> Result<(u16, Value), String> {
    let (code, body) = m.admin_get(path).await?;
    let v = serde_json::from_str(&body).map_err(|e| format!("{path}: not JSON ({e}): {body}"))?;
    Ok((code, v))
}

/// Sends `GET path` to `127.0.0.1:port` and returns the stream without
/// reading the answer: the connection and the request wait in the kernel
/// while the launcher is frozen.
async fn send_get(port: u16, path: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect to the frozen launcher's admin port {port}: {e}"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// The answer on `s`: (status, JSON body).
async fn answer(mut s: tokio::net::TcpStream) -> Result<(u16, Value), String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let v = serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body}"))?;
    Ok((status, v))
}

/// Every launcher of a group is frozen for longer than a page may be old;
/// the requests sent meanwhile are answered 503 with the page's age once
/// it thaws, and its pages are fresh and 200 again at its next look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_older_than_5_s_answers_503_with_its_age() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("stale");
    g.admin = true;
    // A session that outlives the freeze, so that nothing but the pages'
    // age changes (an expired one would be renewed, at some cost in time).
    g.extra.push(("ZK_SESSION_TIMEOUT_MS", SESSION_MS.to_string()));
    let g = Group::start_with(g, 1, 1, 1).await;
    let members = [&g.redis[0], &g.sentinels[0], &g.watchers[0]];
    for m in members {
        let (code, body) = page(m, "/health").await.unwrap();
        assert_eq!(code, 200, "/health of {} before the freeze: {body}", m.addr());
    }
    let pids: Vec<i32> = members.iter().map(|m| m.proc.pid()).collect();
    let thaw = Thaw {
        pids: pids.clone(),
        zk: false,
    };
    for p in &pids {
        signal_pid(*p, libc::SIGSTOP);
    }
    let frozen = Instant::now();
    // The freeze is what makes the pages old: nothing to wait for but the
    // time, past STALE_AFTER with a second of margin.
    tokio::time::sleep(STALE_AFTER + Duration::from_secs(1)).await;
    let mut pending = vec![];
    for m in members {
        pending.push((m, send_get(m.admin.unwrap(), "/health").await));
    }
    drop(thaw);
    let held = frozen.elapsed();
    let mut ages = vec![];
    for (m, s) in pending {
        let (code, body) = answer(s).await.unwrap_or_else(|e| panic!("{}: {e}", m.addr()));
        let age: u64 = body["error"]
            .as_str()
            .and_then(|e| e.strip_prefix("view is "))
            .and_then(|e| e.strip_suffix(" s old"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}: /health after a {held:?} freeze: {code} {body}", m.addr()));
        assert_eq!(code, 503, "{}: {body}", m.addr());
        assert!(age >= STALE_AFTER.as_secs(), "{}: stale at {age} s: {body}", m.addr());
        ages.push(age);
    }
    // The next look (every second, each probe bounded by 1 s) makes the
    // pages fresh.
    let thawed = Instant::now();
    for m in members {
        wait_for(
            &format!("/health of {} to be fresh", m.addr()),
            Duration::from_secs(5),
            || async {
                match page(m, "/health").await? {
                    (200, _) => Ok(()),
                    (code, v) => Err(format!("{code} {v}")),
                }
            },
        )
        .await;
    }
    eprintln!(
        "MEASURE stale pages: launchers frozen {held:?}; /health answered 503 with ages {ages:?} s; fresh {:?} after the thaw",
        thawed.elapsed()
    );
}

/// "A ZooKeeper outage never fails `/health`". Before the looks bounded
/// their ZooKeeper reads (f873f47), a frozen ZooKeeper held a look up to
/// the session timeout, past the 5 s after which a page is stale, and
/// `/health` answered 503 for 6 to 12 s. Nor `/liveness` of any binary,
/// the watcher's included (its `/health` follows its session, which
/// expires during the freeze; Marathon's check of it reads `/liveness`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_stays_200_while_zookeeper_is_frozen() {
    let _serial = SERIAL.lock().await;
    let g = group("health-frozen", 1).await;
    let (r, s, w) = (&g.redis[0], &g.sentinels[0], &g.watchers[0]);
    wait_for("the watcher's /liveness", Duration::from_secs(15), || async {
        match page(w, "/liveness").await? {
            (200, _) => Ok(()),
            (code, v) => Err(format!("{code} {v}")),
        }
    })
    .await;
    let thaw = Thaw { pids: vec![], zk: true };
    zk().pause();
    let frozen = Instant::now();
    // Past the session's own end (the client gives up on it after the
    // session timeout) and a stale period after that.
    let hold = Duration::from_millis(SESSION_MS * 2) + STALE_AFTER;
    let mut failed = vec![];
    // How often the watcher's own /health said 503 meanwhile (its session
    // expires): what a check on /health would have counted.
    let mut watcher_health_503 = 0;
    while frozen.elapsed() < hold {
        if matches!(page(w, "/health").await, Ok((503, _))) {
            watcher_health_503 += 1;
        }
        let checks = [
            (r, "/health"),
            (s, "/health"),
            (r, "/liveness"),
            (s, "/liveness"),
            (w, "/liveness"),
        ];
        for (m, path) in checks {
            match page(m, path).await {
                Ok((200, _)) => {}
                other => failed.push(format!(
                    "{:.1} s {} {path}: {other:?}",
                    frozen.elapsed().as_secs_f64(),
                    m.addr()
                )),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(thaw);
    eprintln!(
        "MEASURE zk freeze {hold:?}: the watcher's /health answered 503 {watcher_health_503} times, /liveness never"
    );
    assert!(
        failed.is_empty(),
        "/health or /liveness failed {} times during a ZooKeeper freeze: first {:?}, last {:?}",
        failed.len(),
        failed.first(),
        failed.last()
    );
}
