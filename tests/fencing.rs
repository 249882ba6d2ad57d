//! The executor's fence: an action decided on a snapshot is dropped when
//! the ZooKeeper session that observed it is gone by the time it would act,
//! even though a new session (as the session keeper opens after an expiry)
//! could perform it. A real ZooKeeper and a real redis-server; the session
//! is closed and its end confirmed by ZooKeeper removing its ephemeral node.

mod common;

use std::time::Duration;

use common::*;
use redis_zk::act::{ActError, Action, Executor, Observed};
use redis_zk::config::WatcherConfig;
use redis_zk::model::{Endpoint, Record};
use redis_zk::observe::{observe, session_mark};
use redis_zk::policy::reconcile::RecordWrite;
use redis_zk::probe::Probe;
use redis_zk::snapshot::Scope;
use redis_zk::zk::Zk;

fn zk_settings(root: &str) -> redis_zk::zk::ZkConfig {
    let vars = [
        ("ZK_HOSTS".to_string(), zk().connect_string()),
        ("ZK_ROOT".to_string(), root.to_string()),
        ("ZK_SESSION_TIMEOUT_MS".to_string(), "4000".to_string()),
    ];
    WatcherConfig::from_vars(&vars).unwrap().common.zk
}

/// Ends `zk`'s session by dropping its last handle (the client then closes
/// it), and waits until ZooKeeper has removed an ephemeral node the session
/// owned: only then is the session certainly gone.
async fn end_session(zk: Zk, root: &str) {
    let witness = format!("{root}/witness");
    zk.create_ephemeral(&witness, b"x")
        .await
        .expect("create the witness node");
    drop(zk);
    let c = zk_client().await;
    wait_for(
        "the session's ephemeral node to go",
        Duration::from_secs(15),
        || async {
            match zk_get(&c, &witness).await {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_observed_by_an_expired_session_are_dropped() {
    let root = unique_root("fence");
    let cfg = zk_settings(&root);
    let t = task();
    let _server = plain_redis_server(&t);
    let addr = t.addr();
    wait_for("redis-server", Duration::from_secs(10), || role(&addr)).await;
    let server = Endpoint::parse(&addr).unwrap();
    let probe = Probe::new(None, Duration::from_secs(1));
    let executor = Executor::new(&probe, "mymaster");

    // Observe with the first session.
    let first = Zk::connect(&cfg).await.unwrap();
    let scope = Scope {
        local_server: Some((server.clone(), server.clone())),
        ..Scope::default()
    };
    let snap = observe(&first, &probe, "mymaster", &scope).await.unwrap();
    assert_eq!(snap.session, session_mark(&first));
    assert!(snap.local.as_ref().is_some_and(|l| l.is_master()), "{snap:?}");

    // The session ends between observing and acting; a new one takes over.
    end_session(first, &root).await;
    let second = Zk::connect(&cfg).await.unwrap();
    assert_ne!(session_mark(&second), snap.session);

    let demote = Action::Demote {
        server: server.clone(),
        to: Endpoint::new("127.0.0.1", 1),
    };
    let write = Action::WriteRecord(RecordWrite {
        master: Endpoint::new("127.0.0.1", 2),
        expected: None,
    });
    for action in [&demote, &write] {
        let observed = Observed {
            zk: &second,
            session: snap.session,
            lock: None,
        };
        let r = executor.execute(action, Some(observed)).await;
        assert!(
            matches!(r, Err(ActError::Fenced(_))),
            "{action:?} was not fenced: {r:?}"
        );
    }
    assert_eq!(role(&addr).await.as_deref(), Ok("master"), "the server was touched");
    assert_eq!(
        second.read_master().await.unwrap(),
        Record::Missing,
        "the record was written"
    );

    // The same actions from a snapshot of the live session go through, so
    // the fence, not a broken executor, is what stopped them.
    let fresh = observe(&second, &probe, "mymaster", &scope).await.unwrap();
    let observed = Observed {
        zk: &second,
        session: fresh.session,
        lock: None,
    };
    executor.execute(&write, Some(observed)).await.unwrap();
    assert_eq!(
        second.read_master().await.unwrap().master(),
        Some(&Endpoint::new("127.0.0.1", 2))
    );
    let to_itself = Action::Demote {
        server: server.clone(),
        to: Endpoint::new("127.0.0.1", 1),
    };
    executor.execute(&to_itself, Some(observed)).await.unwrap();
    assert_eq!(role(&addr).await.as_deref(), Ok("slave"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_is_no_longer_held_fences_the_action() {
    let root = unique_root("fencelock");
    let cfg = zk_settings(&root);
    let probe = Probe::new(None, Duration::from_secs(1));
    let executor = Executor::new(&probe, "mymaster");
    let zk = Zk::connect(&cfg).await.unwrap();
    let lock = zk.lock(b"me").await.unwrap();
    let mark = session_mark(&zk);
    let write = Action::WriteRecord(RecordWrite {
        master: Endpoint::new("127.0.0.1", 3),
        expected: None,
    });
    // Someone removed our lock node (an operator, or a recipe bug).
    zk.delete(lock.lock_path()).await.unwrap();
    let observed = Observed {
        zk: &zk,
        session: mark,
        lock: Some(&lock),
    };
    let r = executor.execute(&write, Some(observed)).await;
    assert!(matches!(r, Err(ActError::Fenced(_))), "{r:?}");
    assert_eq!(zk.read_master().await.unwrap(), Record::Missing);
}
