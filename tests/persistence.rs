//! `PERSISTENCE`: with `none` a task writes nothing to its disk but its
//! generated config; with `aof` a group that lost every Redis task at once
//! comes back from its volumes with every write acknowledged more than
//! 2.5 s before the loss.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::alerts::*;
use common::group::*;
use common::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Files directly under `dir`, except the test's own launcher log.
fn files_in(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "launcher.log")
        .collect()
}

/// `PERSISTENCE=none` (the default): after a bootstrap, writes, a replica
/// that joins a master holding data (a full sync), and a clean stop of the
/// master, every task's `DATA_DIR` holds `redis.conf` and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_none_writes_nothing_but_the_config() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::start("pnone", 2, 0, 0).await;
    let master = g.record().await.unwrap();
    for i in 0..2000 {
        let k = format!("k{i}");
        redis_cmd(&master, None, &["SET", &k, "some value to sync"])
            .await
            .unwrap();
    }
    // A replica joining now gets the data by a full sync.
    g.start_redis();
    g.wait_healthy(Duration::from_secs(30)).await;
    let joined = g.redis[2].addr();
    let n = info_field(&joined, "keyspace", "db0").await.unwrap_or_default();
    assert!(n.starts_with("keys=2000"), "{joined} synced {n:?}");
    // A master stopped cleanly would save on shutdown if snapshots were on.
    let mi = g.master_index().await.unwrap();
    g.redis[mi].proc.signal(libc::SIGTERM);
    assert!(
        g.redis[mi].proc.wait_exit(Duration::from_secs(30)).is_some(),
        "the master did not stop"
    );
    let mut seen = vec![];
    for m in &g.redis {
        let files = files_in(&m.task.dir);
        assert_eq!(
            files,
            BTreeSet::from(["redis.conf".to_string()]),
            "{}: PERSISTENCE=none wrote to {}",
            m.addr(),
            m.task.dir.display()
        );
        seen.push(files.len());
    }
    eprintln!("MEASURE files per DATA_DIR with PERSISTENCE=none: {seen:?}");
}

/// `PERSISTENCE=aof`: keys are acknowledged, then every Redis task is
/// SIGKILLed at once and restarted on its `DATA_DIR` with a new port. The
/// master that takes over has every key acknowledged more than 2.5 s before
/// the loss, the others replicate it, and the record and the Sentinel name
/// it. (With `appendfsync everysec` Redis writes its AOF buffer to the file
/// at once, unless a background fsync is still running: then it holds the
/// buffer back for up to 2 s, and a SIGKILL loses it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_aof_survives_losing_every_task() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("paof");
    g.extra.push(("PERSISTENCE", "aof".into()));
    g.extra.push(("SENTINEL_QUORUM", "1".into()));
    let mut g = Group::start_with(g, 3, 1, 0).await;
    let master = g.record().await.unwrap();

    // Preload, then keep writing up to the loss, noting when each write
    // was acknowledged.
    let mut acked: Vec<(String, Instant)> = vec![];
    for i in 0..3000 {
        let k = format!("pre{i}");
        redis_cmd(&master, None, &["SET", &k, "v"]).await.unwrap();
        acked.push((k, Instant::now()));
    }
    let preload_done = Instant::now();
    let mut i = 0;
    while preload_done.elapsed() < Duration::from_millis(3500) {
        let k = format!("late{i}");
        if redis_cmd(&master, None, &["SET", &k, "v"]).await.is_ok() {
            acked.push((k, Instant::now()));
        }
        i += 1;
    }
    let old: Vec<Task> = g.redis.iter().map(|m| m.task.clone()).collect();
    for m in &g.redis {
        m.proc.signal(libc::SIGKILL);
    }
    let loss = Instant::now();
    for m in &g.redis {
        assert!(
            m.proc.wait_exit(Duration::from_secs(5)).is_some(),
            "a launcher outlived SIGKILL"
        );
    }
    wait_for(
        "every server gone with its launcher",
        Duration::from_secs(10),
        || async {
            let mut up = vec![];
            for t in &old {
                if redis_cmd(&t.addr(), None, &["PING"]).await.is_ok() {
                    up.push(t.addr());
                }
            }
            if up.is_empty() {
                Ok(())
            } else {
                Err(format!("still answering: {up:?}"))
            }
        },
    )
    .await;
    let must_have: Vec<String> = acked
        .iter()
        .filter(|(_, at)| loss.duration_since(*at) > Duration::from_millis(2500))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(must_have.len() >= 3000, "only {} keys old enough", must_have.len());

    // Marathon restarts the tasks on their volumes, on new ports.
    for t in &old {
        let new = Task {
            dir: t.dir.clone(),
            ..task()
        };
        g.start_redis_as(new);
    }
    let restarted = Instant::now();
    let new_master = g.wait_healthy(Duration::from_secs(60)).await;
    let took = restarted.elapsed();
    assert!(
        !old.iter().any(|t| t.addr() == new_master),
        "the record names an old address: {new_master}"
    );
    let missing = missing_keys(&new_master, None, &must_have).await;
    assert!(
        missing.is_empty(),
        "{} of {} keys acknowledged more than 2.5 s before the loss are gone from {new_master}, e.g. {:?}",
        missing.len(),
        must_have.len(),
        &missing[..missing.len().min(5)]
    );
    let size = |addr: String| async move { redis_cmd(&addr, None, &["DBSIZE"]).await };
    let want = size(new_master.clone()).await.unwrap();
    for m in g.live_redis() {
        let addr = m.addr();
        wait_for(
            &format!("{addr} to hold the master's keys"),
            Duration::from_secs(20),
            || {
                let (addr, want) = (addr.clone(), want.clone());
                async move {
                    let got = size(addr).await?;
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!("DBSIZE {got:?}, master {want:?}"))
                    }
                }
            },
        )
        .await;
    }
    eprintln!(
        "MEASURE aof total loss: {} keys acknowledged, {} older than 1 s all kept; group healthy {:.1} s after the restart",
        acked.len(),
        must_have.len(),
        took.as_secs_f64()
    );
}

/// A task comes back on its old `DATA_DIR` after writes that never reached
/// a replica: its only replica was stopped (SIGSTOP) while the master took
/// 24 MB of acknowledged writes, more than the kernel buffers between
/// them hold, and the master's task was then SIGKILLed; the Sentinels
/// promoted the replica without them. Restarted, the old master's
/// launcher finds its replication mark past what the new master has of
/// that history, keeps its data files aside before the full sync replaces
/// them, logs both offsets, registers under `<root>/diverged` (shown by
/// `rzkctl status`), and the group is healthy. A throw-away server on the
/// kept copy still has the diverged writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_keeps_the_writes_no_replica_had() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("pdiverged");
    g.admin = true;
    g.extra.push(("PERSISTENCE", "aof".into()));
    // Long enough that the replica, stopped for a few seconds, is not
    // judged down and can be promoted.
    g.extra.push(("SENTINEL_DOWN_AFTER_MS", "8000".into()));
    let mut g = Group::start_with(g, 2, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let mi = g.master_index().await.unwrap();
    let ri = 1 - mi;
    let replica = g.redis[ri].addr();
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    wait_sentinels_know(
        &sentinels,
        std::slice::from_ref(&replica),
        None,
        Duration::from_secs(30),
    )
    .await;
    // The healthy group's metrics, for docs/alerts.yml below.
    wait_metric(&g.redis[ri], "rzk_promotable", |v| v == 1.0, Duration::from_secs(20)).await;
    for s in &g.sentinels {
        wait_metric(s, "rzk_record_matches", |v| v == 1.0, Duration::from_secs(20)).await;
    }
    let healthy = scrape(
        &g.redis
            .iter()
            .chain(&g.sentinels)
            .chain(&g.watchers)
            .collect::<Vec<_>>(),
    )
    .await;
    for i in 0..100 {
        redis_cmd(&master, None, &["SET", &format!("shared:{i}"), "v"])
            .await
            .unwrap();
    }
    // Every acknowledged write on disk at once.
    redis_cmd(&master, None, &["CONFIG", "SET", "appendfsync", "always"])
        .await
        .unwrap();
    let replica_pid = server_pid(&replica).await;
    let thaw = Thaw {
        pids: vec![replica_pid],
        zk: false,
    };
    signal_pid(replica_pid, libc::SIGSTOP);
    let value = "d".repeat(1 << 20);
    for i in 0..24 {
        let k = format!("diverged:{i}");
        assert_eq!(
            redis_cmd(&master, None, &["SET", &k, &value]).await,
            Ok(redis::Value::Okay),
            "write {k}"
        );
    }
    let offset: i64 = info_field(&master, "replication", "master_repl_offset")
        .await
        .unwrap()
        .parse()
        .unwrap();
    // The launcher's mark has caught up with the master's offset.
    let dir = g.redis[mi].task.dir.clone();
    wait_for(
        "the launcher to mark the master's offset",
        Duration::from_secs(5),
        || async {
            let text = std::fs::read_to_string(dir.join(".rzk-repl")).map_err(|e| e.to_string())?;
            let marked: i64 = text
                .split_whitespace()
                .nth(1)
                .and_then(|o| o.parse().ok())
                .ok_or_else(|| format!("mark {text:?}"))?;
            if marked >= offset {
                Ok(())
            } else {
                Err(format!("marked {marked}, master at {offset}"))
            }
        },
    )
    .await;
    g.redis[mi].proc.signal(libc::SIGKILL);
    assert!(g.redis[mi].proc.wait_exit(Duration::from_secs(5)).is_some());
    drop(thaw);
    let new = wait_for(
        "the Sentinels to promote the replica",
        Duration::from_secs(40),
        || async {
            match g.record().await {
                Some(r) if r == replica && role(&r).await.as_deref() == Ok("master") => Ok(r),
                other => Err(format!("record {other:?}")),
            }
        },
    )
    .await;
    let missing = missing_keys(
        &new,
        None,
        &(0..24).map(|i| format!("diverged:{i}")).collect::<Vec<_>>(),
    )
    .await;
    assert!(
        !missing.is_empty(),
        "the promoted replica had every write: nothing diverged, the test proves nothing"
    );

    // Marathon restarts the old master's task on its volume, on a new port.
    let old = g.redis[mi].task.clone();
    let i = g.start_redis_as(Task {
        dir: old.dir.clone(),
        ..task()
    });
    g.wait_healthy(Duration::from_secs(60)).await;
    let log = g.redis[i].proc.log();
    let line = log
        .lines()
        .find(|l| l.contains("DIVERGED"))
        .unwrap_or_else(|| panic!("no DIVERGED line:\n{log}"));
    assert!(
        line.contains("old_offset=") && line.contains("master_offset=") && line.contains("Diverged"),
        "the offsets are not logged: {line}"
    );
    eprintln!(
        "MEASURE restart on the old volume after {} lost writes: {line}",
        missing.len()
    );
    // docs/alerts.yml: RzkDivergedCopyKept fires on the group's metrics.
    wait_metric(&g.redis[i], "rzk_diverged_copy", |v| v == 1.0, Duration::from_secs(10)).await;
    let live: Vec<&Member> = g.live_redis().chain(&g.sentinels).chain(&g.watchers).collect();
    let case = Case {
        name: "diverged copy kept",
        phase: scrape(&live).await,
        fires: vec!["RzkDivergedCopyKept"],
        quiet: vec!["RzkNoMaster", "RzkTwoMasters"],
    };
    promtool_test_rules(&healthy, &[case]);
    let kept = std::fs::read_dir(old.dir.join(".rzk-diverged"))
        .unwrap_or_else(|e| panic!("no kept copy: {e}"))
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // rzkctl status names it; the group is not degraded by it.
    let out = std::process::Command::new(RZKCTL)
        .args(["status"])
        .env_clear()
        .env("ZK_HOSTS", zk().connect_string())
        .env("ZK_ROOT", &g.root)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    let restarted = g.redis[i].addr();
    assert!(
        status.contains(&format!("note: {restarted} keeps a copy")),
        "rzkctl status does not show the kept copy:\n{status}"
    );
    // The kept copy, on a throw-away server (on a copy of it, since the
    // server appends to what it loads), still has the diverged writes.
    let scratch = task();
    let copy = scratch.dir.join("inspect");
    let cp = std::process::Command::new("cp")
        .args(["-a", kept[0].to_str().unwrap(), copy.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(cp.success());
    let port = scratch.port.to_string();
    let _inspect = Proc::spawn(
        "redis-server",
        &[
            "--port",
            &port,
            "--bind",
            &scratch.ip,
            "--save",
            "",
            "--appendonly",
            "yes",
            "--dir",
            copy.to_str().unwrap(),
        ],
        &[],
        scratch.dir.join("inspect.log"),
    );
    let at = scratch.addr();
    wait_for(
        "the throw-away server to load the kept copy",
        Duration::from_secs(20),
        || async {
            match redis_cmd(&at, None, &["DBSIZE"]).await {
                Ok(redis::Value::Int(n)) => Ok(n),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let still_missing = missing_keys(&at, None, &missing).await;
    assert!(
        still_missing.is_empty(),
        "the kept copy lacks {} of the {} diverged writes",
        still_missing.len(),
        missing.len()
    );
}

/// The other side of the same rule: restarts that lose nothing keep
/// nothing and say nothing alarming (`PERSISTENCE=aof`). A replica's task
/// stopped under writes and restarted on its `DATA_DIR`, then the master's
/// task stopped (the SIGTERM hand-over) and restarted on its own: each
/// launcher logs that its old data holds nothing the master lacks, no
/// `DIVERGED`, no kept copy, no `<root>/diverged` registration, and every
/// acknowledged write is on the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restarts_on_old_data_keep_nothing() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("pclean");
    g.extra.push(("PERSISTENCE", "aof".into()));
    let mut g = Group::start_with(g, 2, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let sentinels: Vec<String> = g.sentinels.iter().map(Member::addr).collect();
    let writer = g.start_writer("pclean", None, 1);

    // A replica's task, stopped and restarted on its volume.
    let ri = g.redis.iter().position(|m| m.addr() != master).unwrap();
    wait_sentinels_know(&sentinels, &[g.redis[ri].addr()], None, Duration::from_secs(30)).await;
    g.redis[ri].proc.signal(libc::SIGTERM);
    assert!(g.redis[ri].proc.wait_exit(Duration::from_secs(30)).is_some());
    let old = g.redis[ri].task.clone();
    let r2 = g.start_redis_as(Task {
        dir: old.dir.clone(),
        ..task()
    });
    g.wait_healthy(Duration::from_secs(60)).await;

    // The master's task: the hand-over, then a restart on its volume.
    let mi = g.master_index().await.unwrap();
    wait_sentinels_know(&sentinels, &[g.redis[r2].addr()], None, Duration::from_secs(30)).await;
    g.redis[mi].proc.signal(libc::SIGTERM);
    let status = g.redis[mi]
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("the hand-over ends");
    assert_eq!(status.code(), Some(0), "{}", g.redis[mi].proc.log());
    assert!(
        g.redis[mi].proc.log().contains("hand-over done"),
        "{}",
        g.redis[mi].proc.log()
    );
    let old = g.redis[mi].task.clone();
    let m2 = g.start_redis_as(Task {
        dir: old.dir.clone(),
        ..task()
    });
    let master = g.wait_healthy(Duration::from_secs(60)).await;
    let ledger = writer.finish().await;
    let lost = missing_keys(&master, None, &ledger.acked).await;
    for i in [r2, m2] {
        let log = g.redis[i].proc.log();
        assert!(
            log.contains("nothing the master lacks") && !log.contains("DIVERGED"),
            "{}: a restart that lost nothing should keep nothing:\n{log}",
            g.redis[i].addr()
        );
        assert!(
            !g.redis[i].task.dir.join(".rzk-diverged").exists(),
            "{}: a kept copy after a clean restart",
            g.redis[i].addr()
        );
    }
    let c = zk_client().await;
    let registered = c
        .list_children(&format!("{}/diverged", g.root))
        .await
        .expect("<root>/diverged exists");
    assert!(registered.is_empty(), "diverged registrations: {registered:?}");
    eprintln!(
        "MEASURE clean restarts on old AOF data (a replica, then the master after its hand-over): {} acknowledged, {} lost, no copy kept",
        ledger.acked.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Two bare servers: `b` a replica of `a`, in step with it, then promoted
/// (`REPLICAOF NO ONE`), as a Sentinel would while `a` still runs.
async fn promoted_pair() -> (Task, Proc, Task, Proc) {
    let (ta, tb) = (task(), task());
    let (pa, pb) = (plain_redis_server(&ta), plain_redis_server(&tb));
    for t in [&ta, &tb] {
        wait_for("a bare server answers", Duration::from_secs(10), || async {
            redis_cmd(&t.addr(), None, &["PING"]).await.map(|_| ())
        })
        .await;
    }
    redis_cmd(&ta.addr(), None, &["SET", "before", "1"]).await.unwrap();
    // No 5 s wait for more replicas before the sync.
    redis_cmd(&ta.addr(), None, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"])
        .await
        .unwrap();
    promote_by_hand(&ta, &tb).await;
    (ta, pa, tb, pb)
}

/// The executor's demotion of its own server, as the guard, the freeze and
/// the hand-over use it.
async fn demote(own: &Task, to: &Task) {
    demote_with(&redis_zk::probe::Probe::new(None, Duration::from_secs(1)), own, to).await;
}

/// A master demoted while it runs (the guard after a Sentinel's false
/// positive, the end of a freeze, a healed partition): the writes it
/// acknowledged past its new master's copy of its history are read from
/// its backlog and kept, replayable, beside the data; the Sentinels' hello
/// messages and the pings are not kept; the demoted server follows the new
/// master and takes writes no more. Nothing is kept when it holds nothing
/// of its own, and its data files are kept whole when the backlog no
/// longer reaches back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_demoted_live_keeps_what_only_it_has() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    // Writes past the promotion: two databases, a transaction, and noise.
    let (ta, _pa, tb, _pb) = promoted_pair().await;
    redis_pipe(
        &ta.addr(),
        None,
        &[
            &["SET", "k1", "v1"],
            &["PUBLISH", "__sentinel__:hello", "noise"],
            &["SELECT", "1"],
            &["SET", "k2", "v2"],
            &["MULTI"],
            &["INCR", "n"],
            &["INCR", "n"],
            &["EXEC"],
        ],
    )
    .await
    .unwrap();
    demote(&ta, &tb).await;
    assert_eq!(role(&ta.addr()).await.unwrap(), "slave");
    let stream = kept_writes(&ta);
    let text = String::from_utf8_lossy(&stream);
    assert!(
        !text.contains("PUBLISH") && !text.contains("noise") && !text.contains("PING"),
        "{text}"
    );
    // Replayed onto the new master, as an operator would (redis-cli --pipe):
    // every write comes back, in its database.
    let mut conn = tokio::net::TcpStream::connect((tb.ip.as_str(), tb.port)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut conn, &stream).await.unwrap();
    wait_for(
        "the replayed writes on the new master",
        Duration::from_secs(10),
        || async {
            let r = redis_pipe(
                &tb.addr(),
                None,
                &[&["GET", "k1"], &["SELECT", "1"], &["GET", "k2"], &["GET", "n"]],
            )
            .await?;
            let got: Vec<Option<String>> = r.iter().map(value_text).collect();
            (got == [
                Some("v1".into()),
                Some("OK".into()),
                Some("v2".into()),
                Some("2".into()),
            ])
            .then_some(())
            .ok_or(format!("{got:?}"))
        },
    )
    .await;

    // Only noise past the promotion: nothing kept.
    let (tc, _pc, td, _pd) = promoted_pair().await;
    redis_cmd(&tc.addr(), None, &["PUBLISH", "__sentinel__:hello", "noise"])
        .await
        .unwrap();
    demote(&tc, &td).await;
    assert_eq!(role(&tc.addr()).await.unwrap(), "slave");
    assert!(
        !tc.dir.join(".rzk-diverged").exists(),
        "a copy kept of pings and hellos"
    );

    // Past the backlog (16 kB): the AOF is kept whole.
    let (te, _pe, tf, _pf) = promoted_pair().await;
    for args in [
        &["CONFIG", "SET", "repl-backlog-size", "16384"][..],
        &["CONFIG", "SET", "appendonly", "yes"],
    ] {
        redis_cmd(&te.addr(), None, args).await.unwrap();
    }
    let big = "x".repeat(40_000);
    redis_cmd(&te.addr(), None, &["SET", "big", &big]).await.unwrap();
    wait_for("the AOF written", Duration::from_secs(20), || async {
        let r = info_field(&te.addr(), "persistence", "aof_rewrite_in_progress").await?;
        let dir = te.dir.join("appendonlydir");
        (r == "0" && dir.is_dir())
            .then_some(())
            .ok_or(format!("rewrite in progress {r}, {}", dir.display()))
    })
    .await;
    demote(&te, &tf).await;
    let kept = std::fs::read_dir(te.dir.join(".rzk-diverged"))
        .expect("a kept copy")
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].join("appendonlydir").read_dir().unwrap().next().is_some(),
        "{kept:?}: no AOF kept"
    );
    assert!(!kept[0].join("writes.resp").exists());
}
