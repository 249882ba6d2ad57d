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
use redis_zk::act::{ActError, Action, Executor, Observed};
use redis_zk::config::WatcherConfig;
use redis_zk::model::{Cause, Endpoint, Record};
use redis_zk::observe::{observe, session_mark, zk_state};
use redis_zk::policy::reconcile::RecordWrite;
use redis_zk::probe::Probe;
use redis_zk::snapshot::{Scope, ZkSession};
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
    let id = session_mark(session).0;
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
            match zk_state(session) {
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
    let executor = Executor::new(&probe, "mymaster");

    // Observe with the first session, which reaches ZooKeeper through the gate.
    let first = Zk::connect(&zk_settings(&gate.connect_string(), &root)).await.unwrap();
    let scope = Scope {
        local_server: Some((server.clone(), server.clone())),
        ..Scope::default()
    };
    let snap = observe(&first, &probe, "mymaster", &scope).await.unwrap();
    assert_eq!(snap.session, session_mark(&first));
    assert!(snap.local.as_ref().is_some_and(|l| l.is_master()), "{snap:?}");

    // The session expires between observing and acting; a new one takes over.
    expire_session(&first, &gate, &root).await;
    let second = Zk::connect(&cfg).await.unwrap();
    assert_ne!(session_mark(&second), snap.session);

    let demote = Action::Demote {
        server: server.clone(),
        to: Endpoint::new("127.0.0.1", 1),
    };
    let write = Action::WriteRecord(RecordWrite {
        master: Endpoint::new("127.0.0.1", 2),
        expected: None,
        old: None,
        cause: Cause::Bootstrap,
        epoch: None,
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
        // Nor can the expired session itself act.
        let by_first = Observed {
            zk: &first,
            session: snap.session,
            lock: None,
        };
        let r = executor.execute(action, Some(by_first)).await;
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
    let cfg = zk_settings(&zk().connect_string(), &root);
    let probe = Probe::new(None, Duration::from_secs(1));
    let executor = Executor::new(&probe, "mymaster");
    let zk = Zk::connect(&cfg).await.unwrap();
    let lock = zk.lock(b"me").await.unwrap();
    let mark = session_mark(&zk);
    let write = Action::WriteRecord(RecordWrite {
        master: Endpoint::new("127.0.0.1", 3),
        expected: None,
        old: None,
        cause: Cause::Bootstrap,
        epoch: None,
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
