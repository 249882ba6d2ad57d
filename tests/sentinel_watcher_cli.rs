//! `rzk-sentinel` and `rzk-watcher` at the edges: bad configuration, and a
//! Sentinel task with no master to wait for.

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_of_sentinel_and_watcher_exits_2_before_touching_zookeeper() {
    let cases: &[(&str, &str, &str)] = &[
        (RZK_SENTINEL, "SENTINEL_QUORUM", "0"),
        (RZK_SENTINEL, "SENTINEL_DOWN_AFTER_MS", "fast"),
        (RZK_SENTINEL, "SENTINEL_PARALLEL_SYNCS", "0"),
        (RZK_SENTINEL, "MASTER_WAIT_TIMEOUT_S", "x"),
        (RZK_SENTINEL, "PORT0", "abc"),
        (RZK_SENTINEL, "PORT0", "70000"),
        (RZK_SENTINEL, "ZK_HOSTS", ""),
        (RZK_SENTINEL, "ZK_ROOT", "redis"),
        (RZK_SENTINEL, "BIND_IP", "1.2.3"),
        (RZK_SENTINEL, "REDIS_SENTINEL_BIN", "/no/such/redis-sentinel"),
        (RZK_SENTINEL, "DATA_DIR", "/proc/rzk-cannot-create"),
        (RZK_WATCHER, "RECONCILE_INTERVAL_S", "0"),
        (RZK_WATCHER, "ZK_HOSTS", ""),
        (RZK_WATCHER, "ZK_ROOT", "/trailing/"),
        (RZK_WATCHER, "ZK_DIGEST", "no-colon"),
        (RZK_WATCHER, "MASTER_NAME", "two words"),
    ];
    let c = zk_client().await;
    for (bin, var, value) in cases {
        let mut g = Group::new("badcfg");
        g.extra.push((var, value.to_string()));
        let t = task();
        let env = g.env(Some(&t));
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        let t0 = Instant::now();
        let p = Proc::spawn(bin, &[], &env, t.dir.join("out.log"));
        let name = bin.rsplit('/').next().unwrap();
        let status = p
            .wait_exit(Duration::from_secs(1))
            .unwrap_or_else(|| panic!("{name} {var}={value:?}: still running after 1 s"));
        let log = p.log();
        assert_eq!(status.code(), Some(2), "{name} {var}={value:?}: {status:?}\n{log}");
        assert_eq!(
            log.lines().count(),
            1,
            "{name} {var}={value:?}: one line expected:\n{log}"
        );
        assert!(
            log.contains(var) && log.contains("expected"),
            "{name} {var}={value:?}: {log}"
        );
        if *var != "ZK_DIGEST" {
            assert!(
                log.contains(&format!("{value:?}")),
                "{name} {var}={value:?}: value not shown: {log}"
            );
        } else {
            assert!(!log.contains(value), "the digest must not be echoed: {log}");
        }
        assert!(
            zk_get(&c, &g.root).await.is_none(),
            "{name} {var}={value:?}: {} was created",
            g.root
        );
        eprintln!("{name} {var}={value:?} -> exit 2 in {:?}: {}", t0.elapsed(), log.trim());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_without_a_master_gives_up_after_the_wait_timeout() {
    let mut g = Group::new("nomaster");
    g.extra.push(("MASTER_WAIT_TIMEOUT_S", "2".into()));
    let t0 = Instant::now();
    let i = g.start_sentinel();
    let s = &g.sentinels[i];
    let status = s
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("rzk-sentinel kept waiting");
    let took = t0.elapsed();
    let log = s.proc.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        took >= Duration::from_secs(2),
        "gave up after {took:?}, before the 2 s timeout"
    );
    assert!(
        log.contains("no live master appeared") && log.contains(&format!("{}/master", g.root)),
        "{log}"
    );
    assert!(
        g.registered("sentinels").await.is_empty(),
        "a sentinel that never ran must not be registered"
    );
    eprintln!("MEASURE rzk-sentinel with no master exited 1 after {took:?}");
}

/// The ZooKeeper session a launcher logged connecting with.
fn logged_session(log: &str) -> Result<i64, String> {
    log.lines()
        .filter(|l| l.contains("connected to ZooKeeper"))
        .find_map(|l| l.split("session=").nth(1)?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no 'connected to ZooKeeper … session=' line:\n{log}"))
}

/// The xid of the last request ZooKeeper received on `session`'s
/// connection (`lcxid` in `cons`; pings carry no xid and leave it alone).
fn last_request_xid(session: i64) -> Result<String, String> {
    let cons = zk().four_letters("cons")?;
    let sid = format!("sid={session:#x},");
    let line = cons
        .lines()
        .find(|l| l.contains(&sid))
        .ok_or_else(|| format!("no connection of session {session:#x} in cons:\n{cons}"))?;
    line.split("lcxid=")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .map(str::to_string)
        .ok_or_else(|| format!("no lcxid in {line}"))
}

/// A Sentinel task started before any master waits for one by a ZooKeeper
/// watch on the record, not by polling: ZooKeeper itself lists the watch,
/// and the task sends ZooKeeper no request at all for longer than any
/// re-check period it has. When a master appears it starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_waits_by_watch_and_starts_when_a_master_appears() {
    let mut g = Group::new("latemaster");
    let i = g.start_sentinel();
    let session = wait_for(
        "the sentinel task to wait for a master",
        Duration::from_secs(15),
        || async {
            let log = g.sentinels[i].proc.log();
            if log.contains("waiting for a live master") {
                logged_session(&log)
            } else {
                Err(log)
            }
        },
    )
    .await;
    let record = format!("{}/master", g.root);
    // ZooKeeper's view: a watch on the (missing) record, held by its session.
    let wchp = zk().four_letters("wchp").unwrap();
    let holders: Vec<&str> = wchp
        .split(&format!("{record}\n"))
        .nth(1)
        .map(|rest| {
            rest.lines()
                .take_while(|l| l.starts_with('\t'))
                .map(str::trim)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        holders.contains(&format!("{session:#x}").as_str()),
        "no watch of session {session:#x} on {record}; watches by path:\n{wchp}"
    );
    // No request for longer than its only re-check period (every 2 s while
    // the record names a master that does not answer; none while there is
    // no record, the case here) plus 1 s: a poll would have sent one. This
    // also shows that the task neither exits nor starts redis-sentinel.
    let xid = last_request_xid(session).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        last_request_xid(session).unwrap(),
        xid,
        "the waiting sentinel task sent ZooKeeper requests: it polls"
    );
    assert!(g.sentinels[i].proc.is_running(), "{}", g.sentinels[i].proc.log());
    assert!(
        !g.sentinels[i].proc.log().contains("redis-sentinel started"),
        "{}",
        g.sentinels[i].proc.log()
    );
    let t0 = Instant::now();
    g.start_redis();
    let s = g.sentinels[i].addr();
    let master = g.redis[0].addr();
    wait_for(
        "the sentinel to monitor the new master",
        Duration::from_secs(15),
        || async {
            match sentinel_master(&s).await {
                Ok(m) if m == master => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    eprintln!(
        "MEASURE waiting sentinel monitored the master {:?} after its launcher started",
        t0.elapsed()
    );
    let c = zk_client().await;
    let dir = format!("{}/sentinels", g.root);
    wait_for("the sentinel to register", Duration::from_secs(5), || async {
        let mut regs = vec![];
        for child in zk_children(&c, &dir).await {
            if let Some((d, _)) = zk_get(&c, &format!("{dir}/{child}")).await {
                regs.push(String::from_utf8_lossy(&d).into_owned());
            }
        }
        if regs == [s.clone()] {
            Ok(())
        } else {
            Err(format!("{regs:?}"))
        }
    })
    .await;
}

/// A down-after below 2000 ms is accepted (the contract allows it) but warned about:
/// Sentinel can then fail a just-promoted master over a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_warns_about_a_down_after_that_causes_needless_failovers() {
    for (down_after, warned) in [("1000", true), ("2000", false)] {
        let mut g = Group::new("downafter");
        g.extra.push(("MASTER_WAIT_TIMEOUT_S", "1".into()));
        g.extra.push(("SENTINEL_DOWN_AFTER_MS", down_after.into()));
        let i = g.start_sentinel();
        let s = &g.sentinels[i];
        s.proc
            .wait_exit(Duration::from_secs(10))
            .expect("rzk-sentinel kept waiting");
        let log = s.proc.log();
        assert_eq!(
            log.contains("SENTINEL_DOWN_AFTER_MS is below 2000"),
            warned,
            "SENTINEL_DOWN_AFTER_MS={down_after}: {log}"
        );
    }
}

/// envy lower-cases variable names with Unicode rules, so `Z\u{212A}_HOSTS`
/// (a Kelvin sign) used to collide with `ZK_HOSTS` and panic (exit 101).
/// Such a name is not ours and is ignored: the binaries reach their own
/// checks and exit 2 on the bad value given beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unicode_case_folding_twin_of_a_variable_does_not_panic() {
    let cases: &[(&str, &str, &str)] = &[
        (RZK_REDIS, "PORT0", "abc"),
        (RZK_SENTINEL, "PORT0", "abc"),
        (RZK_WATCHER, "RECONCILE_INTERVAL_S", "0"),
    ];
    for (bin, var, value) in cases {
        let mut g = Group::new("kelvin");
        g.extra.push(("Z\u{212A}_HOSTS", "elsewhere:2181".into()));
        g.extra.push((var, value.to_string()));
        let t = task();
        let env = g.env(Some(&t));
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        assert!(env.iter().any(|(k, _)| *k == "ZK_HOSTS"), "both spellings must be set");
        let p = Proc::spawn(bin, &[], &env, t.dir.join("out.log"));
        let name = bin.rsplit('/').next().unwrap();
        let status = p
            .wait_exit(Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{name}: still running after 2 s"));
        let log = p.log();
        assert_eq!(status.code(), Some(2), "{name}: {status:?}\n{log}");
        assert!(log.contains(var) && !log.contains("panicked"), "{name}: {log}");
    }
}
