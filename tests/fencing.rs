//! The executor's fence: an action decided on a snapshot is dropped when
//! the ZooKeeper session that observed it is gone by the time it would act,
//! even though a new session (as the session keeper opens after an expiry)
//! could perform it. A real ZooKeeper and a real redis-server; the session
//! really expires: its client is cut off from the server (a gate the test
//! shuts), the server expires it after its timeout (its log says so, and
//! its ephemeral node goes), and the client itself then calls it expired.

mod common;

use std::time::Duration;

use common::*;
use redis_zk::act::{ActError, Action, Executor};
use redis_zk::config::WatcherConfig;
use redis_zk::model::{Endpoint, Record};
use redis_zk::observe::{Scope, SessionMark, ZkSession, observe};
use redis_zk::policy::reconcile::RecordWrite;
use redis_zk::probe::Probe;
use redis_zk::zk::Zk;

/// The session timeout of the sessions under test.
const SESSION: Duration = Duration::from_millis(2000);

fn zk_settings(hosts: &str, root: &str) -> redis_zk::zk::ZkConfig {
    let vars = [
        ("ZK_HOSTS".to_string(), hosts.to_string()),
        ("ZK_ROOT".to_string(), root.to_string()),
        ("ZK_SESSION_TIMEOUT_MS".to_string(), SESSION.as_millis().to_string()),
    ];
    WatcherConfig::from_vars(&vars).unwrap().common.zk
}

/// Lets `zk`'s session (connected through `gate`) expire for real: shuts
/// the gate, waits until the server has expired the session (its
/// ephemeral witness node gone, and the expiry in the server's log), then
/// until the client itself reports the session expired.
async fn expire_session(session: &Zk, gate: &ZkGate, root: &str) {
    let witness = format!("{root}/witness");
    session
        .create_ephemeral(&witness, b"x")
        .await
        .expect("create the witness node");
    let id = SessionMark::of(session).0;
    let c = zk_client().await;
    gate.close();
    // The server expires a session at most one tick after its timeout ran
    // out since the last ping it heard; 2 s of margin for a busy machine.
    wait_for(
        "the server to expire the session (its ephemeral node to go)",
        SESSION + ZK_TICK + Duration::from_secs(2),
        || async {
            match zk_get(&c, &witness).await {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        },
    )
    .await;
    assert!(
        zk().declared_expired(id),
        "the witness went, but ZooKeeper did not log that it expired session {id:#x}:\n{}",
        zk().log_tail()
    );
    // The client, hearing nothing, calls its session expired once it could
    // not reconnect within 7/5 of the session timeout of its last answer
    // (zookeeper-client); 2 s of margin.
    wait_for(
        "the client to call its session expired",
        SESSION * 7 / 5 + Duration::from_secs(2),
        || async {
            match ZkSession::of(session) {
                ZkSession::Expired => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_observed_by_an_expired_session_are_dropped() {
    let root = unique_root("fence");
    let gate = ZkGate::new();
    let cfg = zk_settings(&zk().connect_string(), &root);
    let t = task();
    let _server = plain_redis_server(&t);
    let addr = t.addr();
    wait_for("redis-server", Duration::from_secs(10), || role(&addr)).await;
    let server = Endpoint::parse(&addr).unwrap();
    let probe = Probe::new(None, Duration::from_secs(1));
    let executor = Executor {
        probe: &probe,
        name: "mymaster",
        monitor: None,
    };

    // Observe with the first session, which reaches ZooKeeper through the gate.
    let first = Zk::connect(&zk_settings(&gate.connect_string(), &root)).await.unwrap();
    let scope = Scope {
        local_server: Some(&server),
        ..Scope::default()
    };
    let snap = observe(&first, &probe, "mymaster", scope).await.unwrap();
    assert_eq!(snap.session, SessionMark::of(&first));
    assert!(snap.local.as_ref().is_some_and(|l| l.is_master()), "{snap:?}");

    // The session expires between observing and acting; a new one takes over.
    expire_session(&first, &gate, &root).await;
    let second = Zk::connect(&cfg).await.unwrap();
    assert_ne!(SessionMark::of(&second), snap.session);

    let demote = Action::Demote {
        server: server.clone(),
        to: Endpoint::new("127.0.0.1", 1),
    };
    let write = Action::WriteRecord(RecordWrite {
        master: Endpoint::new("127.0.0.1", 2),
        expected: None,
    });
    for action in [&demote, &write] {
        let r = executor.execute(&second, None, snap.session, action).await;
        assert!(
            matches!(r, Err(ActError::Fenced(_))),
            "{action:?} was not fenced: {r:?}"
        );
        // Nor can the expired session itself act.
        let r = executor.execute(&first, None, snap.session, action).await;
        assert!(
            matches!(r, Err(ActError::Fenced(_))),
            "{action:?} by the expired session was not fenced: {r:?}"
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
    let fresh = observe(&second, &probe, "mymaster", scope).await.unwrap();
    executor.execute(&second, None, fresh.session, &write).await.unwrap();
    assert_eq!(
        second.read_master().await.unwrap().master(),
        Some(&Endpoint::new("127.0.0.1", 2))
    );
    let to_itself = Action::Demote {
        server: server.clone(),
        to: Endpoint::new("127.0.0.1", 1),
    };
    executor
        .execute(&second, None, fresh.session, &to_itself)
        .await
        .unwrap();
    assert_eq!(role(&addr).await.as_deref(), Ok("slave"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_is_no_longer_held_fences_the_action() {
    let root = unique_root("fencelock");
    let cfg = zk_settings(&zk().connect_string(), &root);
    let probe = Probe::new(None, Duration::from_secs(1));
    let executor = Executor {
        probe: &probe,
        name: "mymaster",
        monitor: None,
    };
    let zk = Zk::connect(&cfg).await.unwrap();
    let lock = zk.lock(b"me").await.unwrap();
    let mark = SessionMark::of(&zk);
    let write = Action::WriteRecord(RecordWrite {
        master: Endpoint::new("127.0.0.1", 3),
        expected: None,
    });
    // Someone removed our lock node (an operator, or a recipe bug).
    zk.delete(lock.lock_path()).await.unwrap();
    let r = executor.execute(&zk, Some(&lock), mark, &write).await;
    assert!(matches!(r, Err(ActError::Fenced(_))), "{r:?}");
    assert_eq!(zk.read_master().await.unwrap(), Record::Missing);
}
