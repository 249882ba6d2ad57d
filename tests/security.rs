//! Secrets: `ZK_DIGEST` ACLs keep unauthenticated ZooKeeper clients to
//! reading, and `REDIS_PASSWORD` keeps unauthenticated Redis clients out,
//! while the group and its failovers keep working; neither secret shows up
//! on a command line or in a log.

mod common;

use std::time::Duration;

use common::group::*;
use common::*;
use zookeeper_client::{Client, Error as ZkError};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every log file the group's tasks wrote (launchers, and the servers and
/// Sentinels, whose output goes to the same files).
fn all_logs(g: &Group) -> String {
    let mut text = String::new();
    for m in g.redis.iter().chain(&g.sentinels).chain(&g.watchers) {
        text += &m.proc.log();
    }
    text
}

/// Every process's command line on this machine.
fn ps_output() -> String {
    let out = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zk_digest_lets_everyone_read_and_only_us_write() {
    let _serial = SERIAL.lock().await;
    let secret = "zk-Secr3t-digest";
    let mut g = Group::new("digest");
    g.extra.push(("ZK_DIGEST", format!("rzk:{secret}")));
    g.extra.push(("SENTINEL_QUORUM", "1".into()));
    let g = Group::start_with(g, 1, 1, 1).await;
    let master = g.record().await.expect("record readable without credentials");
    assert_eq!(master, g.redis[0].addr());

    let anon = zk_client().await;
    let record = format!("{}/master", g.root);
    let (_, stat) = anon.get_data(&record).await.unwrap();
    assert_eq!(anon.set_data(&record, b"6.6.6.6 666", None).await, Err(ZkError::NoAuth));
    assert_eq!(anon.delete(&record, None).await, Err(ZkError::NoAuth));
    for (dir, _) in [("nodes", ()), ("sentinels", ())] {
        let path = format!("{}/{dir}", g.root);
        for child in zk_children(&anon, &path).await {
            let r = anon.delete(&format!("{path}/{child}"), None).await;
            assert_eq!(r, Err(ZkError::NoAuth), "unauthenticated delete of {path}/{child}");
        }
    }
    let opts = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    assert_eq!(
        anon.create(&format!("{}/intruder", g.root), b"", &opts)
            .await
            .map(|_| ()),
        Err(ZkError::NoAuth)
    );
    assert_eq!(
        g.record().await.as_deref(),
        Some(master.as_str()),
        "the record must be unchanged"
    );

    // The same writes with the digest succeed: the refusals above were the ACL.
    let owner = Client::connector()
        .with_auth("digest", format!("rzk:{secret}").as_bytes())
        .with_session_timeout(Duration::from_secs(10))
        .connect(&zk().connect_string())
        .await
        .unwrap();
    owner
        .set_data(&record, master.as_bytes(), Some(stat.version))
        .await
        .expect("owner may write");

    assert!(!all_logs(&g).contains(secret), "the ZK digest leaked into a log");
    assert!(!ps_output().contains(secret), "the ZK digest is on a command line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_password_keeps_strangers_out_and_the_group_working() {
    let _serial = SERIAL.lock().await;
    let password = "Redis-pw-31337";
    let mut g = Group::new("password");
    g.password = Some(password.to_string());
    let g = Group::start_with(g, 3, 3, 1).await;
    let master = g.wait_healthy(Duration::from_secs(60)).await;

    for addr in [master.clone(), g.sentinels[0].addr()] {
        let r = redis_cmd(&addr, None, &["PING"]).await;
        assert!(
            matches!(&r, Err(e) if e.contains("NOAUTH")),
            "{addr} without password: {r:?}"
        );
    }
    let r = redis_cmd(&g.sentinels[1].addr(), None, &["SENTINEL", "FAILOVER", "mymaster"]).await;
    assert!(
        matches!(&r, Err(e) if e.contains("NOAUTH")),
        "SENTINEL FAILOVER without password: {r:?}"
    );
    assert_eq!(
        redis_cmd(&master, Some(password), &["SET", "k", "v"]).await,
        Ok(redis::Value::Okay)
    );

    // A failover still works and reaches the record.
    let mi = g.master_index().await.unwrap();
    g.redis[mi].proc.signal(libc::SIGKILL);
    let new = wait_for("the record to follow a failover", Duration::from_secs(10), || async {
        match g.record().await {
            Some(r) if r != master && role_pw(&r, Some(password)).await.as_deref() == Ok("master") => Ok(r),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        redis_cmd(&new, Some(password), &["GET", "k"]).await,
        Ok(redis::Value::BulkString(b"v".to_vec()))
    );

    // Secrets reach the children only through private files.
    use std::os::unix::fs::PermissionsExt;
    let confs = g
        .redis
        .iter()
        .map(|m| (m, "redis.conf"))
        .chain(g.sentinels.iter().map(|m| (m, "sentinel.conf")));
    for (m, f) in confs {
        let p = m.task.dir.join(f);
        let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            meta.permissions().mode() & 0o077,
            0,
            "{} is readable by others",
            p.display()
        );
        assert!(
            std::fs::read_to_string(&p).unwrap().contains(password),
            "{} should carry the password",
            p.display()
        );
    }
    assert!(
        !ps_output().contains(password),
        "the password is on a command line:\n{}",
        ps_output()
    );
    let logs = all_logs(&g);
    assert!(!logs.contains(password), "the password leaked into a log");
    assert!(
        logs.contains("record follows the sentinels"),
        "the watcher never followed the failover"
    );
}

/// The NUL-separated contents of `/proc/<pid>/<file>` as one string.
fn proc_file(pid: i32, file: &str) -> String {
    let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_else(|e| panic!("/proc/{pid}/{file}: {e}"));
    String::from_utf8_lossy(&bytes).replace('\0', "\n")
}

/// A stand-in for `program` that records the environment and arguments it
/// was started with, then execs the real program (same pid). Redis rewrites
/// the memory behind `/proc/<pid>/environ` and `cmdline` with its process
/// title, so only a record made at exec time shows what the child got.
fn recording_wrapper(dir: &std::path::Path, program: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let real = which(program);
    let path = dir.join(format!("{program}-wrapper"));
    let d = dir.display();
    std::fs::write(
        &path,
        format!("#!/bin/sh\n/usr/bin/env > {d}/env-$$\nprintf '%s\\n' \"$@\" > {d}/args-$$\nexec {real} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn which(program: &str) -> String {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} not on PATH"))
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_child_has_a_secret_in_its_environment_or_argv() {
    let _serial = SERIAL.lock().await;
    let password = "Env-pw-4242";
    let digest_secret = "Env-zk-4343";
    let rec = tempfile::tempdir().unwrap();
    let mut g = Group::new("childenv");
    g.password = Some(password.to_string());
    g.extra.push(("ZK_DIGEST", format!("rzk:{digest_secret}")));
    // A lower-case spelling is read too (names match ASCII-case-insensitively),
    // so it must not reach the children either.
    g.extra.push(("redis_password", password.to_string()));
    g.extra
        .push(("REDIS_SERVER_BIN", recording_wrapper(rec.path(), "redis-server")));
    g.extra
        .push(("REDIS_SENTINEL_BIN", recording_wrapper(rec.path(), "redis-sentinel")));
    let g = Group::start_with(g, 2, 1, 0).await;
    let mut checked = vec![];
    for m in g.redis.iter().chain(&g.sentinels) {
        let addr = m.addr();
        let pid: i32 = info_field_pw(&addr, Some(password), "server", "process_id")
            .await
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(pid, m.proc.pid(), "{addr}: the child must not be the launcher itself");
        // The launcher does hold them: the checks below look at the right thing.
        assert!(proc_file(m.proc.pid(), "environ").contains(password));
        let read = |f: &str| {
            std::fs::read_to_string(rec.path().join(format!("{f}-{pid}")))
                .unwrap_or_else(|e| panic!("{addr}: no {f} record for pid {pid}: {e}"))
        };
        let (environ, args) = (read("env"), read("args"));
        assert!(
            args.contains(".conf"),
            "{addr}: the record is not of this child: {args}"
        );
        for (what, text) in [
            ("environment at exec", environ.as_str()),
            ("argv at exec", args.as_str()),
            ("/proc environ", &proc_file(pid, "environ")),
            ("/proc cmdline", &proc_file(pid, "cmdline")),
        ] {
            for secret in [password, digest_secret] {
                assert!(
                    !text.contains(secret),
                    "{addr} (pid {pid}) has a secret in its {what}:\n{text}"
                );
            }
        }
        let names: Vec<&str> = environ
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        for name in &names {
            let upper = name.to_ascii_uppercase();
            assert!(
                upper != "REDIS_PASSWORD" && upper != "ZK_DIGEST",
                "{addr} (pid {pid}) inherited {name}"
            );
        }
        checked.push(format!("{addr} pid {pid} ({} variables)", names.len()));
    }
    assert_eq!(checked.len(), 3, "{checked:?}");
    eprintln!("MEASURE children checked for secrets: {checked:?}");
}
