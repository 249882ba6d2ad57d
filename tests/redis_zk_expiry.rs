//! ZooKeeper session expiry while `rzk-redis` and `rzk-sentinel` run. This
//! binary has its own ZooKeeper because the test freezes it (SIGSTOP), which
//! would disturb any test sharing it.

mod common;

use std::time::{Duration, Instant};

use common::group::*;
use common::*;

/// The ephemeral owner of the registration under `<root>/<dir>` holding `addr`.
async fn owner(root: &str, dir: &str, addr: &str) -> Result<i64, String> {
    let c = zk_client().await;
    let path = format!("{root}/{dir}");
    for child in zk_children(&c, &path).await {
        if let Some((d, stat)) = zk_get(&c, &format!("{path}/{child}")).await
            && d == addr.as_bytes()
        {
            return Ok(stat.ephemeral_owner);
        }
    }
    Err(format!("no entry for {addr} under {path}"))
}

async fn pid_of(addr: &str) -> i32 {
    info_field(addr, "server", "process_id").await.unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_leaves_children_alone_and_reregisters() {
    let session_ms = 2000u64;
    let mut g = Group::new("expiry");
    g.extra.push(("ZK_SESSION_TIMEOUT_MS", session_ms.to_string()));
    g.extra.push(("SENTINEL_QUORUM", "1".into()));
    g.start_redis();
    g.start_sentinel();
    let (redis, sentinel) = (g.redis[0].addr(), g.sentinels[0].addr());
    let root = g.root.clone();
    let node_before = wait_for("node registered", Duration::from_secs(30), || {
        owner(&root, "nodes", &redis)
    })
    .await;
    let sentinel_before = wait_for("sentinel registered", Duration::from_secs(30), || {
        owner(&root, "sentinels", &sentinel)
    })
    .await;
    let (redis_pid, sentinel_pid) = (pid_of(&redis).await, pid_of(&sentinel).await);

    // Freeze ZooKeeper for three session timeouts: every session expires.
    zk().pause();
    let frozen = Instant::now();
    while frozen.elapsed() < Duration::from_millis(3 * session_ms) {
        assert_eq!(
            role(&redis).await.as_deref(),
            Ok("master"),
            "redis must keep serving while ZooKeeper is frozen"
        );
        assert_eq!(role(&sentinel).await.as_deref(), Ok("sentinel"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    zk().resume();
    let resumed = Instant::now();

    for (dir, addr, before) in [
        ("nodes", &redis, node_before),
        ("sentinels", &sentinel, sentinel_before),
    ] {
        let after = wait_for(
            &format!("{dir} entry re-created by a new session"),
            Duration::from_secs(30),
            || async {
                match owner(&root, dir, addr).await {
                    Ok(o) if o != before => Ok(o),
                    other => Err(format!("{other:?} (old session {before})")),
                }
            },
        )
        .await;
        assert_ne!(after, before);
    }
    eprintln!(
        "MEASURE expiry: both registrations back {:?} after ZooKeeper resumed",
        resumed.elapsed()
    );
    assert_eq!(pid_of(&redis).await, redis_pid, "redis-server was restarted");
    assert_eq!(pid_of(&sentinel).await, sentinel_pid, "redis-sentinel was restarted");
    for m in g.redis.iter().chain(&g.sentinels) {
        assert!(m.proc.is_running(), "a launcher exited:\n{}", m.proc.log());
    }
    assert!(
        g.redis[0].proc.log().contains("session ended"),
        "the launcher never saw the expiry"
    );
}
