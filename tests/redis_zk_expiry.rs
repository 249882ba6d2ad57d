//! ZooKeeper session expiry while `rzk-redis` and `rzk-sentinel` run: a
//! real expiry, declared by the server. The launchers reach ZooKeeper
//! through a gate the test shuts; hearing nothing more from their sessions,
//! the server expires them once their timeout has passed (its log says so)
//! and removes their registrations. When the gate opens again the launchers
//! learn that their sessions are gone, open new ones and register again,
//! while their children keep serving throughout (contract 6.2, "Session
//! expiry"; 6.3 step 3).
//!
//! A frozen ZooKeeper (SIGSTOP) is not used for this: a session can outlive
//! a paused server, when a client's reconnect reaches it after SIGCONT
//! before its expirer has run (tests/zk_faults.rs tests that outage).

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

/// The ephemeral owner of the registration under `<root>/<dir>` holding
/// `addr`, `None` when there is none.
async fn owner(c: &zookeeper_client::Client, root: &str, dir: &str, addr: &str) -> Option<i64> {
    let path = format!("{root}/{dir}");
    for child in zk_children(c, &path).await {
        if let Some((d, stat)) = zk_get(c, &format!("{path}/{child}")).await
            && d == addr.as_bytes()
        {
            return Some(stat.ephemeral_owner);
        }
    }
    None
}

async fn pid_of(addr: &str) -> i32 {
    info_field(addr, "server", "process_id").await.unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_leaves_children_alone_and_reregisters() {
    let session = Duration::from_millis(2000);
    let gate = ZkGate::new();
    let mut g = Group::new("expiry");
    g.extra.push(("ZK_HOSTS", gate.connect_string()));
    g.extra.push(("ZK_SESSION_TIMEOUT_MS", session.as_millis().to_string()));
    g.extra.push(("SENTINEL_QUORUM", "1".into()));
    g.start_redis();
    g.start_sentinel();
    let (redis, sentinel) = (g.redis[0].addr(), g.sentinels[0].addr());
    let root = g.root.clone();
    // The test's own client goes to ZooKeeper directly, not through the gate.
    let c = zk_client().await;
    let mut before = vec![];
    for (dir, addr) in [("nodes", &redis), ("sentinels", &sentinel)] {
        let o = wait_for(&format!("{dir} entry of {addr}"), Duration::from_secs(30), || async {
            owner(&c, &root, dir, addr)
                .await
                .ok_or("not registered yet".to_string())
        })
        .await;
        before.push((dir, addr, o));
    }
    let (redis_pid, sentinel_pid) = (pid_of(&redis).await, pid_of(&sentinel).await);

    // Cut the launchers off. The server expires a session at most one tick
    // after its timeout has run out since the last ping it heard; a margin
    // of 2 s for a busy machine.
    gate.close();
    let shut = Instant::now();
    let bound = session + ZK_TICK + Duration::from_secs(2);
    wait_for(
        "the server to expire both launchers' sessions, removing their registrations",
        bound,
        || async {
            // Meanwhile the children serve, whatever ZooKeeper does.
            let r = role(&redis).await?;
            let s = role(&sentinel).await?;
            if r != "master" || s != "sentinel" {
                return Err(format!("ROLE {redis}: {r}, {sentinel}: {s}"));
            }
            let mut left = vec![];
            for (dir, addr, _) in &before {
                if let Some(o) = owner(&c, &root, dir, addr).await {
                    left.push(format!("{dir} {addr} (session {o:#x})"));
                }
            }
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still registered: {left:?}"))
            }
        },
    )
    .await;
    let expired_after = shut.elapsed();
    for (dir, addr, o) in &before {
        assert!(
            zk().declared_expired(*o),
            "the {dir} entry of {addr} went, but ZooKeeper did not log that it expired session {o:#x}:\n{}",
            zk().log_tail()
        );
    }
    gate.open();
    let opened = Instant::now();

    for (dir, addr, old) in &before {
        let new = wait_for(
            &format!("{dir} entry re-created by a new session"),
            Duration::from_secs(30),
            || async {
                match owner(&c, &root, dir, addr).await {
                    Some(o) if o != *old => Ok(o),
                    other => Err(format!("owner {other:?} (the expired session was {old:#x})")),
                }
            },
        )
        .await;
        eprintln!("MEASURE {dir} {addr}: session {old:#x} expired, registered again by {new:#x}");
    }
    eprintln!(
        "MEASURE expiry: sessions expired {expired_after:?} after the cut (timeout {session:?}); both registrations back {:?} after it opened",
        opened.elapsed()
    );
    assert_eq!(pid_of(&redis).await, redis_pid, "redis-server was restarted");
    assert_eq!(pid_of(&sentinel).await, sentinel_pid, "redis-sentinel was restarted");
    for m in g.redis.iter().chain(&g.sentinels) {
        assert!(m.proc.is_running(), "a launcher exited:\n{}", m.proc.log());
        assert!(
            m.proc.log().contains("session ended"),
            "{}: the launcher never saw its session end:\n{}",
            m.addr(),
            m.proc.log()
        );
    }
}
