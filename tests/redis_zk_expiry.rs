//! ZooKeeper session expiry while `rzk-redis` runs. This binary has its own
//! ZooKeeper because the test freezes it (SIGSTOP), which would disturb any
//! test sharing it.

mod common;

use std::time::{Duration, Instant};

use common::*;

const RZK_REDIS: &str = env!("CARGO_BIN_EXE_rzk-redis");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_leaves_the_server_alone_and_reregisters() {
    let root = unique_root("expiry");
    let t = task();
    let session_ms = 2000u64;
    let env = vec![
        ("ZK_HOSTS", zk().connect_string()),
        ("ZK_ROOT", root.clone()),
        ("BIND_IP", t.ip.clone()),
        ("PORT0", t.port.to_string()),
        ("DATA_DIR", t.dir.display().to_string()),
        ("ZK_SESSION_TIMEOUT_MS", session_ms.to_string()),
    ];
    let l = Proc::spawn(RZK_REDIS, &["--save", ""], &env, t.dir.join("launcher.log"));
    let addr = t.addr();
    let c = zk_client().await;
    let nodes = format!("{root}/nodes");
    let owner_before = wait_for("node registered", Duration::from_secs(30), || async {
        for child in zk_children(&c, &nodes).await {
            if let Some((d, stat)) = zk_get(&c, &format!("{nodes}/{child}")).await
                && d == addr.as_bytes()
            {
                return Ok(stat.ephemeral_owner);
            }
        }
        Err("no node entry yet".to_string())
    })
    .await;
    let pid: i32 = info_field(&addr, "server", "process_id")
        .await
        .unwrap()
        .parse()
        .unwrap();
    drop(c);

    // Freeze ZooKeeper for three session timeouts: every session expires.
    zk().pause();
    let frozen = Instant::now();
    while frozen.elapsed() < Duration::from_millis(3 * session_ms) {
        assert_eq!(
            role(&addr).await.as_deref(),
            Ok("master"),
            "redis must keep serving while ZooKeeper is frozen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    zk().resume();
    let resumed = Instant::now();

    let c = zk_client().await;
    let owner_after = wait_for(
        "node re-registered by a new session",
        Duration::from_secs(30),
        || async {
            for child in zk_children(&c, &nodes).await {
                if let Some((d, stat)) = zk_get(&c, &format!("{nodes}/{child}")).await
                    && d == addr.as_bytes()
                    && stat.ephemeral_owner != owner_before
                {
                    return Ok(stat.ephemeral_owner);
                }
            }
            Err(format!(
                "no entry from a new session under {nodes}; launcher log:\n{}",
                l.log()
            ))
        },
    )
    .await;
    assert_ne!(owner_after, owner_before);
    let pid_after: i32 = info_field(&addr, "server", "process_id")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pid, pid_after, "redis-server was restarted");
    assert!(l.is_running(), "launcher exited:\n{}", l.log());
    assert_eq!(role(&addr).await.as_deref(), Ok("master"));
    eprintln!(
        "MEASURE expiry: re-registered {:?} after ZooKeeper resumed",
        resumed.elapsed()
    );
}
