//! Proves the shared test harness works: real ZooKeeper, real redis-server,
//! process guards that reap on drop.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_starts_and_serves_reads_and_writes() {
    let root = unique_root("smoke");
    assert_ne!(root, unique_root("smoke"), "unique_root must not repeat");

    let c = zk_client().await;
    assert_eq!(zk_get(&c, &root).await, None);

    let node = format!("{root}/a/b");
    zk_set_raw(&c, &node, b"one").await;
    zk_set_raw(&c, &node, b"two").await; // overwrite path
    let (data, _) = zk_get(&c, &node).await.expect("node exists");
    assert_eq!(data, b"two");
    assert_eq!(zk_children(&c, &format!("{root}/a")).await, vec!["b".to_string()]);
    assert!(zk_children(&c, &format!("{root}/missing")).await.is_empty());
    assert!(pid_alive(zk().pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_server_runs_under_a_proc_guard() {
    let t = task();
    let port = t.port.to_string();
    let redis = plain_redis_server(&t);
    let addr = t.addr();
    let role = wait_for("redis to report master", Duration::from_secs(10), || role(&addr)).await;
    assert_eq!(role, "master", "log:\n{}", redis.log());
    assert_eq!(info_field(&addr, "server", "tcp_port").await.unwrap(), port);
    assert!(redis_cmd(&addr, None, &["NO-SUCH-COMMAND"]).await.is_err());
    assert!(redis.is_running());

    let pid = redis.pid();
    drop(redis);
    wait_for_sync("redis-server to be gone", Duration::from_secs(2), || {
        if pid_alive(pid) {
            Err(format!("pid {pid} still alive"))
        } else {
            Ok(())
        }
    });
}
