//! ZooKeeper faults: down at start, back in time or not; and away for three
//! session timeouts while a whole group runs. This binary has its own
//! ZooKeeper (it freezes it) and runs its tests one at a time.

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_zookeeper_at_start_exits_1_after_the_connect_timeout() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("zkdown");
    let closed = task().port; // nothing listens there
    g.extra.push(("ZK_HOSTS", format!("127.0.0.1:{closed}")));
    g.extra.push(("ZK_CONNECT_TIMEOUT_S", "2".into()));
    let t0 = Instant::now();
    let i = g.start_redis();
    let p = &g.redis[i].proc;
    let status = p
        .wait_exit(Duration::from_secs(10))
        .expect("launcher kept trying past its timeout");
    let took = t0.elapsed();
    assert_eq!(status.code(), Some(1), "{}", p.log());
    // It gives up at its deadline: each attempt and each pause between them
    // is cut to the time left (src/zk/mod.rs, connect_until), so 2 s after
    // it started, plus its start and exit; 3 s of margin for a busy machine.
    // (The exit is seen by a 20 ms poll of the process, nothing slower.)
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(2 + 3),
        "gave up after {took:?} with ZK_CONNECT_TIMEOUT_S=2"
    );
    let log = p.log();
    assert!(
        log.contains("could not reach ZooKeeper") && log.contains("ZK_CONNECT_TIMEOUT_S=2"),
        "{log}"
    );
    let attempts = log.matches("ZooKeeper not reachable yet").count();
    assert!(
        (2..=40).contains(&attempts),
        "retries should back off: {attempts} attempts in {took:?}"
    );
    assert!(role(&g.redis[i].addr()).await.is_err(), "no server may run");
    eprintln!("MEASURE unreachable ZooKeeper: exit 1 after {took:?}, {attempts} retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_back_within_the_connect_timeout_lets_the_launcher_proceed() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("zklate");
    g.extra.push(("ZK_CONNECT_TIMEOUT_S", "30".into()));
    let frozen = zk().paused();
    let i = g.start_redis();
    // Shows that something does not happen: ZooKeeper stays away longer
    // than one connect attempt (the session timeout, 4 s, at least 2 s) and
    // its backoff, and the launcher keeps trying.
    wait_for("the launcher to retry", Duration::from_secs(15), || async {
        let log = g.redis[i].proc.log();
        if log.matches("ZooKeeper not reachable yet").count() >= 1 {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
    assert!(
        g.redis[i].proc.is_running(),
        "the launcher gave up too early:\n{}",
        g.redis[i].proc.log()
    );
    frozen.resume();
    let me = g.redis[i].addr();
    wait_for(
        "the launcher to bootstrap once ZooKeeper is back",
        Duration::from_secs(30),
        || async {
            match g.record().await {
                Some(r) if r == me && role(&me).await.as_deref() == Ok("master") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_zookeeper_outage_restarts_nothing_and_everything_comes_back() {
    let _serial = SERIAL.lock().await;
    let session_ms = 2000u64;
    let mut g = Group::new("zkoutage");
    g.extra.push(("ZK_SESSION_TIMEOUT_MS", session_ms.to_string()));
    let g = Group::start_with(g, 3, 3, 1).await;
    let pids = |ms: &[Member]| ms.iter().map(|m| m.addr()).collect::<Vec<_>>();
    let mut server_pids = vec![];
    for a in pids(&g.redis).iter().chain(&pids(&g.sentinels)) {
        server_pids.push((a.clone(), info_field(a, "server", "process_id").await.unwrap()));
    }
    let mut owners_before = g.registration_owners("nodes").await;
    owners_before.extend(g.registration_owners("sentinels").await);
    let launchers: Vec<i32> = g
        .redis
        .iter()
        .chain(&g.sentinels)
        .chain(&g.watchers)
        .map(|m| m.proc.pid())
        .collect();
    let cpu_before: Vec<Duration> = launchers.iter().map(|p| cpu_time(*p)).collect();

    let outage = Duration::from_millis(3 * session_ms);
    let frozen = zk().paused();
    let t0 = Instant::now();
    while t0.elapsed() < outage {
        let m = g.master_index().await;
        assert!(m.is_some(), "the master must keep serving while ZooKeeper is away");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cpu_during: Vec<Duration> = launchers
        .iter()
        .zip(&cpu_before)
        .map(|(p, b)| cpu_time(*p).saturating_sub(*b))
        .collect();
    frozen.resume();
    let resumed = Instant::now();
    let worst = cpu_during.iter().max().copied().unwrap_or_default();
    eprintln!("MEASURE ZooKeeper outage of {outage:?}: launcher CPU during it {cpu_during:?}");
    assert!(
        worst < Duration::from_millis(500),
        "a launcher busy-looped while ZooKeeper was away: {cpu_during:?}"
    );

    // Registrations come back from new sessions; no child was restarted.
    g.wait_healthy(Duration::from_secs(60)).await;
    let mut owners_after = g.registration_owners("nodes").await;
    owners_after.extend(g.registration_owners("sentinels").await);
    assert_eq!(owners_after.len(), 6, "{owners_after:?}");
    // A session can outlive a paused server: a reconnect that reaches it
    // after SIGCONT, before its expirer runs, revives the session (seen
    // once in 6). Registrations of expired sessions must come back from
    // new ones; a revived session keeps its own.
    let renewed = owners_before.iter().filter(|b| !owners_after.contains(b)).count();
    assert!(
        renewed >= 1,
        "the outage expired no session, so nothing was re-registered: before {owners_before:?}, after {owners_after:?}"
    );
    eprintln!("MEASURE {renewed} of 6 registrations came back from new sessions");
    eprintln!(
        "MEASURE registrations back and group healthy {:?} after ZooKeeper resumed",
        resumed.elapsed()
    );
    for (a, pid) in &server_pids {
        assert_eq!(
            &info_field(a, "server", "process_id").await.unwrap(),
            pid,
            "{a} was restarted"
        );
    }
    for m in g.redis.iter().chain(&g.sentinels).chain(&g.watchers) {
        assert!(m.proc.is_running(), "a launcher exited:\n{}", m.proc.log());
    }

    // The watcher resumed: a failover still reaches the record. The
    // Sentinels declare the master down after SENTINEL_DOWN_AFTER_MS and
    // fail over within the failover budget; the watcher then writes the
    // record at once, or at its next reconcile (RECONCILE_S). The record is
    // watched, so its change is seen when it happens.
    let mi = g.master_index().await.unwrap();
    let old = g.redis[mi].addr();
    let mut record = DataWatch::new(&format!("{}/master", g.root)).await;
    let killed = Instant::now();
    g.redis[mi].proc.signal(libc::SIGKILL);
    let budget = failover_budget() + Duration::from_secs(RECONCILE_S);
    let (new, _, at) = match record.until_not(&old, budget).await {
        Ok(x) => x,
        Err(e) => panic!(
            "the record did not follow a failover after the outage: {e}\n{}",
            g.diagnose().await
        ),
    };
    assert_eq!(role(&new).await.as_deref(), Ok("master"), "the record names {new}");
    eprintln!(
        "MEASURE record followed a failover {:?} after the SIGKILL, after the outage",
        at - killed
    );
}
