//! The engines (issue 27): the core scenarios on Redis and on Valkey 8,
//! and groups that mix them.
//!
//! The matrix: [`core_scenarios`] is one list of scenarios, run in order on
//! one group of an engine: bootstrap and the engine shown everywhere
//! (`rzkctl status`, the admin JSON, `rzk_engine_info`, every admin page),
//! the launchers' connections kept from look to look, the unsynced-replica
//! rule, the planned hand-over, a failover into the
//! record, the write fence and a takeover after total loss; once per
//! engine, each on one group to keep it short (about 30 s an engine; the
//! rest of the suite runs each scenario on Redis in depth). The mixed
//! groups: a Redis server refuses to become a replica of a Valkey master
//! before it starts; a Valkey replica follows a Redis master, with
//! Sentinels of both engines, and a hand-over goes to the youngest replica
//! even when it is Redis (a rollback stays possible).
//!
//! Needs `valkey-server` and `valkey-sentinel` on PATH (`scripts/deps.sh`
//! installs them from bookworm-backports); without them every test fails
//! and says so. This binary freezes its own ZooKeeper (the fence), so its
//! tests run one at a time.

mod common;

use std::time::{Duration, Instant};

use common::engine::*;
use common::group::*;
use common::scenarios::*;
use common::*;
use redis::Value;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `FENCE_AFTER_MS` of the matrix's group.
const FENCE_MS: u64 = 1000;

/// Every scenario of the matrix, in order, on a fresh group of `engine`.
async fn core_scenarios(engine: EngineCase) {
    let version = engine.version();
    let t_all = Instant::now();
    let mut g = Group::new(&format!("eng{}", engine.name));
    g.extra.push(("ENGINE", engine.name.into()));
    g.extra.push(("FENCE_AFTER_MS", FENCE_MS.to_string()));
    g.extra
        .push(("SHUTDOWN_FAILOVER_TIMEOUT_S", HANDOVER_BUDGET_S.to_string()));
    g.admin = true;
    let mut g = Group::start_with(g, 3, 3, 1).await;
    let mut times = vec![("bootstrap", t_all.elapsed())];

    let t = Instant::now();
    engine_is_shown(&g, engine, &version).await;
    times.push(("engine shown", t.elapsed()));
    let t = Instant::now();
    launchers_keep_their_connections(&g).await;
    times.push(("connections kept", t.elapsed()));
    let t = Instant::now();
    unsynced_replica_is_held_at_priority_zero(&mut g).await;
    times.push(("unsynced replica", t.elapsed()));
    let t = Instant::now();
    planned_hand_over(&g, engine).await;
    times.push(("hand-over", t.elapsed()));
    let t = Instant::now();
    failover_into_the_record(&g).await;
    times.push(("failover", t.elapsed()));
    let t = Instant::now();
    fence(&g).await;
    times.push(("fence", t.elapsed()));
    let t = Instant::now();
    takeover(&mut g, engine).await;
    times.push(("takeover", t.elapsed()));
    eprintln!(
        "MEASURE {} {version} core scenarios in {:?}: {times:?}",
        engine.name,
        t_all.elapsed()
    );
}

/// Every server and Sentinel runs the engine; `rzkctl status` (table and
/// JSON), every admin page and the metrics name it with its version.
async fn engine_is_shown(g: &Group, engine: EngineCase, version: &str) {
    let master = g.wait_healthy(Duration::from_secs(30)).await;
    for m in &g.redis {
        assert_eq!(
            engine_of(&m.addr()).await,
            Ok((engine.name.to_string(), version.to_string())),
            "server {}",
            m.addr()
        );
    }
    for s in &g.sentinels {
        let (name, _) = engine_of(&s.addr()).await.unwrap();
        assert_eq!(name, engine.name, "sentinel {}", s.addr());
        assert_eq!(
            info_field(&s.addr(), "sentinel", "sentinel_masters").await.as_deref(),
            Ok("1"),
            "sentinel {} must run in Sentinel mode",
            s.addr()
        );
    }
    let status = status_json(g).await;
    let nodes = status["nodes"].as_array().expect("nodes in rzkctl status --json");
    assert_eq!(nodes.len(), 3, "{status}");
    for n in nodes {
        assert_eq!(n["engine"], engine.name, "{n}");
        assert_eq!(n["engine_version"], version, "{n}");
    }
    let (code, table, err) = g.rzkctl(&["status"]).await;
    assert_eq!(code, 0, "{table}{err}");
    assert!(
        table.contains("ENGINE") && table.contains(&format!("{} {version}", engine.name)),
        "{table}"
    );
    // The admin pages of every server answer by their role and name the
    // engine; the metrics carry it.
    for m in &g.redis {
        let is_master = m.addr() == master;
        for (path, code) in [
            ("/health", 200),
            ("/ready", 200),
            ("/master", if is_master { 200 } else { 503 }),
            ("/replica", if is_master { 503 } else { 200 }),
        ] {
            let body = wait_for(
                &format!("{} {path} to answer {code}", m.addr()),
                Duration::from_secs(10),
                || async {
                    match m.admin_get(path).await {
                        Ok((c, body)) if c == code => Ok(body),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(json["engine"], engine.name, "{path}: {body}");
            assert_eq!(json["engine_version"], version, "{path}: {body}");
        }
        let line = format!("rzk_engine_info{{engine=\"{}\",version=\"{version}\"}} 1", engine.name);
        wait_for(
            &format!("{} /metrics to show {line}", m.addr()),
            Duration::from_secs(10),
            || async {
                match m.admin_get("/metrics").await {
                    Ok((200, text)) if text.contains(&line) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    for s in g.sentinels.iter().chain(&g.watchers) {
        let (code, _) = s.admin_get("/health").await.unwrap();
        assert_eq!(code, 200, "{} /health", s.addr());
    }
}

/// A new replica is held at `replica-priority 0` (not promotable, as
/// `rzkctl status` says) through its first full sync, and gets its
/// priority once it holds the data.
async fn unsynced_replica_is_held_at_priority_zero(g: &mut Group) {
    let master = g.wait_healthy(Duration::from_secs(30)).await;
    preload(&master, 20_000, 100).await;
    // Stretch the sync (20 000 keys × 200 µs = 4 s) so it can be watched.
    redis_cmd(&master, None, &["CONFIG", "SET", "rdb-key-save-delay", "200"])
        .await
        .unwrap();
    let i = g.start_redis();
    let replica = g.redis[i].addr();
    let seen = wait_for(
        "the new replica to be seen in its first sync",
        Duration::from_secs(20),
        || async {
            let syncing = info_field(&replica, "replication", "master_sync_in_progress").await?;
            if syncing != "1" {
                return Err(format!("master_sync_in_progress:{syncing}"));
            }
            let priority = match redis_cmd(&replica, None, &["CONFIG", "GET", "replica-priority"]).await? {
                Value::Array(v) => format!("{:?}", v.get(1)),
                other => format!("{other:?}"),
            };
            let status = status_json(g).await;
            let node = status["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["addr"] == replica.as_str()).cloned())
                .ok_or("the replica is not in rzkctl status yet")?;
            Ok((priority, node))
        },
    )
    .await;
    redis_cmd(&master, None, &["CONFIG", "SET", "rdb-key-save-delay", "0"])
        .await
        .unwrap();
    assert!(seen.0.contains("\"0\""), "priority of a syncing replica: {}", seen.0);
    assert_eq!(seen.1["promotable"], false, "{}", seen.1);
    wait_for(
        "the replica to finish its sync and get its priority back",
        Duration::from_secs(30),
        || async {
            match redis_cmd(&replica, None, &["CONFIG", "GET", "replica-priority"]).await? {
                Value::Array(v) if format!("{:?}", v.get(1)).contains("\"100\"") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(dbsize(&replica).await, Ok(20_000), "the replica's data after its sync");
    g.wait_healthy(Duration::from_secs(30)).await;
}

/// A master that neither ZooKeeper nor its Sentinels confirm refuses
/// writes within `FENCE_AFTER_MS` + 1 s, and takes them again once they
/// are back.
async fn fence(g: &Group) {
    let master = g.wait_healthy(Duration::from_secs(30)).await;
    let mut pids = vec![];
    for s in &g.sentinels {
        if s.proc.wait_exit(Duration::ZERO).is_none() {
            pids.push(
                server_field(&s.addr(), "process_id")
                    .await
                    .unwrap()
                    .parse::<i32>()
                    .unwrap(),
            );
        }
    }
    let zk_frozen = zk().paused();
    let sentinels_frozen = Frozen::pids(&pids);
    let cut = Instant::now();
    let refused = try_wait_for(Duration::from_millis(FENCE_MS + 3000), || async {
        match redis_cmd(&master, None, &["SET", "fence", "v"]).await {
            Ok(Value::Okay) => Err("write acknowledged".to_string()),
            other => Ok(format!("{other:?}")),
        }
    })
    .await;
    let fenced_after = cut.elapsed();
    sentinels_frozen.resume();
    zk_frozen.resume();
    let refused = refused.unwrap_or_else(|e| panic!("never fenced in {fenced_after:?} without witnesses: {e}"));
    assert!(refused.contains("NOREPLICAS"), "the refusal a client sees: {refused}");
    assert!(
        fenced_after <= Duration::from_millis(FENCE_MS + 1500),
        "fenced {fenced_after:?} after the witnesses went silent"
    );
    wait_for("writes to be taken again", Duration::from_secs(15), || async {
        match redis_cmd(&master, None, &["SET", "fence", "back"]).await {
            Ok(Value::Okay) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eprintln!("MEASURE fence: refused (NOREPLICAS) {fenced_after:?} after both witnesses froze");
    // Sentinels stopped for over 2 s enter TILT when they wake (30 s in
    // which they act on nothing), and a healthy group needs them.
    g.wait_healthy(Duration::from_secs(60)).await;
}

/// Every server lost at once: a new launcher waits out the grace, takes
/// over with a TAKEOVER warning, and the Sentinels follow it.
async fn takeover(g: &mut Group, engine: EngineCase) {
    let old = g.record().await.unwrap();
    for m in &g.redis {
        m.proc.signal(libc::SIGKILL);
    }
    for m in &g.redis {
        m.proc
            .wait_exit(Duration::from_secs(5))
            .expect("a killed launcher exits");
    }
    let i = g.start_redis();
    let new = g.redis[i].addr();
    wait_for("the new launcher to take over", Duration::from_secs(40), || async {
        match g.record().await {
            Some(r) if r == new && role(&new).await.as_deref() == Ok("master") => Ok(()),
            other => Err(format!("record {other:?} (old {old})")),
        }
    })
    .await;
    assert!(g.redis[i].proc.log().contains("TAKEOVER"), "no takeover warning");
    assert_eq!(engine_of(&new).await.map(|e| e.0), Ok(engine.name.to_string()));
    let healthy = g.wait_healthy(Duration::from_secs(40)).await;
    assert_eq!(healthy, new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_core_scenarios() {
    let _serial = SERIAL.lock().await;
    core_scenarios(REDIS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_core_scenarios() {
    let _serial = SERIAL.lock().await;
    core_scenarios(VALKEY).await;
}

/// A Redis launcher about to become a replica of a Valkey master exits 1
/// with an error naming both engines and versions, before its server
/// starts: no `redis.conf` written, nothing listening, the data untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_server_refuses_to_replicate_a_valkey_master() {
    let _serial = SERIAL.lock().await;
    let (redis_v, valkey_v) = (REDIS.version(), VALKEY.version());
    let mut g = Group::new("refuse");
    g.extra.push(("ENGINE", "valkey".into()));
    g.start_redis();
    let master = wait_for("the Valkey master", Duration::from_secs(30), || async {
        g.record().await.ok_or_else(|| "no record yet".to_string())
    })
    .await;
    g.extra.push(("ENGINE", "redis".into()));
    let t = task();
    let kept = t.dir.join("dump.rdb");
    std::fs::write(&kept, "untouched").unwrap();
    let before: Vec<_> = std::fs::read_dir(&t.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let i = g.start_redis_as(t);
    let r = &g.redis[i];
    let status = r
        .proc
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the Redis launcher did not exit:\n{}", r.proc.log()));
    let log = r.proc.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("REFUSED"), "{log}");
    for named in [format!("valkey {valkey_v}"), format!("redis {redis_v}")] {
        assert!(log.contains(&named), "the refusal must name {named}:\n{log}");
    }
    assert!(!log.contains("redis-server started"), "{log}");
    let after: Vec<_> = std::fs::read_dir(&r.task.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "launcher.log")
        .collect();
    let before: Vec<_> = before.into_iter().filter(|n| n != "launcher.log").collect();
    assert_eq!(after, before, "the refused task's DATA_DIR changed");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "untouched");
    assert!(
        role(&r.addr()).await.is_err(),
        "a server answers on the refused task's port"
    );
    assert_eq!(role(&master).await.as_deref(), Ok("master"));
    let line = log.lines().find(|l| l.contains("REFUSED")).unwrap_or_default();
    eprintln!("MEASURE refusal: exit 1; {line}");
}

/// The safe direction, with Sentinels of both engines: a Valkey replica
/// of a Redis master syncs. The hand-over of the Redis master, with an
/// older Valkey replica and a younger Redis one (a rollback from Valkey
/// under way), goes to the youngest, the Redis replica, and the Valkey
/// replica follows it: the group stays on a Redis master, from which a
/// rollback can still finish. No acknowledged `WAIT 1` write is lost. (A
/// hand-over that preferred Valkey here would strand the rollback: no
/// Redis server could replicate again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_hands_over_to_the_youngest_and_valkey_follows_redis() {
    let _serial = SERIAL.lock().await;
    let (_, valkey_v) = (REDIS.version(), VALKEY.version());
    let mut g = Group::new("mixed");
    g.extra
        .push(("SHUTDOWN_FAILOVER_TIMEOUT_S", HANDOVER_BUDGET_S.to_string()));
    g.start_redis();
    let master = wait_for("the Redis master", Duration::from_secs(30), || async {
        g.record().await.ok_or_else(|| "no record yet".to_string())
    })
    .await;
    preload(&master, 5_000, 100).await;
    // The Valkey replica first, then a Redis replica: the youngest is Redis.
    g.extra.push(("ENGINE", "valkey".into()));
    let v = g.start_redis();
    g.start_sentinel();
    g.start_sentinel();
    g.extra.push(("ENGINE", "redis".into()));
    g.start_sentinel();
    g.start_watcher();
    // Two seconds apart: `uptime_in_seconds` tells them apart (a tie goes
    // to the lower address, the Valkey one).
    tokio::time::sleep(Duration::from_secs(2)).await;
    g.start_redis();
    g.wait_healthy(Duration::from_secs(60)).await;
    let valkey = g.redis[v].addr();
    assert_eq!(engine_of(&valkey).await, Ok(("valkey".to_string(), valkey_v.clone())));
    assert_eq!(dbsize(&valkey).await, Ok(5_000), "the Valkey replica's copy");
    let mut sentinel_engines = vec![];
    for s in &g.sentinels {
        sentinel_engines.push(engine_of(&s.addr()).await.unwrap().0);
    }
    sentinel_engines.sort();
    assert_eq!(sentinel_engines, ["redis", "valkey", "valkey"]);
    let status = status_json(&g).await;
    let engines: Vec<String> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["engine"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(
        engines.iter().filter(|e| *e == "valkey").count(),
        1,
        "rzkctl status --json engines: {engines:?}"
    );

    let writer = g.start_writer("mix", None, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mi = g.master_index().await.unwrap();
    let youngest = g.redis[g.redis.len() - 1].addr();
    g.redis[mi].proc.signal(libc::SIGTERM);
    let status = g.redis[mi]
        .proc
        .wait_exit(Duration::from_secs(HANDOVER_BUDGET_S + 5))
        .expect("the Redis master's launcher did not exit");
    let log = g.redis[mi].proc.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("hand-over done"), "{log}");
    let new = new_master(&g, &master, Duration::from_secs(10)).await;
    assert_eq!(
        new, youngest,
        "the hand-over must give the master to the youngest replica, the Redis one, not to the Valkey replica {valkey}"
    );
    assert_eq!(engine_of(&new).await.map(|e| e.0), Ok("redis".to_string()));
    wait_for(
        "the Valkey replica to follow the new Redis master",
        Duration::from_secs(20),
        || async {
            let master_of = format!(
                "{} {}",
                info_field(&valkey, "replication", "master_host").await?,
                info_field(&valkey, "replication", "master_port").await?
            );
            let link = info_field(&valkey, "replication", "master_link_status").await?;
            if master_of == new && link == "up" {
                Ok(())
            } else {
                Err(format!("follows {master_of}, link {link}"))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ledger = writer.finish().await;
    let missing = missing_keys(&new, None, &ledger.acked).await;
    let preloaded = dbsize(&new).await.unwrap();
    eprintln!(
        "MEASURE mixed hand-over to the youngest (Redis), the Valkey replica following it: {} WAIT 1 writes acknowledged, {} lost; {preloaded} keys on the new master",
        ledger.acked.len(),
        missing.len()
    );
    assert!(
        !ledger.acked.is_empty(),
        "the writer got no acknowledgement: {ledger:?}"
    );
    assert!(
        missing.is_empty(),
        "acknowledged writes lost: {:?}",
        &missing[..missing.len().min(10)]
    );
    assert!(preloaded >= 5_000, "preloaded keys lost: {preloaded} keys");
}
