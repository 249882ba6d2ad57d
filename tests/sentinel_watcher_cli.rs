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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_waits_by_watch_and_starts_when_a_master_appears() {
    let mut g = Group::new("latemaster");
    let i = g.start_sentinel();
    // Shows that something does not happen: with no master, the Sentinel
    // task keeps waiting (it neither exits nor starts redis-sentinel).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(g.sentinels[i].proc.is_running(), "{}", g.sentinels[i].proc.log());
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
    wait_for("the sentinel to register", Duration::from_secs(5), || async {
        let regs = g.registered("sentinels").await;
        if regs.len() == 1 && regs[0].1 == s {
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
