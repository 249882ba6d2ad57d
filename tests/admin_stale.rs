//! The admin API when a launcher's look hangs (docs/contract.md 8): pages
//! more than 5 s old answer 503 and say how old they are, and turn 200
//! again once a look finishes. The one look that hangs that long is one
//! waiting on a frozen ZooKeeper with the default
//! `ZK_SESSION_TIMEOUT_MS` (10 s, which bounds each ZooKeeper call), so
//! this binary freezes a ZooKeeper of its own, one scenario at a time.

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;
use serde_json::Value;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The default `ZK_SESSION_TIMEOUT_MS`; the harness's 4 s would bound a
/// hanging look below the 5 s after which a page is stale.
const SESSION_MS: u64 = 10_000;
/// `STALE_AFTER` in src/admin.rs: the contract's 5 s.
const STALE_AFTER: Duration = Duration::from_secs(5);

/// A master and a Sentinel with the admin API and the default session
/// timeout, without the fence.
async fn group(tag: &str) -> Group {
    let mut g = Group::new(tag);
    g.admin = true;
    g.extra.push(("ZK_SESSION_TIMEOUT_MS", SESSION_MS.to_string()));
    // No fence: it would turn /ready 503 for its own reason during the
    // freeze (tests/write_fence.rs and tests/fence_majority.rs test it).
    g.extra.push(("FENCE_AFTER_MS", "0".into()));
    Group::start_with(g, 1, 1, 0).await
}

/// Resumes ZooKeeper however the test ends.
struct Thaw;

impl Drop for Thaw {
    fn drop(&mut self) {
        zk().resume();
    }
}

/// `m`'s `path`: (status, JSON body).
async fn page(m: &Member, path: &str) -> Result<(u16, Value), String> {
    let (code, body) = m.admin_get(path).await?;
    let v = serde_json::from_str(&body).map_err(|e| format!("{path}: not JSON ({e}): {body}"))?;
    Ok((code, v))
}

/// With ZooKeeper frozen, the launchers' looks wait on it for up to the
/// session timeout: their pages go stale and answer 503 with their age,
/// `/metrics` still answers, and once ZooKeeper is back the pages are
/// fresh and 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_older_than_5_s_answers_503_with_its_age() {
    let _serial = SERIAL.lock().await;
    let g = group("stale").await;
    let (r, s) = (&g.redis[0], &g.sentinels[0]);
    for (m, path) in [(r, "/ready"), (s, "/health")] {
        let (code, body) = page(m, path).await.unwrap();
        assert_eq!(code, 200, "{path} of {} before the freeze: {body}", m.addr());
    }
    let thaw = Thaw;
    zk().pause();
    let frozen = Instant::now();
    // The client notices the silence within the session timeout, a look
    // then waits at most the session timeout on its reads, and a page is
    // stale STALE_AFTER after the last look finished: 2 s of margin.
    let bound = Duration::from_millis(SESSION_MS * 2) + STALE_AFTER + Duration::from_secs(2);
    let mut stale = vec![];
    for (m, path) in [(r, "/ready"), (s, "/ready")] {
        let what = format!("{path} of {} to go stale", m.addr());
        let body = wait_for(&what, bound.saturating_sub(frozen.elapsed()), || async {
            match page(m, path).await? {
                (503, v) if v["error"].as_str().is_some_and(|e| e.starts_with("view is")) => Ok(v),
                (code, v) => Err(format!("{code} {v}")),
            }
        })
        .await;
        let age: u64 = body["error"]
            .as_str()
            .and_then(|e| e.strip_prefix("view is "))
            .and_then(|e| e.strip_suffix(" s old"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{path}: the age is not given: {body}"));
        assert!(age >= STALE_AFTER.as_secs(), "{path}: stale at {age} s: {body}");
        let (code, metrics) = m.admin_get("/metrics").await.unwrap();
        assert_eq!(code, 200, "/metrics of a stale launcher: {metrics}");
        stale.push((m.addr(), frozen.elapsed(), age));
    }
    drop(thaw);
    let thawed = Instant::now();
    // Back: the next look finishes within a session timeout (a session
    // that expired meanwhile is renewed, with a backoff of up to 2 s).
    for (m, path) in [(r, "/ready"), (s, "/health")] {
        let what = format!("{path} of {} to be fresh and 200", m.addr());
        wait_for(
            &what,
            Duration::from_millis(SESSION_MS) + Duration::from_secs(2),
            || async {
                match page(m, path).await? {
                    (200, _) => Ok(()),
                    (code, v) => Err(format!("{code} {v}")),
                }
            },
        )
        .await;
    }
    eprintln!(
        "MEASURE stale pages with ZooKeeper frozen (session timeout {SESSION_MS} ms): (launcher, stale after, age shown) {stale:?}; fresh {:?} after the thaw",
        thawed.elapsed()
    );
}

/// The contract's other promise for the same outage: "a ZooKeeper outage
/// never fails `/health`". With the default session timeout a frozen
/// ZooKeeper holds the look past 5 s, and `/health` answers 503 (stale)
/// for 6 to 12 s: measured 9.1–15.0 s (rzk-sentinel) and 9.8–15.7 s
/// (rzk-redis) into the freeze in one run, 4.8–16.8 s in another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "product bug: a frozen ZooKeeper holds the admin look up to ZK_SESSION_TIMEOUT_MS (10 s default), so /health of rzk-redis and rzk-sentinel goes stale (503) for 6-12 s, against 'a ZooKeeper outage never fails /health'"]
async fn health_stays_200_while_zookeeper_is_frozen() {
    let _serial = SERIAL.lock().await;
    let g = group("health-frozen").await;
    let (r, s) = (&g.redis[0], &g.sentinels[0]);
    let thaw = Thaw;
    zk().pause();
    let frozen = Instant::now();
    // Past the session's own end (the client gives up on it after the
    // session timeout) and a stale period after that.
    let hold = Duration::from_millis(SESSION_MS * 2) + STALE_AFTER;
    let mut failed = vec![];
    while frozen.elapsed() < hold {
        for m in [r, s] {
            match page(m, "/health").await {
                Ok((200, _)) => {}
                other => failed.push(format!(
                    "{:.1} s {}: {other:?}",
                    frozen.elapsed().as_secs_f64(),
                    m.addr()
                )),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(thaw);
    assert!(
        failed.is_empty(),
        "/health failed {} times during a ZooKeeper freeze: first {:?}, last {:?}",
        failed.len(),
        failed.first(),
        failed.last()
    );
}
