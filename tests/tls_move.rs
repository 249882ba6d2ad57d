//! Turning TLS on in a running plain-text group (issue 28), as an operator
//! does it on Marathon: a rolling update of every app to the TLS files
//! with `TLS_TRANSITION=yes` (the tasks still speak plain text), one
//! `rzkctl tls on` (every task switches live), and a rolling update
//! without `TLS_TRANSITION` (docs/deploying.md "Turning TLS on in a
//! running group"). With keys preloaded and a `WAIT 1` writer that moves
//! to TLS when it can: no acknowledged write lost, no preloaded key lost,
//! no full resync at the switch, and nothing answers plain text at the end.
//! On each engine in turn: Redis, then Valkey.
//!
//! Its own binary: the harness's checks move from plain text to TLS half
//! way ([`common::tls::checks_over_tls`] is process-wide).

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::rolling::*;
use common::tls::*;
use common::*;

/// Replaces every Sentinel and the watcher with tasks of the app's new
/// version (`g.extra`), one at a time, each Sentinel ready before the
/// next stops.
async fn roll_sentinels_and_watcher(g: &mut Group) {
    let n = g.sentinels.len();
    for i in 0..n {
        if g.sentinels[i].proc.wait_exit(Duration::ZERO).is_some() {
            continue;
        }
        replace_sentinel(g, i).await;
    }
    for i in 0..g.watchers.len() {
        if g.watchers[i].proc.wait_exit(Duration::ZERO).is_some() {
            continue;
        }
        g.watchers[i].proc.signal(libc::SIGTERM);
        g.watchers[i]
            .proc
            .wait_exit(Duration::from_secs(30))
            .expect("a watcher stops on SIGTERM");
        g.start_watcher();
    }
}

/// The redis app's rolling update: the live tasks, one at a time, the
/// master second, each replacement ready before the next stop.
async fn roll_redis(g: &mut Group) -> Vec<Step> {
    let mi = g.master_index().await.expect("a master");
    let live: Vec<usize> = (0..g.redis.len())
        .filter(|i| *i != mi && g.redis[*i].proc.wait_exit(Duration::ZERO).is_none())
        .collect();
    let order = [live[0], mi, live[1]];
    rolling_restart(g, &order, Duration::from_secs(30), Gate::Ready).await
}

/// `sync_full` and `sync_partial_ok` of every live server, over the
/// protocol the checks speak now.
async fn syncs(g: &Group) -> Vec<(String, u64, u64)> {
    let mut v = vec![];
    for m in g.live_redis() {
        let full = info_field(&m.addr(), "stats", "sync_full").await.unwrap();
        let partial = info_field(&m.addr(), "stats", "sync_partial_ok").await.unwrap();
        v.push((m.addr(), full.parse().unwrap(), partial.parse().unwrap()));
    }
    v
}

/// An `rzk-redis` of the group's current version without the variables
/// `drop` picks exits 1 before it starts a server, its log saying `why`.
async fn refused(g: &Group, drop: impl Fn(&str) -> bool, why: &str) {
    let t = task();
    let mut vars = g.env(Some(&t));
    vars.retain(|(k, _)| !drop(k));
    let p = Proc::spawn(RZK_REDIS, &[], &vars, t.dir.join("launcher.log"));
    let status = p
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("a task that cannot speak what the group speaks runs on:\n{}", p.log()));
    assert_eq!(status.code(), Some(1), "{}", p.log());
    assert!(p.log().contains(why), "no {why:?} in:\n{}", p.log());
    assert!(!p.log().contains("redis-server started"), "{}", p.log());
}

/// `rzkctl tls on|off` refuses while `n` tasks could not follow, each
/// named with `why`: exit 1, and `<root>/tls` unchanged.
async fn switch_refused(g: &Group, way: &str, n: usize, why: &str) {
    let c = g.zk_client().await;
    let path = format!("{}/tls", g.root);
    let before = zk_get(&c, &path).await.map(|(d, _)| d);
    let (code, out, err) = g.rzkctl(&["tls", way]).await;
    assert_eq!(code, 1, "rzkctl tls {way} went ahead:\n{out}{err}");
    assert!(
        err.contains(&format!(
            "tls {way} refused, nothing changed: {n} task(s) could not follow"
        )),
        "expected {n} tasks named:\n{err}"
    );
    assert_eq!(err.matches(why).count(), n, "{n} times {why:?} expected:\n{err}");
    assert_eq!(zk_get(&c, &path).await.map(|(d, _)| d), before, "{path} changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_group_moves_to_tls_by_rolling_updates_and_loses_nothing() {
    // One after the other: the checks' protocol is process-wide.
    for engine in ["redis", "valkey"] {
        eprintln!("==== the move on {engine}");
        moves_to_tls(engine).await;
    }
}

async fn moves_to_tls(engine: &'static str) {
    let t_all = Instant::now();
    checks_in_plain_text();
    let pki = pki();
    let files = Files::new(pki);
    let mut g = Group::new("tlsmove");
    g.admin = true;
    // The Marathon values: 20 s for the hand-over, 30 s kill grace.
    g.extra.push(("SHUTDOWN_FAILOVER_TIMEOUT_S", "20".into()));
    g.extra.push(("ENGINE", engine.into()));
    let mut g = Group::start_with(g, 3, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    preload(&master, PRELOAD_KEYS, PRELOAD_VALUE).await;
    wait_preloaded(&g, PRELOAD_KEYS).await;
    let writer = g.start_writer("tlsmove", None, 1);
    let (_, v0) = g.record_with_version().await.unwrap();

    // 1. Every app's new version: the TLS files, TLS_TRANSITION=yes. The
    // tasks still speak plain text; the group works as before.
    let t = Instant::now();
    g.extra.extend(files.env());
    g.extra.push(("TLS_TRANSITION", "yes".into()));
    // No switch while a task could not follow: none can yet, then the
    // three plain-text rzk-redis tasks.
    switch_refused(&g, "on", 7, "has no TLS files, so it cannot speak TLS").await;
    roll_sentinels_and_watcher(&mut g).await;
    switch_refused(&g, "on", 3, "has no TLS files, so it cannot speak TLS").await;
    let steps1 = roll_redis(&mut g).await;
    g.wait_healthy(Duration::from_secs(120)).await;
    let roll1 = t.elapsed();
    // Still plain text, and the admin API answers HTTP.
    for m in g.live_redis().chain(g.live_sentinels()) {
        redis_cmd(&m.addr(), None, &["PING"])
            .await
            .unwrap_or_else(|e| panic!("{} does not answer plain text before the switch: {e}", m.addr()));
    }
    let before = syncs(&g).await;

    // 2. The switch: every task at once, live.
    let t = Instant::now();
    let (code, out, err) = g.rzkctl(&["tls", "on"]).await;
    let switch = t.elapsed();
    assert_eq!(code, 0, "rzkctl tls on:\n{out}{err}\n{}", g.diagnose().await);
    // The clients move to TLS (the writer at its next connection).
    checks_over_tls(pki);
    for m in g.live_redis().chain(g.live_sentinels()) {
        let (ip, port) = ip_port(&m.addr());
        no_plain_reply(&ip, port, b"PING\r\n").await.unwrap();
    }
    let master = wait_for("the group healthy over TLS", Duration::from_secs(60), || async {
        let m = g.record().await.ok_or("no record")?;
        match role(&m).await.as_deref() {
            Ok("master") => Ok(m),
            other => Err(format!("{m}: {other:?}")),
        }
    })
    .await;
    // Every replica is back online over TLS by a partial resync.
    let after = wait_for("every replica's link up over TLS", Duration::from_secs(30), || async {
        for m in g.live_redis() {
            if m.addr() != master {
                let link = info_field(&m.addr(), "replication", "master_link_status").await?;
                if link != "up" {
                    return Err(format!("{}: master_link_status:{link}", m.addr()));
                }
            }
        }
        Ok(syncs(&g).await)
    })
    .await;
    for ((a, full0, _), (b, full1, _)) in before.iter().zip(&after) {
        assert_eq!(a, b);
        assert_eq!(full0, full1, "{a}: a full sync at the switch ({before:?} -> {after:?})");
    }
    g.wait_healthy(Duration::from_secs(60)).await;
    // The watcher's HEALTHCHECK (`rzk-watcher --check`) of a task in
    // transition speaks what the group speaks.
    let check = tokio::process::Command::new(RZK_WATCHER)
        .arg("--check")
        .env_clear()
        .envs(g.env(None))
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr).into_owned() + &String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && said.contains("the record matches the sentinels"),
        "rzk-watcher --check after the switch: {:?}\n{said}",
        check.status
    );

    // The way back works the same way, while every task still has
    // TLS_TRANSITION=yes; and a task that cannot speak what the group
    // speaks refuses to start, and says why.
    let (code, out, err) = g.rzkctl(&["tls", "off"]).await;
    assert_eq!(code, 0, "rzkctl tls off:\n{out}{err}\n{}", g.diagnose().await);
    checks_in_plain_text();
    g.wait_healthy(Duration::from_secs(60)).await;
    refused(
        &g,
        |k| k == "TLS_TRANSITION",
        "speaks only TLS, but the group speaks plain text",
    )
    .await;
    let (code, out, err) = g.rzkctl(&["tls", "on"]).await;
    assert_eq!(code, 0, "rzkctl tls on again:\n{out}{err}\n{}", g.diagnose().await);
    checks_over_tls(pki);
    g.wait_healthy(Duration::from_secs(60)).await;
    refused(
        &g,
        |k| k.starts_with("TLS_"),
        "the group speaks TLS, but this task has no TLS files",
    )
    .await;

    // 3. Every app without TLS_TRANSITION: TLS only, HTTPS admin API.
    let t = Instant::now();
    g.extra.retain(|(k, _)| *k != "TLS_TRANSITION");
    roll_sentinels_and_watcher(&mut g).await;
    let steps3 = roll_redis(&mut g).await;
    let master = g.wait_healthy(Duration::from_secs(120)).await;
    let roll3 = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ledger = writer.finish().await;
    let (_, v1) = g.record_with_version().await.unwrap();
    let losses = Losses::on(&master, &ledger).await;
    eprintln!(
        "MEASURE plain -> TLS move on {engine}: roll 1 (TLS_TRANSITION=yes) {roll1:?} {steps1:?}; rzkctl tls on {switch:?} ({}); \
         syncs before {before:?} after {after:?}; roll 3 (TLS only) {roll3:?} {steps3:?}; record version {v0} -> {v1}; {}; total {:?}",
        out.trim(),
        losses.summary(&ledger),
        t_all.elapsed()
    );
    for m in g.live_redis().chain(g.live_sentinels()) {
        let (ip, port) = ip_port(&m.addr());
        let (runs, _) = common::engine::engine_of(&m.addr()).await.unwrap();
        assert_eq!(runs, engine, "{}", m.addr());
        no_plain_reply(&ip, port, b"PING\r\n").await.unwrap();
        no_plain_reply("127.0.0.1", m.admin.unwrap(), b"GET /health HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
    }
    losses.assert_none(&ledger, &master);
    // TLS-only tasks cannot go back to plain text.
    switch_refused(&g, "off", 7, "speaks only TLS (no TLS_TRANSITION=yes)").await;
    // A node written by hand is not refused: every task says it cannot
    // follow.
    let c = g.zk_client().await;
    let path = format!("{}/tls", g.root);
    c.set_data(&path, b"off", None).await.unwrap();
    wait_for(
        "every task saying it cannot follow",
        Duration::from_secs(15),
        || async {
            let quiet: Vec<String> = g
                .live_redis()
                .chain(g.live_sentinels())
                .chain(g.watchers.iter().filter(|w| w.proc.wait_exit(Duration::ZERO).is_none()))
                .filter(|m| {
                    !m.proc
                        .log()
                        .contains("the group switched to what this task cannot speak")
                })
                .map(|m| m.addr())
                .collect();
            if quiet.is_empty() {
                Ok(())
            } else {
                Err(format!("not said by {quiet:?}"))
            }
        },
    )
    .await;
    c.set_data(&path, b"on", None).await.unwrap();
}
