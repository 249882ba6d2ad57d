//! `rzkctl status` against a real group: healthy is exit 0, a Sentinel's
//! ghost or a replica's link down is exit 1 with the reason, `--json` holds
//! every node and Sentinel, bad usage is exit 2.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::group::*;
use common::*;

/// The scenarios with a whole group (one of them a switchover, a planned
/// failover with its pause measured) take turns: libtest runs two tests of
/// a binary at once.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `rzkctl` with the group's environment; returns (code, stdout, stderr).
fn rzkctl(g: &Group, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(RZKCTL)
        .args(args)
        .env_clear()
        .env("ZK_HOSTS", zk().connect_string())
        .env("ZK_ROOT", &g.root)
        .output()
        .expect("run rzkctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tells_healthy_from_degraded() {
    let _serial = SERIAL.lock().await;
    // No watcher: nothing resets the ghost of a killed Sentinel.
    let g = Group::start("ctl", 3, 3, 0).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;

    let (code, table, err) = rzkctl(&g, &["status"]);
    assert_eq!(code, 0, "healthy group:\n{table}{err}");
    assert!(
        table.contains("verdict: healthy") && table.contains(&format!("record: {master}")),
        "{table}"
    );

    let (code, json, err) = rzkctl(&g, &["status", "--json"]);
    assert_eq!(code, 0, "{json}{err}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("--json is JSON");
    assert_eq!(v["record"], master.as_str());
    let nodes = v["nodes"].as_array().unwrap();
    let sentinels = v["sentinels"].as_array().unwrap();
    let mut want_nodes: Vec<String> = g.live_redis().map(Member::addr).collect();
    let mut got_nodes: Vec<String> = nodes.iter().map(|n| n["addr"].as_str().unwrap().to_string()).collect();
    want_nodes.sort();
    got_nodes.sort();
    assert_eq!(got_nodes, want_nodes);
    assert_eq!(sentinels.len(), 3, "{json}");
    for n in nodes.iter().filter(|n| n["role"] == "replica") {
        assert_eq!(n["master"], master.as_str(), "{n}");
        assert_eq!(n["link_up"], true, "{n}");
        assert_eq!(n["promotable"], true, "{n}");
        assert!(n["lag_bytes"].as_i64().is_some(), "{n}");
    }
    for s in sentinels {
        assert_eq!(s["master"], master.as_str(), "{s}");
        assert_eq!(s["ghosts"], 0, "{s}");
    }

    // A replica's link down: it sends a password the master does not
    // expect, and is cut off so that it must reconnect.
    let mi = g.master_index().await.unwrap();
    let replica = g.redis[(mi + 1) % 3].addr();
    redis_cmd(&replica, None, &["CONFIG", "SET", "masterauth", "wrong"])
        .await
        .unwrap();
    redis_cmd(&replica, None, &["CLIENT", "KILL", "TYPE", "master"])
        .await
        .unwrap();
    wait_for("the replica's link to be down", Duration::from_secs(10), || async {
        match info_field(&replica, "replication", "master_link_status").await? {
            s if s == "down" => Ok(()),
            s => Err(s),
        }
    })
    .await;
    let (code, table, _) = rzkctl(&g, &["status"]);
    assert_eq!(code, 1, "link down must be degraded:\n{table}");
    assert!(
        table.contains(&format!("replica {replica} has its link to {master} down")),
        "{table}"
    );
    redis_cmd(&replica, None, &["CONFIG", "SET", "masterauth", ""])
        .await
        .unwrap();
    g.wait_healthy(Duration::from_secs(60)).await;
    let (code, table, _) = rzkctl(&g, &["status"]);
    assert_eq!(code, 0, "healthy again:\n{table}");

    // A killed Sentinel: its registration goes with its session, but the
    // live Sentinels still count it.
    let dead = g.sentinels[0].addr();
    g.sentinels[0].proc.signal(libc::SIGKILL);
    g.sentinels[0]
        .proc
        .wait_exit(Duration::from_secs(5))
        .expect("sentinel launcher killed");
    let table = wait_for("rzkctl to report the ghost", Duration::from_secs(30), || async {
        let (code, table, _) = rzkctl(&g, &["status"]);
        if code == 1 && table.contains("dead peer") {
            Ok(table)
        } else {
            Err(format!("exit {code}:\n{table}"))
        }
    })
    .await;
    assert!(
        !table.contains(&dead),
        "the dead Sentinel is no longer registered:\n{table}"
    );
    eprintln!("MEASURE rzkctl status with a ghost:\n{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_group_is_reported_and_not_created() {
    let root = unique_root("nogroup");
    let out = Command::new(RZKCTL)
        .arg("status")
        .env_clear()
        .env("ZK_HOSTS", zk().connect_string())
        .env("ZK_ROOT", &root)
        .env("ZK_CONNECT_TIMEOUT_S", "5")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("no group at {root}")), "{err}");
    assert!(
        zk_get(&zk_client().await, &root).await.is_none(),
        "rzkctl created {root}"
    );
}

#[test]
fn bad_usage_and_configuration_exit_2() {
    for (args, env) in [
        (vec!["frobnicate"], vec![]),
        (vec!["status", "--yaml"], vec![]),
        (vec![], vec![]),
        (vec!["status"], vec![("ZK_ROOT", "relative")]),
    ] {
        let out = Command::new(RZKCTL)
            .args(&args)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.starts_with("rzkctl: invalid "), "{err}");
    }
}

fn colon(addr: &str) -> String {
    addr.replacen(' ', ":", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_to_a_chosen_replica_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let g = Group::start("switch", 3, 3, 1).await;
    let old = g.wait_healthy(Duration::from_secs(60)).await;
    let (_, version_before) = g.record_with_version().await.unwrap();

    // Refusals change nothing: the master itself, a dead address.
    for (to, want) in [
        (colon(&old), "already the master"),
        ("127.0.0.9:1".to_string(), "not a registered"),
    ] {
        let (code, out, err) = g.rzkctl(&["switchover", "--to", &to, "--timeout", "20"]).await;
        assert_eq!(code, 1, "--to {to}: {out}{err}");
        assert!(err.contains(want), "--to {to}: {err}");
        assert_eq!(g.record_with_version().await.unwrap(), (old.clone(), version_before));
        assert_eq!(role(&old).await.unwrap(), "master");
    }

    let mi = g.master_index().await.unwrap();
    // The replica Sentinel would not pick by itself is as likely as not;
    // take the last one.
    let target = g.redis.iter().enumerate().rfind(|(i, _)| *i != mi).unwrap().1.addr();
    let writer = g.start_writer("sw", None, 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, out, err) = g
        .rzkctl(&["switchover", "--to", &colon(&target), "--timeout", "30"])
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ledger = writer.finish().await;
    assert_eq!(code, 0, "switchover: {out}{err}\n{}", g.diagnose().await);
    eprintln!(
        "MEASURE switchover: {out}; writer acked {} (failed {}), longest gap {:?}",
        ledger.acked.len(),
        ledger.failed,
        ledger.longest_gap
    );

    // The chosen replica is the master for the record, every Sentinel and ROLE.
    assert_eq!(role(&target).await.unwrap(), "master");
    assert_eq!(g.record().await.as_deref(), Some(target.as_str()));
    for s in &g.sentinels {
        assert_eq!(
            sentinel_master(&s.addr()).await.unwrap(),
            target,
            "sentinel {}",
            s.addr()
        );
    }
    // Held-back priorities are restored.
    for m in &g.redis {
        let p = redis_cmd(&m.addr(), None, &["CONFIG", "GET", "replica-priority"])
            .await
            .unwrap();
        assert!(
            format!("{p:?}").contains("\"100\""),
            "{}: replica-priority {p:?}",
            m.addr()
        );
    }
    // Nothing acknowledged was lost.
    let missing = missing_keys(&target, None, &ledger.acked).await;
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        ledger.acked.len() > 50,
        "the writer barely wrote: {}",
        ledger.acked.len()
    );
    // The server-side pause rzkctl reports (CLIENT PAUSE until the old
    // master follows the new one) is Sentinel's failover (contract 9, steps
    // 3 and 4): the target already has every write, SENTINEL FAILOVER
    // starts at the Sentinel's next timer tick (100 ms), the Sentinel sees
    // the promotion at its next INFO of the replica (every 1 s during a
    // failover) and names it; rzkctl polls every 50 ms and then checks
    // ROLE. About 1.2 s; 1.1–2.1 s measured (the benchmark keeps the
    // figure). The bound, 8 s, only tells a pause lifted by the procedure
    // from one left to lapse, which would run into its own safety timeout,
    // the switchover's --timeout (30 s) plus 2 s, with room for a loaded
    // machine (a failed first SENTINEL FAILOVER is retried at the next look). The client's gap adds its
    // rediscovery of the master, so it is only reported.
    let paused_ms: u64 = out
        .split("writes paused ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pause in rzkctl's output: {out}"));
    assert!(
        paused_ms <= 8_000,
        "writes paused {paused_ms} ms on the server, over 8 s: the pause was not lifted by the switchover"
    );
    g.wait_healthy(Duration::from_secs(60)).await;
}

/// `rzkctl switchover --to` SIGKILLed half-way, right after it wrote its
/// intent: it only asked, and the master's launcher carries the
/// switchover out (or drops it at its deadline). Within the intent's
/// deadline the group is consistent again: one master, the record and
/// every Sentinel agree, no replica is left at priority 0, writes flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rzkctl_leaves_a_consistent_group() {
    let _serial = SERIAL.lock().await;
    const TIMEOUT_S: u64 = 20;
    let g = Group::start("switchkill", 3, 3, 1).await;
    let old = g.wait_healthy(Duration::from_secs(60)).await;
    let mi = g.master_index().await.unwrap();
    let target = g.redis.iter().enumerate().rfind(|(i, _)| *i != mi).unwrap().1.addr();
    let mut rzkctl = tokio::process::Command::new(RZKCTL)
        .args([
            "switchover",
            "--to",
            &colon(&target),
            "--timeout",
            &TIMEOUT_S.to_string(),
        ])
        .env_clear()
        .env("ZK_HOSTS", zk().connect_string())
        .env("ZK_ROOT", &g.root)
        .kill_on_drop(true)
        .spawn()
        .expect("start rzkctl");
    let c = zk_client().await;
    let intent = format!("{}/switchover", g.root);
    let written = wait_for("rzkctl to write its intent", Duration::from_secs(10), || async {
        match zk_get(&c, &intent).await {
            Some((data, _)) => Ok(String::from_utf8_lossy(&data).into_owned()),
            None => Err("no intent yet".to_string()),
        }
    })
    .await;
    let t0 = Instant::now();
    rzkctl.start_kill().expect("SIGKILL rzkctl");
    let status = rzkctl.wait().await.expect("reap rzkctl");
    assert!(!status.success(), "rzkctl finished before it was killed: {status:?}");
    // The intent's deadline, plus one look of every launcher (1 s) and the
    // Sentinels' INFO period (1 s), plus a margin for a loaded machine.
    let bound = Duration::from_secs(TIMEOUT_S + 5);
    // The master's launcher carries on: the intent ends with its result,
    // or at its deadline.
    let ended = wait_for("the intent to end", bound, || async {
        let Some((data, _)) = zk_get(&c, &intent).await else {
            return Ok("removed".to_string());
        };
        let v: serde_json::Value = serde_json::from_slice(&data).map_err(|e| e.to_string())?;
        let deadline = v["deadline_ms"].as_u64().unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        match v["result"].as_str() {
            Some(r) => Ok(r.to_string()),
            None if now >= deadline => Ok("expired".to_string()),
            None => Err("still under way".to_string()),
        }
    })
    .await;
    let master = g.wait_healthy(bound).await;
    wait_for("no replica held back any more", bound, || async {
        let mut held = vec![];
        for m in g.live_redis() {
            let p = redis_cmd(&m.addr(), None, &["CONFIG", "GET", "replica-priority"]).await?;
            if format!("{p:?}").contains("\"0\"") {
                held.push(m.addr());
            }
        }
        if held.is_empty() {
            Ok(())
        } else {
            Err(format!("at priority 0: {held:?}"))
        }
    })
    .await;
    assert_eq!(
        redis_cmd(&master, None, &["SET", "after-kill", "1"]).await,
        Ok(redis::Value::Okay),
        "writes must flow on {master}"
    );
    assert!(t0.elapsed() <= bound, "consistent only after {:?}", t0.elapsed());
    eprintln!(
        "MEASURE rzkctl SIGKILLed after writing {written}: the intent ended ({ended}), consistent {:?} later, master {old} -> {master}",
        t0.elapsed()
    );
}

/// `CONFIG GET replica-priority` of every redis task of `g`, by address.
async fn priorities(g: &Group) -> Vec<(String, String)> {
    let mut out = vec![];
    for m in &g.redis {
        let v = redis_cmd(&m.addr(), None, &["CONFIG", "GET", "replica-priority"])
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", m.addr()));
        let p = match v {
            redis::Value::Array(items) => items.get(1).and_then(value_text).unwrap_or_default(),
            other => format!("{other:?}"),
        };
        out.push((m.addr(), p));
    }
    out
}

/// Runs `rzkctl args…` while probing `master` with a `SET` every 200 ms;
/// returns rzkctl's (code, stdout, stderr, how long it ran) and whether a
/// probe was held up by a pause (no answer within the probe's 1 s).
async fn rzkctl_probing_pause(g: &Group, master: &str, args: &[&str]) -> (i32, String, String, Duration, bool) {
    let t0 = std::time::Instant::now();
    let run = g.rzkctl(args);
    tokio::pin!(run);
    let mut held = false;
    let mut n = 0u32;
    let (code, out, err) = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                n += 1;
                let key = format!("pause-probe:{n}");
                if let Err(e) = redis_cmd(master, None, &["SET", &key, "1"]).await {
                    held |= e.contains("timed out");
                }
            }
        }
    };
    (code, out, err, t0.elapsed(), held)
}

/// `rzkctl switchover` in one group, three ways:
/// 1. `--to` a replica that cannot catch up (it holds its master's stream
///    back with `CLIENT PAUSE … WRITE`, which a replica applies to that
///    stream too, while it still answers INFO): exit 1 once `--timeout`
///    runs out, the held-back replica's
///    priority restored, the master's write pause (seen holding a write
///    meanwhile) lifted, and nothing else changed;
/// 2. without `--to`: Sentinel picks a replica, exit 0, nothing acknowledged
///    lost;
/// 3. without a watcher, nothing brings the record to the new master: the
///    failover happens, the old master follows the new one and takes no
///    writes (READONLY, not a pause), and rzkctl exits 1 on its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_without_to_and_its_failure_and_timeout_paths() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("switch-paths");
    // The target of case 1 holds back every write-like command, and with
    // them the Sentinels' hello messages (PUBLISH) and whatever they send
    // after on that link: a short down-after would have them see it down,
    // and rzkctl rightly wait for a Sentinel that sees it healthy. Nothing
    // here needs an unplanned failover, so theirs is long.
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", "60000".into()));
    let mut g = Group::start_with(g, 3, 3, 1).await;
    let old = g.wait_healthy(Duration::from_secs(60)).await;
    let before = g.record_with_version().await.unwrap();
    let mi = g.master_index().await.unwrap();
    let replicas: Vec<String> = g
        .redis
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != mi)
        .map(|(_, m)| m.addr())
        .collect();
    let target = replicas[0].clone();

    // 1. The target holds its master's stream back, and the master takes
    //    a write the target cannot have.
    redis_cmd(&target, None, &["CLIENT", "PAUSE", "60000", "WRITE"])
        .await
        .unwrap();
    redis_cmd(&old, None, &["SET", "the-target-lacks-this", "1"])
        .await
        .unwrap();
    // The switchover waits for a Sentinel to see the held-back replica at
    // priority 0 (a Sentinel polls a replica's INFO every 10 s), then
    // pauses the master and waits for the target until --timeout: 14 s
    // leave 4 s of margin.
    let timeout_s = 14u64;
    let (code, out, err, took, held) = rzkctl_probing_pause(
        &g,
        &old,
        &[
            "switchover",
            "--to",
            &colon(&target),
            "--timeout",
            &timeout_s.to_string(),
        ],
    )
    .await;
    assert_eq!(code, 1, "a target that cannot catch up: {out}{err}");
    assert!(err.contains("switchover failed"), "{err}");
    // rzkctl's own deadline, plus at most two commands of 1 s each
    // (restoring a priority, lifting the pause) or, where the master's
    // launcher carries the switchover out, rzkctl's last look; and 1 s for
    // starting rzkctl and its intent's delete on a loaded machine.
    assert!(
        took <= Duration::from_secs(timeout_s + 3),
        "rzkctl ran {took:?} with --timeout {timeout_s}"
    );
    // It got as far as pausing the master (so the target had been seen
    // promotable and the other replica held back): the checks below are
    // about a pause that happened.
    assert!(
        held,
        "no write was ever held by the switchover's pause ({err}): it gave up before pausing"
    );
    // The pause is lifted, not left to lapse (it would hold writes 2 s
    // past the deadline where rzkctl pauses, 5 s where the master's
    // launcher does), and the priorities are back. Where rzkctl does this
    // itself it is done when it exits; where the master's launcher carries
    // the switchover out, each launcher does it at its next look, every
    // second, once the intent's deadline (which rzkctl set after its
    // start-up and first look) has passed: 3 s, well short of the 5 s of
    // a pause left to lapse.
    let after = std::time::Instant::now();
    wait_for(
        "the master to take writes again",
        Duration::from_millis(3000),
        || async {
            redis_cmd(&old, None, &["SET", "after-the-failed-switchover", "1"])
                .await
                .map(|_| ())
        },
    )
    .await;
    wait_for(
        "every replica-priority back at 100",
        Duration::from_millis(3000),
        || async {
            let held: Vec<(String, String)> = priorities(&g).await.into_iter().filter(|(_, p)| p != "100").collect();
            if held.is_empty() {
                Ok(())
            } else {
                Err(format!("{held:?}"))
            }
        },
    )
    .await;
    let restored = after.elapsed();
    assert_eq!(g.record_with_version().await.unwrap(), before, "the record changed");
    assert_eq!(role(&old).await.unwrap(), "master");
    for s in &g.sentinels {
        assert_eq!(sentinel_master(&s.addr()).await.unwrap(), old, "sentinel {}", s.addr());
    }
    redis_cmd(&target, None, &["CLIENT", "UNPAUSE"]).await.unwrap();
    g.wait_healthy(Duration::from_secs(60)).await;
    eprintln!(
        "MEASURE switchover to a replica that cannot catch up: exit 1 after {took:?} (--timeout {timeout_s}): {}; writes and priorities back {restored:?} after it",
        err.trim()
    );

    // 2. Without --to, with writes flowing.
    let writer = g.start_writer("sw-any", None, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (code, out, err) = g.rzkctl(&["switchover", "--timeout", "30"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ledger = writer.finish().await;
    assert_eq!(code, 0, "switchover without --to: {out}{err}\n{}", g.diagnose().await);
    let new = g.record().await.unwrap();
    assert!(
        replicas.contains(&new),
        "the record names {new}, not one of the replicas {replicas:?}"
    );
    assert_eq!(role(&new).await.unwrap(), "master");
    for s in &g.sentinels {
        assert_eq!(sentinel_master(&s.addr()).await.unwrap(), new, "sentinel {}", s.addr());
    }
    let missing = missing_keys(&new, None, &ledger.acked).await;
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(ledger.acked.len() > 20, "the writer barely wrote: {ledger:?}");
    for (addr, p) in priorities(&g).await {
        assert_eq!(p, "100", "{addr}: replica-priority after a switchover without --to");
    }
    g.wait_healthy(Duration::from_secs(60)).await;
    eprintln!(
        "MEASURE switchover without --to: {}; writer acked {} (failed {}), longest gap {:?}",
        out.trim(),
        ledger.acked.len(),
        ledger.failed,
        ledger.longest_gap
    );

    // 3. No watcher: the record stays behind, so rzkctl times out after
    //    the failover.
    g.watchers[0].proc.signal(libc::SIGTERM);
    g.watchers[0]
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("the watcher stops on SIGTERM");
    let timeout_s = 8u64;
    let (code, out, err, took, _) =
        rzkctl_probing_pause(&g, &new, &["switchover", "--timeout", &timeout_s.to_string()]).await;
    assert_eq!(code, 1, "nobody updates the record: {out}{err}");
    assert!(err.contains("timed out waiting for the record"), "{err}");
    assert!(
        took <= Duration::from_secs(timeout_s + 3),
        "rzkctl ran {took:?} with --timeout {timeout_s}"
    );
    let newer = sentinel_master(&g.sentinels[0].addr()).await.unwrap();
    assert_ne!(newer, new, "no failover happened");
    assert_eq!(role(&newer).await.unwrap(), "master");
    // The old master follows the new one and refuses writes at once: it is
    // not paused (a paused one holds the write past the probe's 1 s).
    match redis_cmd(&new, None, &["SET", "to-the-old-master", "1"]).await {
        Err(e) if e.to_ascii_uppercase().contains("READONLY") => {}
        other => panic!("a write to the old master after the switchover: {other:?}"),
    }
    assert_eq!(
        g.record().await.as_deref(),
        Some(new.as_str()),
        "the record moved without a watcher"
    );
    // A watcher brings the record in line; the group is whole again.
    g.start_watcher();
    let healthy = g.wait_healthy(Duration::from_secs(60)).await;
    assert_eq!(healthy, newer);
    eprintln!(
        "MEASURE switchover with the record left behind: exit 1 after {took:?} (--timeout {timeout_s}): {}",
        err.trim()
    );
}

/// Waits until a Sentinel gave up failing `master` over for want of a
/// promotable replica (its log's `-failover-abort-no-good-slave` after
/// `since`, each log's length before), and checks that no server took
/// over meanwhile.
async fn gave_up(g: &Group, master: &str, since: &[usize]) {
    wait_for(
        "a Sentinel to give up for want of a promotable replica",
        Duration::from_secs(20),
        || async {
            let gave_up = g.sentinels.iter().zip(since).any(|(s, n)| {
                s.proc
                    .log()
                    .get(*n..)
                    .unwrap_or("")
                    .contains("-failover-abort-no-good-slave")
            });
            gave_up
                .then_some(())
                .ok_or("no -failover-abort-no-good-slave yet".to_string())
        },
    )
    .await;
    assert_eq!(
        g.record().await.as_deref(),
        Some(master),
        "the record moved during the pause"
    );
    for r in g.live_redis() {
        assert_ne!(
            role(&r.addr()).await.as_deref(),
            Ok("master"),
            "{} became master during the pause",
            r.addr()
        );
    }
}

/// Maintenance mode: `rzkctl pause` holds every replica at priority 0
/// (confirmed by the Sentinels before it returns), shown by `rzkctl
/// status` and the admin JSON; a master SIGKILLed while paused is not
/// failed over (the Sentinels try and give up); after `rzkctl resume`, or
/// the pause's own end, it is failed over within `down-after` + 6 s. The
/// first master's task is stopped (SIGTERM) rather than killed: it does
/// not hand over, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_group_fails_over_only_after_the_pause() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("pause");
    g.admin = true;
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", "1000".into()));
    let g = Group::start_with(g, 3, 3, 1).await;
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    let mut master = g.wait_healthy(Duration::from_secs(60)).await;
    let replicas: Vec<String> = g.live_redis().map(Member::addr).filter(|a| *a != master).collect();
    wait_sentinels_know(&sentinels, &replicas, None, Duration::from_secs(30)).await;
    let down_after = Duration::from_millis(1000);

    // The first master's task is stopped (SIGTERM: the hand-over must
    // refuse), the second's SIGKILLed.
    for round in ["resume", "expiry"] {
        let t0 = Instant::now();
        let for_ = if round == "resume" { "10m" } else { "20s" };
        let (code, out, err) = g.rzkctl(&["pause", "--for", for_, "--reason", "test"]).await;
        assert_eq!(code, 0, "{round}: rzkctl pause:\n{out}{err}");
        let confirmed = t0.elapsed();
        let (_, table, _) = g.rzkctl(&["status"]).await;
        assert!(
            table.contains("note: PAUSED until") && table.contains("(test)"),
            "{table}"
        );
        let mi = g.redis.iter().position(|m| m.addr() == master).unwrap();
        let (_, body) = g.redis[mi].admin_get("/health").await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["paused"] == true && v["paused_until"].as_u64().is_some(), "{body}");
        let paused_until_ms = v["paused_until"].as_u64().unwrap();

        let since: Vec<usize> = g.sentinels.iter().map(|s| s.proc.log().len()).collect();
        if round == "resume" {
            g.redis[mi].proc.signal(libc::SIGTERM);
            g.redis[mi]
                .proc
                .wait_exit(Duration::from_secs(30))
                .expect("the stop ends");
            let log = g.redis[mi].proc.log();
            assert!(
                log.contains("no safe hand-over") && log.contains("the group is paused"),
                "the hand-over did not refuse:\n{log}"
            );
        } else {
            g.redis[mi].proc.signal(libc::SIGKILL);
        }
        gave_up(&g, &master, &since).await;
        let held = t0.elapsed();
        let ended = if round == "resume" {
            let (code, out, err) = g.rzkctl(&["resume"]).await;
            assert_eq!(code, 0, "rzkctl resume:\n{out}{err}");
            Instant::now()
        } else {
            // Still held just before the pause ends by itself: at the end
            // rzkctl wrote (it starts counting after its own start-up and
            // look, later than t0).
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let end = Instant::now() + Duration::from_millis(paused_until_ms.saturating_sub(now_ms));
            tokio::time::sleep_until((end - Duration::from_secs(1)).into()).await;
            assert_eq!(
                g.record().await.as_deref(),
                Some(master.as_str()),
                "the record moved during the pause"
            );
            end
        };
        let new = wait_for("a failover after the pause", Duration::from_secs(30), || async {
            match g.record().await {
                Some(r) if r != master && role(&r).await.as_deref() == Ok("master") => Ok(r),
                other => Err(format!("record {other:?}")),
            }
        })
        .await;
        let took = ended.elapsed();
        eprintln!(
            "MEASURE pause ({round}): confirmed by the Sentinels {confirmed:?} after rzkctl pause; the dead master held {held:?}; failed over {took:?} after the pause ended ({master} -> {new})"
        );
        // The launcher asks for the failover at its first look after the
        // pause (1 s), retried each look until the Sentinels have read the
        // restored priorities (their INFO of a replica, every 1 s); Sentinel
        // on its own would retry only 2 × failover-timeout (10 s) after its
        // last try.
        assert!(
            took <= down_after + Duration::from_secs(6),
            "{round}: failed over {took:?} after the pause ended"
        );
        master = g.wait_healthy(Duration::from_secs(60)).await;
    }
}

/// `<root>/history` as `rzkctl history --json` prints it: (cause, old, new,
/// epoch) per change, oldest first.
async fn history(g: &Group) -> Vec<(String, Option<String>, String, Option<u64>)> {
    let (code, out, err) = g.rzkctl(&["history", "--json"]).await;
    assert_eq!(code, 0, "rzkctl history --json:\n{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cause"].as_str().unwrap().to_string(),
                c["old"].as_str().map(str::to_string),
                c["new"].as_str().unwrap().to_string(),
                c["epoch"].as_u64(),
            )
        })
        .collect()
}

/// Waits until the history holds `n` changes and the group is healthy;
/// the new master.
async fn changed(g: &Group, n: usize, what: &str) -> String {
    wait_for(
        &format!("the history to record the {what}"),
        Duration::from_secs(30),
        || async {
            let h = history(g).await;
            (h.len() == n).then_some(()).ok_or(format!("{h:?}"))
        },
    )
    .await;
    g.wait_healthy(Duration::from_secs(60)).await
}

/// Every change of master is recorded once in `<root>/history`, with its
/// cause: the bootstrap, `rzkctl switchover`, the hand-over of a stopped
/// master's task, the crash of a master's server, and a failover forced
/// at a Sentinel (the takeover: `redis_bootstrap.rs`). `rzkctl history`
/// prints them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_records_each_change_once_with_its_cause() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("history");
    // Not lower: at 1000 ms a Sentinel now and then fails over a master
    // it has just promoted (redis/redis#8607; rzk-sentinel warns below
    // 2000), and a sixth change of master breaks the count. Seen once
    // here: the hand-over's new master failed over 1 s after it.
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", "2000".into()));
    let g = Group::start_with(g, 4, 3, 1).await;
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    let first = changed(&g, 1, "bootstrap").await;
    let know = |master: String| {
        let replicas: Vec<String> = g.live_redis().map(Member::addr).filter(|a| *a != master).collect();
        let sentinels = sentinels.clone();
        async move {
            wait_sentinels_know(&sentinels, &replicas, None, Duration::from_secs(30)).await;
            wait_no_failover(&sentinels, Duration::from_secs(30)).await;
        }
    };
    know(first.clone()).await;

    let (code, out, err) = g.rzkctl(&["switchover", "--timeout", "30"]).await;
    assert_eq!(code, 0, "rzkctl switchover:\n{out}{err}");
    let second = changed(&g, 2, "switchover").await;
    know(second.clone()).await;

    let mi = g.redis.iter().position(|m| m.addr() == second).unwrap();
    g.redis[mi].proc.signal(libc::SIGTERM);
    g.redis[mi]
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("the hand-over ends");
    let third = changed(&g, 3, "hand-over").await;
    know(third.clone()).await;

    signal_pid(server_pid(&third).await, libc::SIGKILL);
    let fourth = changed(&g, 4, "crash").await;
    know(fourth.clone()).await;

    // A Sentinel may not yet have read the last replica's priority.
    wait_for(
        "a Sentinel to accept SENTINEL FAILOVER",
        Duration::from_secs(20),
        || async {
            redis_cmd(&sentinels[0], None, &["SENTINEL", "FAILOVER", "mymaster"])
                .await
                .map(drop)
        },
    )
    .await;
    let fifth = changed(&g, 5, "forced failover").await;

    let h = history(&g).await;
    let (_, table, _) = g.rzkctl(&["history"]).await;
    eprintln!("MEASURE history:\n{table}");
    let causes: Vec<&str> = h.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        causes,
        ["bootstrap", "switchover", "hand-over", "crash", "failover"],
        "{table}"
    );
    let masters = [&first, &second, &third, &fourth, &fifth];
    for (i, c) in h.iter().enumerate() {
        assert_eq!(&c.2, masters[i], "change {i}: {table}");
        assert_eq!(
            c.1.as_ref(),
            i.checked_sub(1).map(|j| masters[j]),
            "change {i}: {table}"
        );
    }
    assert_eq!(h[0].3, None, "a bootstrap has no epoch: {table}");
    let epochs: Vec<u64> = h[1..].iter().map(|c| c.3.expect("a Sentinel's epoch")).collect();
    assert!(epochs.windows(2).all(|w| w[0] < w[1]), "epochs {epochs:?}: {table}");
    assert!(table.contains("hand-over") && table.contains("CAUSE"), "{table}");
}
