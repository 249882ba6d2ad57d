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
    let new = wait_for("the record to follow a failover", failover_budget(), || async {
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
    // The watcher logs after it wrote the record.
    wait_for(
        "the watcher's 'record follows the sentinels' line",
        Duration::from_secs(5),
        || async {
            if all_logs(&g).contains("record follows the sentinels") {
                Ok(())
            } else {
                Err("the watcher never followed the failover".to_string())
            }
        },
    )
    .await;
    assert!(!all_logs(&g).contains(password), "the password leaked into a log");
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
    let rec = open_tempdir();
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

/// A scratch directory every user may write: launchers started as root
/// run as `redis`, and their children's wrappers record into it.
fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// `Uid:` (real, effective, saved, fs) of a process.
fn uids(pid: i32) -> Vec<u32> {
    let status = proc_file(pid, "status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap_or_else(|| panic!("no Uid: line in /proc/{pid}/status:\n{status}"));
    line.split_whitespace()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|e| panic!("/proc/{pid}/status Uid:{line}: {e}"))
        })
        .collect()
}

/// The checks of users and file owners need root, as CI has it: fail,
/// rather than pass without them.
fn assert_root(what: &str) {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "{what}: cannot run without root (launchers drop from root to redis; a root-only file), as CI runs them: run the suite as root"
    );
}

fn redis_uid() -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| l.strip_prefix("redis:"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|n| n.parse().ok())
        .expect("a redis user in /etc/passwd (Debian's redis-server package makes it)")
}

/// `REDIS_PASSWORD_FILE` and `ZK_DIGEST_FILE` end to end: files only root
/// can read (as Docker and DC/OS secrets are), read by launchers started as
/// root before they drop to `redis`. The group works with them, strangers
/// are kept out of Redis and ZooKeeper, and the secrets appear in no log,
/// command line or environment. Launchers and children run as `redis`, and
/// a root-owned `DATA_DIR` (a Marathon persistent volume) is handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_files_work_and_launchers_drop_root() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_root("the uid and DATA_DIR owner checks");
    let _serial = SERIAL.lock().await;
    let password = "File-pw-7171";
    let digest_secret = "File-zk-7272";
    let secrets = tempfile::tempdir().unwrap();
    let pw_file = secrets.path().join("redis-password");
    let digest_file = secrets.path().join("zk-digest");
    std::fs::write(&pw_file, format!("{password}\n")).unwrap();
    std::fs::write(&digest_file, format!("rzk:{digest_secret}\n")).unwrap();
    for f in [&pw_file, &digest_file] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    let rec = open_tempdir();
    let mut g = Group::new("secretfiles");
    g.password = Some(password.to_string());
    g.password_file = Some(pw_file.clone());
    g.extra.push(("ZK_DIGEST_FILE", digest_file.display().to_string()));
    g.extra.push(("SENTINEL_QUORUM", "1".into()));
    g.extra
        .push(("REDIS_SERVER_BIN", recording_wrapper(rec.path(), "redis-server")));
    g.extra
        .push(("REDIS_SENTINEL_BIN", recording_wrapper(rec.path(), "redis-sentinel")));
    let g = Group::start_with(g, 2, 1, 1).await;
    let master = g.record().await.expect("record");

    // The password from the file is the group's: strangers are refused,
    // the replica is linked with it (wait_healthy checked), writes work.
    let r = redis_cmd(&master, None, &["PING"]).await;
    assert!(
        matches!(&r, Err(e) if e.contains("NOAUTH")),
        "{master} without password: {r:?}"
    );
    assert_eq!(
        redis_cmd(&master, Some(password), &["SET", "k", "v"]).await,
        Ok(redis::Value::Okay)
    );
    // The digest from the file guards the znodes.
    let anon = zk_client().await;
    assert_eq!(
        anon.set_data(&format!("{}/master", g.root), b"6.6.6.6 666", None).await,
        Err(ZkError::NoAuth),
        "the record must be writable only with the digest from ZK_DIGEST_FILE"
    );

    let redis_uid = redis_uid();
    let mut checked = vec![];
    for m in g.redis.iter().chain(&g.sentinels).chain(&g.watchers) {
        let launcher = m.proc.pid();
        let env = proc_file(launcher, "environ");
        assert!(env.contains("REDIS_PASSWORD_FILE="), "launcher {launcher}: {env}");
        let mut pids = vec![launcher];
        if !g.watchers.iter().any(|w| w.proc.pid() == launcher) {
            let child: i32 = info_field_pw(&m.addr(), Some(password), "server", "process_id")
                .await
                .unwrap()
                .parse()
                .unwrap();
            let at_exec = std::fs::read_to_string(rec.path().join(format!("env-{child}")))
                .unwrap_or_else(|e| panic!("no env record of child {child}: {e}"));
            for secret in [password, digest_secret] {
                assert!(
                    !at_exec.contains(secret),
                    "child {child} got a secret at exec:\n{at_exec}"
                );
            }
            pids.push(child);
        }
        for pid in &pids {
            for f in ["environ", "cmdline"] {
                let text = proc_file(*pid, f);
                for secret in [password, digest_secret] {
                    assert!(!text.contains(secret), "pid {pid} has a secret in /proc/{pid}/{f}");
                }
            }
            assert_eq!(
                uids(*pid),
                vec![redis_uid; 4],
                "pid {pid} must run as redis (uid {redis_uid}), not root"
            );
        }
        if !g.watchers.iter().any(|w| w.proc.pid() == launcher) {
            let owner = std::fs::metadata(&m.task.dir).unwrap().uid();
            assert_eq!(
                owner,
                redis_uid,
                "{}: DATA_DIR not handed to redis",
                m.task.dir.display()
            );
        }
        checked.extend(pids);
    }
    let logs = all_logs(&g);
    for secret in [password, digest_secret] {
        assert!(!logs.contains(secret), "a secret leaked into a log");
        assert!(!ps_output().contains(secret), "a secret is on a command line");
    }
    assert!(
        !logs.contains("REDIS_PASSWORD is not set"),
        "a group with a password file must not be warned about"
    );
    eprintln!("MEASURE processes checked for secrets and uid: {}", checked.len());
}

/// A launcher started with no password warns exactly once that the group
/// is open; with one it says nothing of the kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_group_is_warned_about_once_per_launcher() {
    let _serial = SERIAL.lock().await;
    let mut g = Group::new("nopass");
    g.extra.push(("SENTINEL_QUORUM", "1".into()));
    let g = Group::start_with(g, 1, 1, 1).await;
    for m in g.redis.iter().chain(&g.sentinels).chain(&g.watchers) {
        let log = m.proc.log();
        let n = log.matches("REDIS_PASSWORD is not set").count();
        assert_eq!(n, 1, "{}: {n} warnings:\n{log}", m.proc.log_path().display());
    }
}

/// Bad secret files stop every binary with exit 2 and one line naming the
/// variable, before ZooKeeper is touched: a missing file, a directory, a
/// file this user cannot read, and both forms set at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_secret_files_exit_2_before_touching_zookeeper() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = open_tempdir();
    let unreadable = dir.path().join("root-only");
    std::fs::write(&unreadable, "s3cret-unreadable\n").unwrap();
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o400)).unwrap();
    let good = dir.path().join("good");
    std::fs::write(&good, "rzk:pw\n").unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o444)).unwrap();
    assert_root("the unreadable-file case (a file read as nobody)");
    let dir_s = dir.path().display().to_string();
    let good_s = good.display().to_string();
    /// (variables, the one the message must name, run as `nobody`)
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, bool);
    let cases: Vec<Case> = vec![
        (
            vec![("REDIS_PASSWORD_FILE", "/nonexistent/pw".into())],
            "REDIS_PASSWORD_FILE",
            false,
        ),
        (vec![("ZK_DIGEST_FILE", dir_s.clone())], "ZK_DIGEST_FILE", false),
        (
            vec![("REDIS_PASSWORD", "pw".into()), ("REDIS_PASSWORD_FILE", good_s.clone())],
            "REDIS_PASSWORD_FILE",
            false,
        ),
        (
            vec![("ZK_DIGEST", "rzk:pw".into()), ("ZK_DIGEST_FILE", good_s)],
            "ZK_DIGEST_FILE",
            false,
        ),
        // Root reads any file; an unreadable one is tried as `nobody`.
        (
            vec![("REDIS_PASSWORD_FILE", unreadable.display().to_string())],
            "REDIS_PASSWORD_FILE",
            true,
        ),
    ];
    let c = zk_client().await;
    let bins = [
        (RZK_REDIS, vec![]),
        (RZK_SENTINEL, vec![]),
        (RZK_WATCHER, vec![]),
        (RZKCTL, vec!["status"]),
    ];
    let mut n = 0;
    for (vars, var, as_nobody) in &cases {
        for (bin, args) in &bins {
            let g = Group::new("badsecret");
            let t = task();
            std::fs::set_permissions(&t.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            let mut env = g.env(Some(&t));
            env.extend(vars.iter().cloned());
            let mut cmd = std::process::Command::new(bin);
            cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap());
            for (k, v) in &env {
                cmd.env(k, v);
            }
            if *as_nobody {
                cmd.uid(65534).gid(65534);
            }
            let out = cmd.output().expect("run");
            let name = bin.rsplit('/').next().unwrap();
            let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(2), "{name} {vars:?}: {:?}\n{text}", out.status);
            assert_eq!(text.lines().count(), 1, "{name} {vars:?}: one line expected:\n{text}");
            assert!(
                text.contains(var) && text.contains("expected"),
                "{name} {vars:?}: {text}"
            );
            assert!(!text.contains("s3cret"), "{name}: a secret in the message: {text}");
            assert!(zk_get(&c, &g.root).await.is_none(), "{name} {vars:?} touched ZooKeeper");
            n += 1;
        }
    }
    eprintln!("MEASURE bad secret-file cases refused with exit 2: {n}");
}
