//! `rzk-redis` against real ZooKeeper and real redis-server processes:
//! bootstrap races, joining, takeover, signals, garbage records, bad config.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use zookeeper_client::Client;

const RZK_REDIS: &str = env!("CARGO_BIN_EXE_rzk-redis");

/// The launchers' ZooKeeper session timeout (`ZK_SESSION_TIMEOUT_MS`).
const SESSION: Duration = Duration::from_millis(4000);

/// How soon after a SIGTERM a stopping launcher's znodes must be gone to
/// show that it removed them itself. Left to its session, a znode goes only
/// when the server expires the session: a session timeout after the last
/// ping the server heard, and the launcher pings every 3/8 of its
/// connection timeout, which is 2/5 of the session (src/zk/mod.rs): 0.6 s
/// here. So not before 4 s - 0.6 s = 3.4 s after the SIGTERM. Half the
/// session timeout, 2 s, tells the two apart and leaves the stop itself
/// (about 40 ms measured) a wide margin.
const REMOVED_BY_ITSELF: Duration = Duration::from_millis(2000);

/// The scenarios whose timing is the product's (bootstrap races, grace
/// periods, a takeover, how soon a stopping launcher's znodes go) take
/// turns: libtest runs two tests of a binary at once, and a second group
/// starting beside them would measure the machine. The tests that only
/// check what ends up true (join, garbage records, bad configuration, the
/// chroot) run beside them.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One simulated Marathon task running `rzk-redis`.
struct Launcher {
    task: Task,
    proc: Proc,
}

fn launcher_env(task: &Task, root: &str, extra: &[(&str, String)]) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = vec![
        ("ZK_HOSTS", zk().connect_string()),
        ("ZK_ROOT", root.to_string()),
        ("BIND_IP", task.ip.clone()),
        ("PORT0", task.port.to_string()),
        ("DATA_DIR", task.dir.display().to_string()),
        ("ZK_SESSION_TIMEOUT_MS", SESSION.as_millis().to_string()),
        ("RUST_LOG", "info".into()),
    ];
    for (k, v) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        env.retain(|(e, _)| *e != k);
        env.push((k, v.clone()));
    }
    env
}

fn start(root: &str, extra: &[(&str, String)]) -> Launcher {
    let task = task();
    start_on(task, root, extra)
}

fn start_on(task: Task, root: &str, extra: &[(&str, String)]) -> Launcher {
    let env = launcher_env(&task, root, extra);
    let env_ref: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
    // No RDB snapshots: tests do not need them and they cost disk time.
    let proc = Proc::spawn(RZK_REDIS, &["--save", ""], &env_ref, task.dir.join("launcher.log"));
    Launcher { task, proc }
}

async fn record(c: &Client, root: &str) -> Option<String> {
    zk_get(c, &format!("{root}/master"))
        .await
        .map(|(d, _)| String::from_utf8_lossy(&d).into_owned())
}

async fn node_datas(c: &Client, root: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for child in zk_children(c, &format!("{root}/nodes")).await {
        if let Some((d, stat)) = zk_get(c, &format!("{root}/nodes/{child}")).await {
            assert_ne!(stat.ephemeral_owner, 0, "{root}/nodes/{child} must be ephemeral");
            out.insert(String::from_utf8_lossy(&d).into_owned());
        }
    }
    out
}

/// The group is converged: exactly one master, every other server a replica
/// of it with the link up, the record naming it, and every node registered.
async fn converged(c: &Client, root: &str, ls: &[&Launcher]) -> Result<String, String> {
    let mut masters = vec![];
    for l in ls {
        if role(&l.task.addr()).await.as_deref() == Ok("master") {
            masters.push(l.task.addr());
        }
    }
    let [master] = masters.as_slice() else {
        return Err(format!("masters: {masters:?}"));
    };
    for l in ls.iter().filter(|l| l.task.addr() != *master) {
        let link = info_field(&l.task.addr(), "replication", "master_link_status").await?;
        let host = info_field(&l.task.addr(), "replication", "master_host").await?;
        let port = info_field(&l.task.addr(), "replication", "master_port").await?;
        if link != "up" || format!("{host} {port}") != *master {
            return Err(format!(
                "{}: link {link} to {host} {port}, master is {master}",
                l.task.addr()
            ));
        }
    }
    let rec = record(c, root).await;
    if rec.as_deref() != Some(master.as_str()) {
        return Err(format!("record {rec:?} != master {master}"));
    }
    let want: BTreeSet<String> = ls.iter().map(|l| l.task.addr()).collect();
    let got = node_datas(c, root).await;
    if got != want {
        return Err(format!("nodes {got:?} != {want:?}"));
    }
    Ok(master.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_launchers_at_once_give_exactly_one_master() {
    let _serial = SERIAL.lock().await;
    let zc = zk_client().await;
    for round in 1..=3 {
        let root = unique_root("five");
        let tasks: Vec<Task> = (0..5).map(|_| task()).collect();
        let addrs: Vec<String> = tasks.iter().map(Task::addr).collect();
        let t0 = Instant::now();
        let ls: Vec<Launcher> = tasks.into_iter().map(|t| start_on(t, &root, &[])).collect();
        let refs: Vec<&Launcher> = ls.iter().collect();
        // Sample every server's ROLE until convergence: two masters seen at
        // once fail the test. Sampling can miss a short-lived second
        // master, so the launchers' own logs are checked afterwards too.
        let deadline = t0 + Duration::from_secs(30);
        let mut samples = 0;
        let mut max_gap = Duration::ZERO;
        let mut prev: Option<Instant> = None;
        let master = loop {
            let now = Instant::now();
            if let Some(p) = prev {
                max_gap = max_gap.max(now - p);
            }
            prev = Some(now);
            let mut probes = tokio::task::JoinSet::new();
            for a in addrs.clone() {
                probes.spawn(async move { (role(&a).await, a) });
            }
            let mut masters = vec![];
            while let Some(Ok((r, a))) = probes.join_next().await {
                if r.as_deref() == Ok("master") {
                    masters.push(a);
                }
            }
            samples += 1;
            assert!(
                masters.len() <= 1,
                "round {round}: two masters at once after {:?}: {masters:?}",
                t0.elapsed()
            );
            if masters.len() == 1
                && let Ok(m) = converged(&zc, &root, &refs).await
            {
                break m;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no convergence in 30 s; last: {:?}",
                converged(&zc, &root, &refs).await
            );
            tokio::time::sleep(Duration::from_millis(40).saturating_sub(now.elapsed())).await;
        };
        let took = t0.elapsed();
        // Exactly one launcher ever started its server as master (a server
        // is started as master or as a replica once, and the launchers
        // never promote one without a takeover, which has a grace period
        // of 30 s here): the rest started as replicas of the winner.
        let started_as_master: Vec<String> = ls
            .iter()
            .filter(|l| {
                l.proc
                    .log()
                    .lines()
                    .any(|line| line.contains("redis-server started") && line.contains("role=\"master\""))
            })
            .map(|l| l.task.addr())
            .collect();
        assert_eq!(
            started_as_master,
            vec![master.clone()],
            "round {round}: launchers that started a master"
        );
        for l in &ls {
            let log = l.proc.log();
            assert!(
                log.contains("redis-server started"),
                "round {round}: {} never started its server:\n{log}",
                l.task.addr()
            );
        }
        eprintln!(
            "MEASURE bootstrap round {round}: converged in {took:?} ({samples} samples, max gap {max_gap:?}); master {master}"
        );
        for l in &ls {
            assert!(l.proc.is_running(), "launcher {} died: {}", l.task.addr(), l.proc.log());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_launcher_joins_the_existing_master() {
    let zc = zk_client().await;
    let root = unique_root("join");
    let a = start(&root, &[]);
    let b = start(&root, &[]);
    let master = wait_for("two-node group", Duration::from_secs(30), || async {
        converged(&zc, &root, &[&a, &b]).await
    })
    .await;
    let c = start(&root, &[]);
    let m2 = wait_for("third node joined", Duration::from_secs(30), || async {
        converged(&zc, &root, &[&a, &b, &c]).await
    })
    .await;
    assert_eq!(master, m2, "the master must not change when a node joins");
    assert_eq!(role(&c.task.addr()).await.unwrap(), "slave");
    for l in [&a, &b, &c] {
        let status = std::fs::read_to_string(format!("/proc/{}/status", l.proc.pid())).unwrap();
        let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: ?");
        eprintln!(
            "MEASURE launcher {} (debug build) while supervising: {rss}",
            l.task.addr()
        );
    }
}

/// Points the record at `dead` and starts a launcher with a takeover grace
/// of `grace` s, then checks that it waits until the grace is nearly over:
/// no server started, and the record untouched. Returns it and its start.
async fn start_waiting_out_the_grace(zc: &Client, root: &str, dead: &Task, grace: u64) -> (Launcher, Instant) {
    zk_set_raw(zc, &format!("{root}/master"), dead.addr().as_bytes()).await;
    let t0 = Instant::now();
    let l = start(root, &[("TAKEOVER_GRACE_S", grace.to_string())]);
    l.proc
        .wait_log("waiting for a failover", Duration::from_secs(grace))
        .await;
    while t0.elapsed() < Duration::from_millis(grace * 1000 - 700) {
        let r = record(zc, root).await;
        assert_eq!(
            r.as_deref(),
            Some(dead.addr().as_str()),
            "the record was rewritten during the grace"
        );
        assert!(
            role(&l.task.addr()).await.is_err(),
            "the server started during the grace"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (l, t0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_record_is_taken_over_only_after_the_grace_period() {
    let _serial = SERIAL.lock().await;
    let root = unique_root("stale");
    let dead = task(); // nothing listens there
    let zc = zk_client().await;
    let grace = 4;
    let (l, t0) = start_waiting_out_the_grace(&zc, &root, &dead, grace).await;
    let me = l.task.addr();
    wait_for("takeover", Duration::from_secs(grace + 10), || async {
        let r = record(&zc, &root).await;
        let role = role(&me).await;
        if r.as_deref() == Some(me.as_str()) && role.as_deref() == Ok("master") {
            Ok(())
        } else {
            Err(format!("record {r:?}, role {role:?}"))
        }
    })
    .await;
    assert!(
        t0.elapsed() >= Duration::from_secs(grace),
        "took over after {:?}, before the {grace}s grace",
        t0.elapsed()
    );
    assert!(
        l.proc.log().contains("TAKEOVER"),
        "no loud takeover warning in the log:\n{}",
        l.proc.log()
    );
    // The history: the takeover from the dead master, once.
    let (data, _) = zc.get_data(&format!("{root}/history")).await.expect("<root>/history");
    let h: serde_json::Value = serde_json::from_slice(&data).unwrap();
    let h = h.as_array().unwrap();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(
        (h[0]["cause"].as_str(), h[0]["old"].as_str(), h[0]["new"].as_str()),
        (Some("takeover"), Some(dead.addr().as_str()), Some(me.as_str())),
        "{h:?}"
    );
}

/// The record names a dead master while a registered server nobody names
/// answers as master: a stale master, say, fenced after a partition and not
/// yet demoted, when the master that replaced it dies. A launcher starting
/// then gives the Sentinels the grace period to fail the recorded master
/// over; it neither follows the stale master nor writes it to the record
/// before that (it used to, at once). With no Sentinel here, it joins it
/// once the grace is over rather than make a second master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_nobody_names_is_not_followed_while_the_record_names_a_dead_one() {
    let _serial = SERIAL.lock().await;
    let root = unique_root("unnamed");
    let zc = zk_client().await;
    let stale = start(&root, &[]);
    let s = stale.task.addr();
    wait_for(
        "the first launcher to become master",
        Duration::from_secs(20),
        || async { converged(&zc, &root, &[&stale]).await },
    )
    .await;
    let dead = task(); // nothing listens there
    let grace = 4;
    let (l, t0) = start_waiting_out_the_grace(&zc, &root, &dead, grace).await;
    let me = l.task.addr();
    wait_for(
        "the launcher to join the only master",
        Duration::from_secs(grace + 10),
        || async {
            let r = record(&zc, &root).await;
            let host = info_field(&me, "replication", "master_port").await;
            if r.as_deref() == Some(s.as_str()) && host.as_deref() == Ok(stale.task.port.to_string().as_str()) {
                Ok(())
            } else {
                Err(format!("record {r:?}, master_port {host:?}"))
            }
        },
    )
    .await;
    assert!(
        t0.elapsed() >= Duration::from_secs(grace),
        "followed the unnamed master after {:?}, before the {grace}s grace",
        t0.elapsed()
    );
}

/// Waits until a takeover promoted `promoted`: the record names it, it
/// answers as master, and `follower` replicates from it with its link up.
async fn wait_promoted(zc: &Client, root: &str, promoted: &Task, follower: &str) {
    let p = promoted.addr();
    wait_for("the replica promoted and followed", Duration::from_secs(30), || async {
        let rec = record(zc, root).await;
        let role_p = role(&p).await;
        let link = info_field(follower, "replication", "master_link_status").await;
        let host = info_field(follower, "replication", "master_host").await;
        if rec.as_deref() == Some(p.as_str())
            && role_p.as_deref() == Ok("master")
            && link.as_deref() == Ok("up")
            && host.as_deref() == Ok(promoted.ip.as_str())
        {
            Ok(())
        } else {
            Err(format!(
                "record {rec:?}, promoted {role_p:?}, follower link {link:?} to {host:?}"
            ))
        }
    })
    .await;
}

/// A double fault after a partition. M1 was promoted out of M0's history,
/// and replica R followed it and holds its writes; then M1 died (the record
/// still names it), while M0, the stale master (fenced, not yet demoted),
/// still answers as master. Both are registered and nobody names M0. Once
/// the grace is over, with no Sentinel, a launcher promotes R: joining M0
/// would resync R from it and drop every write M1 acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_a_superseded_master_is_not_followed() {
    let _serial = SERIAL.lock().await;
    let root = unique_root("superseded");
    let zc = zk_client().await;
    let (t0, t1, tr) = (task(), task(), task());
    let (_m0, m1, _r) = (
        plain_redis_server(&t0),
        plain_redis_server(&t1),
        plain_redis_server(&tr),
    );
    for t in [&t0, &t1, &tr] {
        wait_for("redis-server up", Duration::from_secs(10), || async {
            role(&t.addr()).await
        })
        .await;
    }
    redis_cmd(&tr.addr(), None, &["REPLICAOF", &t0.ip, &t0.port.to_string()])
        .await
        .unwrap();
    for i in 0..100 {
        redis_cmd(&t0.addr(), None, &["SET", &format!("old:{i}"), "x"])
            .await
            .unwrap();
    }
    promote_by_hand(&t0, &t1).await;
    redis_cmd(&tr.addr(), None, &["REPLICAOF", &t1.ip, &t1.port.to_string()])
        .await
        .unwrap();
    let mut newer = vec![];
    for i in 0..100 {
        let k = format!("new:{i}");
        let r = redis_pipe(&t1.addr(), None, &[&["SET", &k, "x"], &["WAIT", "1", "2000"]])
            .await
            .unwrap();
        assert_eq!(r[1], redis::Value::Int(1), "{k} not acknowledged by R");
        newer.push(k);
    }
    let m0_history = info_field(&t0.addr(), "replication", "master_replid").await.unwrap();
    let r_before = info_field(&tr.addr(), "replication", "master_replid2").await.unwrap();
    assert_eq!(r_before, m0_history, "R did not continue M0's history under M1");
    m1.signal(libc::SIGKILL);
    zk_set_raw(&zc, &format!("{root}/master"), t1.addr().as_bytes()).await;
    use zookeeper_client::{Acls, CreateMode};
    zc.mkdir(
        &format!("{root}/nodes"),
        &CreateMode::Persistent.with_acls(Acls::anyone_all()),
    )
    .await
    .unwrap();
    let opts = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    for (name, t) in [("m0", &t0), ("r", &tr)] {
        zc.create(&format!("{root}/nodes/{name}"), t.addr().as_bytes(), &opts)
            .await
            .unwrap();
    }
    let c = start(&root, &[("TAKEOVER_GRACE_S", "2".into())]);
    let (r_addr, c_addr) = (tr.addr(), c.task.addr());
    wait_promoted(&zc, &root, &tr, &c_addr).await;
    for k in &newer {
        for at in [&r_addr, &c_addr] {
            assert_eq!(
                redis_cmd(at, None, &["EXISTS", k]).await,
                Ok(redis::Value::Int(1)),
                "{k}, acknowledged by M1, missing at {at}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_replica_launcher_stops_cleanly() {
    let _serial = SERIAL.lock().await;
    let zc = zk_client().await;
    let root = unique_root("term");
    let m = start(&root, &[]);
    let r = start(&root, &[]);
    wait_for("group", Duration::from_secs(30), || async {
        converged(&zc, &root, &[&m, &r]).await
    })
    .await;
    let server_pid: i32 = info_field(&r.task.addr(), "server", "process_id")
        .await
        .unwrap()
        .parse()
        .unwrap();
    // Its registration, watched: the event says when it went.
    let mut entry = None;
    for child in zk_children(&zc, &format!("{root}/nodes")).await {
        let path = format!("{root}/nodes/{child}");
        if zk_get(&zc, &path)
            .await
            .is_some_and(|(d, _)| d == r.task.addr().as_bytes())
        {
            entry = Some(path);
        }
    }
    let mut entry = DataWatch::new(&entry.expect("the replica's registration")).await;
    let t0 = Instant::now();
    r.proc.signal(libc::SIGTERM);
    let status = r.proc.wait_exit(Duration::from_secs(5)).expect("launcher did not exit");
    let exited = t0.elapsed();
    // Removed by the launcher as it stops, not left to its session's expiry.
    let gone = entry
        .next_change(REMOVED_BY_ITSELF.saturating_sub(t0.elapsed()))
        .await
        .map(|at| at - t0)
        .unwrap_or_else(|e| panic!("the replica's registration outlived its launcher: {e}"));
    assert!(
        entry.last.is_none(),
        "the registration changed instead of going: {:?}",
        entry.last_text()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "launcher status {status:?}; log:\n{}",
        r.proc.log()
    );
    assert!(!pid_alive(server_pid), "redis-server {server_pid} still running");
    assert!(
        r.proc.log().contains("Received SIGTERM"),
        "redis-server did not get SIGTERM:\n{}",
        r.proc.log()
    );
    eprintln!("MEASURE sigterm: node entry gone after {gone:?}, launcher exited 0 after {exited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_to_a_launcher_kills_its_server() {
    let _serial = SERIAL.lock().await;
    let zc = zk_client().await;
    let root = unique_root("kill");
    let m = start(&root, &[]);
    wait_for("master", Duration::from_secs(30), || async {
        converged(&zc, &root, &[&m]).await
    })
    .await;
    let server_pid: i32 = info_field(&m.task.addr(), "server", "process_id")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(pid_alive(server_pid));
    m.proc.signal(libc::SIGKILL);
    let t0 = Instant::now();
    wait_for_sync("orphaned redis-server to die", Duration::from_secs(2), || {
        if pid_alive(server_pid) {
            Err(format!("pid {server_pid} alive"))
        } else {
            Ok(())
        }
    });
    eprintln!(
        "MEASURE sigkill: redis-server gone {:?} after its launcher",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_records_are_logged_and_ignored() {
    let big = vec![0xa5u8; 10 * 1024];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("hello", b"hello".to_vec()),
        ("bad port", b"1.2.3.4 99999".to_vec()),
        ("empty", vec![]),
        ("10 KB", big),
    ];
    let zc = zk_client().await;
    for (name, data) in cases {
        let root = unique_root("garbage");
        let path = format!("{root}/master");
        zk_set_raw(&zc, &path, &data).await;
        let l = start(&root, &[]);
        let me = l.task.addr();
        wait_for(
            &format!("{name}: launcher becomes master over a garbage record"),
            Duration::from_secs(20),
            || async {
                let r = record(&zc, &root).await;
                let role = role(&me).await;
                if r.as_deref() == Some(me.as_str()) && role.as_deref() == Ok("master") {
                    Ok(())
                } else {
                    Err(format!("record {r:?}, role {role:?}"))
                }
            },
        )
        .await;
        let log = l.proc.log();
        assert!(
            log.lines().any(|line| line.contains("ERROR") && line.contains(&path)),
            "{name}: no error naming {path}:\n{log}"
        );
        assert!(l.proc.is_running(), "{name}: launcher crashed:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_exits_2_before_touching_zookeeper() {
    let cases: &[(&str, &str)] = &[
        ("PORT0", "abc"),
        ("PORT0", "70000"),
        ("ZK_HOSTS", ""),
        ("ZK_ROOT", "redis"),
        ("NET_IFACE", "nosuch0"),
        ("BIND_IP", "300.1.1.1"),
        ("ZK_SESSION_TIMEOUT_MS", "fast"),
        ("TAKEOVER_GRACE_S", "-3"),
        ("ANNOUNCE_PORT", "0"),
        ("LOG_FORMAT", "yaml"),
        ("REDIS_SERVER_BIN", "/no/such/redis-server"),
        ("DATA_DIR", "/proc/rzk-cannot-create"),
    ];
    let c = zk_client().await;
    for (var, value) in cases {
        let root = unique_root("badcfg");
        let t = task();
        let mut env = launcher_env(&t, &root, &[(*var, value.to_string())]);
        if *var == "NET_IFACE" {
            // BIND_IP would win over NET_IFACE; leave it out for this case.
            env.retain(|(k, _)| *k != "BIND_IP");
        }
        let env_ref: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
        let t0 = Instant::now();
        let p = Proc::spawn(RZK_REDIS, &[], &env_ref, t.dir.join("launcher.log"));
        let status = p
            .wait_exit(Duration::from_secs(1))
            .unwrap_or_else(|| panic!("{var}={value:?}: still running after 1 s"));
        assert_eq!(
            status.code(),
            Some(2),
            "{var}={value:?}: status {status:?}, log:\n{}",
            p.log()
        );
        let log = p.log();
        assert_eq!(
            log.lines().count(),
            1,
            "{var}={value:?}: expected one line, got:\n{log}"
        );
        assert!(
            log.contains(var) && log.contains(&format!("{value:?}")) && log.contains("expected"),
            "{var}={value:?}: {log}"
        );
        assert!(
            zk_get(&c, &root).await.is_none(),
            "{var}={value:?}: {root} was created in ZooKeeper"
        );
        eprintln!("{var}={value:?} -> exit 2 in {:?}: {}", t0.elapsed(), log.trim());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_before_the_server_runs_exits_143_and_releases_the_lock() {
    let _serial = SERIAL.lock().await;
    let root = unique_root("earlyterm");
    let dead = task();
    let c = zk_client().await;
    zk_set_raw(&c, &format!("{root}/master"), dead.addr().as_bytes()).await;
    // A long grace keeps the launcher waiting under the lock.
    let l = start(&root, &[("TAKEOVER_GRACE_S", "60".into())]);
    l.proc.wait_log("waiting for a failover", Duration::from_secs(10)).await;
    assert_eq!(
        zk_children(&c, &format!("{root}/lock")).await.len(),
        1,
        "the launcher should hold the lock"
    );
    // A second launcher queues behind it; SIGTERM while it waits for the lock.
    let queued = start(&root, &[("TAKEOVER_GRACE_S", "60".into())]);
    wait_for("second contender", Duration::from_secs(10), || async {
        let n = zk_children(&c, &format!("{root}/lock")).await.len();
        if n == 2 { Ok(()) } else { Err(format!("{n} contenders")) }
    })
    .await;
    // A launcher that stops releases its lock node itself, within
    // REMOVED_BY_ITSELF of the SIGTERM (see there). One client polls every
    // 50 ms: polling can only see the release late, never early.
    let sig = Instant::now();
    queued.proc.signal(libc::SIGTERM);
    let status = queued
        .proc
        .wait_exit(REMOVED_BY_ITSELF)
        .unwrap_or_else(|| panic!("the queued launcher still runs {REMOVED_BY_ITSELF:?} after SIGTERM"));
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{}", queued.proc.log());
    wait_for(
        "the queued contender's node to go",
        REMOVED_BY_ITSELF.saturating_sub(sig.elapsed()),
        || async {
            let n = zk_children(&c, &format!("{root}/lock")).await.len();
            if n == 1 { Ok(()) } else { Err(format!("{n} contenders")) }
        },
    )
    .await;
    let queued_released = sig.elapsed();
    let sig = Instant::now();
    l.proc.signal(libc::SIGTERM);
    let status = l
        .proc
        .wait_exit(REMOVED_BY_ITSELF)
        .unwrap_or_else(|| panic!("the launcher still runs {REMOVED_BY_ITSELF:?} after SIGTERM"));
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{}", l.proc.log());
    wait_for(
        "lock released, nothing registered",
        REMOVED_BY_ITSELF.saturating_sub(sig.elapsed()),
        || async {
            let lock = zk_children(&c, &format!("{root}/lock")).await;
            let nodes = zk_children(&c, &format!("{root}/nodes")).await;
            if lock.is_empty() && nodes.is_empty() {
                Ok(())
            } else {
                Err(format!("lock {lock:?}, nodes {nodes:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "MEASURE lock released {queued_released:?} after SIGTERM (queued contender), {:?} (holder)",
        sig.elapsed()
    );
    assert!(role(&l.task.addr()).await.is_err(), "no server may have started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroot_loopback_and_pass_through_arguments() {
    // A ZK_HOSTS chroot that does not exist yet is created.
    let chroot = unique_root("chroot");
    let root = "/redis";
    let t = task();
    let admin = free_port(&["127.0.0.1"]);
    let mut env = launcher_env(
        &t,
        root,
        &[
            ("ZK_HOSTS", format!("{}{chroot}", zk().connect_string())),
            ("ADMIN_PORT", admin.to_string()),
            // The record is changed by hand below: no fence meanwhile.
            ("FENCE_AFTER_MS", "0".into()),
        ],
    );
    env.retain(|(k, _)| *k != "ZK_ROOT");
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
    let p = Proc::spawn(
        RZK_REDIS,
        &["--save", "", "--maxmemory", "12mb"],
        &env,
        t.dir.join("launcher.log"),
    );
    let c = zk_client().await;
    let path = format!("{chroot}{root}/master");
    wait_for("the record inside the chroot", Duration::from_secs(30), || async {
        match zk_get(&c, &path).await {
            Some((d, _)) if d == t.addr().as_bytes() => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", p.log())),
        }
    })
    .await;
    // The admin view reads the record through the watched copy: behind a
    // chroot too, a change made by someone else reaches it, both ways.
    let view_record = || async {
        let (_, body) = http_get("127.0.0.1", admin, "/health").await?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        Ok::<_, String>(v["record"].as_str().unwrap_or("").to_string())
    };
    for want in ["127.0.0.99 1", t.addr().as_str()] {
        zk_set_raw(&c, &path, want.as_bytes()).await;
        wait_for(
            "the admin view to show the record as changed",
            Duration::from_secs(10),
            || async {
                match view_record().await? {
                    r if r == want => Ok(()),
                    r => Err(format!("the view shows {r:?}, the record is {want:?}")),
                }
            },
        )
        .await;
    }
    // Arguments after the binary reach redis-server unchanged.
    let v = redis_cmd(&t.addr(), None, &["CONFIG", "GET", "maxmemory"])
        .await
        .unwrap();
    assert!(
        format!("{v:?}").contains("12582912"),
        "maxmemory not passed through: {v:?}"
    );
    // The server also listens on 127.0.0.1, for Mesos health checks.
    let local = format!("127.0.0.1 {}", t.port);
    assert_eq!(role(&local).await.as_deref(), Ok("master"), "not listening on {local}");
    // A master with no Sentinel registered just forwards SIGTERM.
    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let status = p.wait_exit(Duration::from_secs(5)).expect("launcher exit");
    assert_eq!(status.code(), Some(0), "{}", p.log());
    assert!(p.log().contains("no sentinel registered"), "{}", p.log());
    eprintln!("MEASURE lone master stopped on SIGTERM in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_promotes_a_live_replica_instead_of_starting_empty() {
    let _serial = SERIAL.lock().await;
    let zc = zk_client().await;
    let root = unique_root("promote");
    let first = start(&root, &[]);
    let second = start(&root, &[]);
    let master = wait_for("two-node group", Duration::from_secs(30), || async {
        converged(&zc, &root, &[&first, &second]).await
    })
    .await;
    let (a, b) = if master == first.task.addr() {
        (first, second)
    } else {
        (second, first)
    };
    let mut keys = vec![];
    for i in 0..200 {
        let k = format!("precious:{i}");
        let set: &[&str] = &["SET", &k, "x"];
        let wait: &[&str] = &["WAIT", "1", "1000"];
        let r = redis_pipe(&master, None, &[set, wait]).await.unwrap();
        assert_eq!(r[1], redis::Value::Int(1), "write {k} not replicated");
        keys.push(k);
    }
    // The master's task dies, and there is no Sentinel to promote B.
    a.proc.signal(libc::SIGKILL);
    let c = start(&root, &[("TAKEOVER_GRACE_S", "3".into())]);
    let (b_addr, c_addr) = (b.task.addr(), c.task.addr());
    wait_promoted(&zc, &root, &b.task, &c_addr).await;
    assert!(
        c.proc.log().contains("promoting the most up-to-date live replica"),
        "{}",
        c.proc.log()
    );
    for k in &keys {
        assert_eq!(
            redis_cmd(&b_addr, None, &["EXISTS", k]).await,
            Ok(redis::Value::Int(1)),
            "{k} lost in the takeover"
        );
        assert_eq!(
            redis_cmd(&c_addr, None, &["EXISTS", k]).await,
            Ok(redis::Value::Int(1)),
            "{k} missing on C"
        );
    }
}

/// A replica linked to a server that has itself become a replica (left so
/// when a failover demotes a master before Sentinel learned of all its
/// replicas) is invisible to Sentinel. Its launcher re-points it at the
/// master, and leaves the correctly linked replica alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_chained_behind_another_replica_is_re_pointed_to_the_master() {
    let _serial = SERIAL.lock().await;
    let zc = zk_client().await;
    let root = unique_root("chain");
    let ls = [start(&root, &[]), start(&root, &[]), start(&root, &[])];
    let master = wait_for("three-node group", Duration::from_secs(30), || async {
        converged(&zc, &root, &[&ls[0], &ls[1], &ls[2]]).await
    })
    .await;
    let mut replicas = ls.iter().filter(|l| l.task.addr() != master);
    let (middle, chained) = (replicas.next().unwrap(), replicas.next().unwrap());
    let (ip, port) = (middle.task.ip.clone(), middle.task.port.to_string());
    redis_cmd(&chained.task.addr(), None, &["REPLICAOF", &ip, &port])
        .await
        .unwrap();
    wait_for("the chain to form", Duration::from_secs(10), || async {
        let host = info_field(&chained.task.addr(), "replication", "master_host").await?;
        let link = info_field(&chained.task.addr(), "replication", "master_link_status").await?;
        if host == ip && link == "up" {
            Ok(())
        } else {
            Err(format!("{host} link {link}"))
        }
    })
    .await;
    let t0 = Instant::now();
    wait_for(
        "the chained replica to follow the master again",
        Duration::from_secs(20),
        || async { converged(&zc, &root, &[&ls[0], &ls[1], &ls[2]]).await },
    )
    .await;
    eprintln!("MEASURE chained replica re-pointed after {:?}", t0.elapsed());
    // The launcher must have re-pointed it (it logs after its REPLICAOF).
    chained.proc.wait_log("re-pointed it", Duration::from_secs(5)).await;
    assert!(
        !middle.proc.log().contains("re-pointed it"),
        "the correctly linked replica must be left alone:\n{}",
        middle.proc.log()
    );
}
