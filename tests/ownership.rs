//! A launcher started as root changes the owner only of a `DATA_DIR` that is
//! clearly its own (docs/contract.md, section 7), and nothing at all before
//! every check has passed. Each case records the owner, mode, size and
//! time of every entry under the directories involved, runs a real
//! binary as root, and compares.
//!
//! Needs root, as CI runs: a launcher that is not root never changes an
//! owner, so nothing here could fail.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::group::{RZK_REDIS, RZK_SENTINEL, RZK_WATCHER, RZKCTL};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/ownership.rs must run as root (CI does): only a root launcher hands DATA_DIR over"
    );
}

/// `(uid, gid, mode, size, mtime)` of every entry under `dir` (itself
/// included), never following a link.
type Snapshot = BTreeMap<PathBuf, (u32, u32, u32, u64, i64)>;

fn snapshot(dir: &Path) -> Snapshot {
    fn walk(p: &Path, out: &mut Snapshot) {
        let Ok(m) = std::fs::symlink_metadata(p) else { return };
        out.insert(p.to_path_buf(), (m.uid(), m.gid(), m.mode(), m.len(), m.mtime()));
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// A root-owned directory under `/var/tmp/rzk-own-…` holding root-owned
/// files, as a user's working directory or an operator's files would be.
fn root_owned_dir(tag: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(&format!("rzk-own-{tag}-"))
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(d.path().join("notes.txt"), "mine").unwrap();
    std::fs::create_dir(d.path().join("private")).unwrap();
    std::fs::write(d.path().join("private/key"), "secret").unwrap();
    d
}

/// `program args` in `cwd` with only `vars` and PATH set, and a ZooKeeper
/// nobody listens on (nothing may reach one).
fn command(program: &str, args: &[&str], cwd: &Path, vars: &[(&str, &str)]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("ZK_HOSTS", "127.0.0.1:1")
        .env("ZK_CONNECT_TIMEOUT_S", "1");
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

/// Runs `bin` as root in `cwd` with only `vars` set.
fn run(bin: &str, args: &[&str], cwd: &Path, vars: &[(&str, &str)]) -> Output {
    command(bin, args, cwd, vars).output().expect("run the binary")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A refused start: exit 2, one line naming `var`.
fn assert_refused(o: &Output, var: &str, what: &str) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(2), "{what}: {:?}\n{t}", o.status);
    assert_eq!(t.lines().count(), 1, "{what}: one line expected:\n{t}");
    assert!(t.contains(&format!("invalid {var}=")), "{what}: must name {var}:\n{t}");
}

fn assert_unchanged(before: &Snapshot, dir: &Path, what: &str) {
    let after = snapshot(dir);
    assert_eq!(
        &after,
        before,
        "{what}: something under {} changed (or appeared)",
        dir.display()
    );
}

fn redis_ids() -> (u32, u32) {
    let u = nix::unistd::User::from_name("redis")
        .unwrap()
        .expect("a redis user (Debian's redis-server package makes it)");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// The reported case: as root, in a directory full of root's files, with
/// `DATA_DIR` unset. Every task launcher refuses; nothing changes.
#[test]
fn an_unset_data_dir_is_never_the_working_directory() {
    require_root();
    let cwd = root_owned_dir("cwd");
    let before = snapshot(cwd.path());
    for bin in [RZK_REDIS, RZK_SENTINEL] {
        let o = run(bin, &[], cwd.path(), &[("BIND_IP", "127.0.0.1")]);
        assert_refused(&o, "DATA_DIR", bin);
        assert!(text(&o).contains("set explicitly"), "{}", text(&o));
        assert_unchanged(&before, cwd.path(), bin);
    }
}

/// `--help`, `-h`, `--version` and `-V` answer before anything: exit 0, and
/// nothing changes in the working directory or in a `DATA_DIR` that would
/// otherwise be handed over.
#[test]
fn help_and_version_change_nothing() {
    require_root();
    let cwd = root_owned_dir("help");
    let data = tempfile::Builder::new()
        .prefix("rzk-own-data-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(data.path().join("redis.conf"), "# root's").unwrap();
    let (before_cwd, before_data) = (snapshot(cwd.path()), snapshot(data.path()));
    let dir = data.path().to_str().unwrap();
    for bin in [RZK_REDIS, RZK_SENTINEL, RZK_WATCHER, RZKCTL] {
        for flag in ["--help", "-h", "--version", "-V"] {
            for vars in [vec![], vec![("DATA_DIR", dir), ("BIND_IP", "127.0.0.1")]] {
                let o = run(bin, &[flag], cwd.path(), &vars);
                let t = text(&o);
                assert_eq!(o.status.code(), Some(0), "{bin} {flag}: {t}");
                let name = bin.rsplit('/').next().unwrap();
                assert!(t.starts_with(&format!("{name} ")), "{bin} {flag}: {t}");
                if flag.contains('h') {
                    assert!(t.contains("Usage:") && t.contains("ZK_HOSTS [localhost:2181]"), "{t}");
                }
            }
        }
        assert_unchanged(&before_cwd, cwd.path(), bin);
        assert_unchanged(&before_data, data.path(), bin);
    }
    // Even behind redis-server arguments and with a bad variable.
    let o = run(
        RZK_REDIS,
        &["--maxmemory", "1gb", "--help"],
        cwd.path(),
        &[("PORT0", "x")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_unchanged(&before_cwd, cwd.path(), "--help after other arguments");
}

/// A bad variable found after `DATA_DIR` was read (the interface is
/// resolved at start) stops the launcher before `DATA_DIR` is touched: the
/// directory would be handed over, but nothing changes.
#[test]
fn a_bad_variable_changes_nothing() {
    require_root();
    let data = tempfile::Builder::new()
        .prefix("rzk-own-bad-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(data.path().join("redis.conf"), "# root's").unwrap();
    std::fs::create_dir(data.path().join("appendonlydir")).unwrap();
    std::fs::write(data.path().join("appendonlydir/a.aof"), "x").unwrap();
    let missing = data.path().join("not-yet");
    let before = snapshot(data.path());
    let dir = data.path().to_str().unwrap();
    let missing_s = missing.to_str().unwrap();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (RZK_REDIS, &[("DATA_DIR", dir), ("NET_IFACE", "nope0")], "NET_IFACE"),
        (RZK_SENTINEL, &[("DATA_DIR", dir), ("NET_IFACE", "nope0")], "NET_IFACE"),
        (
            RZK_REDIS,
            &[
                ("DATA_DIR", dir),
                ("BIND_IP", "127.0.0.1"),
                ("REDIS_SERVER_BIN", "/nonexistent"),
            ],
            "REDIS_SERVER_BIN",
        ),
        (
            RZK_REDIS,
            &[("DATA_DIR", dir), ("BIND_IP", "127.0.0.1"), ("RUST_LOG", "=*=")],
            "RUST_LOG",
        ),
        (
            RZK_REDIS,
            &[("DATA_DIR", missing_s), ("BIND_IP", "127.0.0.1"), ("PORT0", "0")],
            "PORT0",
        ),
        (
            RZK_SENTINEL,
            &[("DATA_DIR", dir), ("BIND_IP", "127.0.0.1"), ("SENTINEL_QUORUM", "0")],
            "SENTINEL_QUORUM",
        ),
    ];
    for (bin, vars, var) in cases {
        let o = run(bin, &[], Path::new("/"), vars);
        assert_refused(&o, var, &format!("{bin} {vars:?}"));
        assert_unchanged(&before, data.path(), &format!("{bin} {vars:?}"));
        assert!(!missing.exists(), "{bin} {vars:?} created {}", missing.display());
    }
}

/// Runs `bin` in a user namespace where it is "root" but is really
/// `nobody`: it takes the root launcher's path, but a regression that
/// tried to hand a system directory over would get `EPERM` instead of
/// wrecking this machine. (Run as real root, the old code handed `/` and
/// all of `/etc` to `redis` before it stopped at `/proc`.)
fn run_as_fake_root(bin: &str, vars: &[(&str, &str)]) -> Output {
    let args = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "unshare",
        "--user",
        "--map-root-user",
        bin,
    ];
    let o = command("setpriv", &args, Path::new("/"), vars)
        .output()
        .expect("run setpriv (util-linux)");
    let t = text(&o);
    assert!(
        !t.contains("unshare:") && !t.contains("setpriv:"),
        "this test needs unprivileged user namespaces (setpriv … unshare --user --map-root-user): {t}"
    );
    o
}

/// System directories: refused by path, before any owner is looked at.
/// Run as a fake root (see [`run_as_fake_root`]), so a regression cannot
/// harm the machine.
#[test]
fn system_directories_are_refused() {
    require_root();
    let base = tempfile::Builder::new()
        .prefix("rzk-own-sys-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(base.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // A link to the root directory: its real path is `/`.
    let link = base.path().join("to-root");
    std::os::unix::fs::symlink("/", &link).unwrap();
    let link = link.display().to_string();
    let cases: &[(&str, &str)] = &[
        ("/", "root directory"),
        (&link, "root directory"),
        ("/tmp", "top-level"),
        ("/etc", "system tree /etc"),
        ("/var/lib", "directly in /var"),
        ("/usr/local/rzk", "system tree /usr"),
    ];
    let owners = || -> Vec<(u32, u32, u32)> {
        ["/", "/tmp", "/etc", "/var/lib", "/usr/local"]
            .iter()
            .map(|d| {
                let m = std::fs::metadata(d).unwrap();
                (m.uid(), m.gid(), m.mode())
            })
            .collect()
    };
    let top = owners();
    for (dir, why) in cases {
        for bin in [RZK_REDIS, RZK_SENTINEL] {
            let o = run_as_fake_root(bin, &[("DATA_DIR", dir), ("BIND_IP", "127.0.0.1")]);
            assert_refused(&o, "DATA_DIR", &format!("{bin} DATA_DIR={dir}"));
            assert!(
                text(&o).contains(why),
                "{bin} DATA_DIR={dir}: expected the reason {why:?}:\n{}",
                text(&o)
            );
        }
    }
    assert_eq!(owners(), top, "a system directory changed");
    assert!(!Path::new("/usr/local/rzk").exists(), "/usr/local/rzk was created");
}

/// The other refusals of section 7, as real root: a directory holding
/// something no launcher writes, a third user's file, a parent the `redis`
/// user cannot enter, another user's home. Exit 2 naming `DATA_DIR`, and
/// nothing changed or created.
#[test]
fn data_dirs_that_are_not_clearly_a_launchers_own_are_refused() {
    require_root();
    let base = tempfile::Builder::new()
        .prefix("rzk-own-refuse-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let b = base.path();
    std::fs::set_permissions(b, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // A directory of root's holding something no launcher writes.
    std::fs::create_dir(b.join("foreign")).unwrap();
    std::fs::write(b.join("foreign/report.pdf"), "x").unwrap();
    // A launcher's files, one of them a third user's.
    std::fs::create_dir_all(b.join("shared/appendonlydir")).unwrap();
    std::fs::write(b.join("shared/redis.conf"), "x").unwrap();
    std::fs::write(b.join("shared/appendonlydir/x.aof"), "x").unwrap();
    std::os::unix::fs::lchown(b.join("shared/appendonlydir/x.aof"), Some(4242), Some(4242)).unwrap();
    // A directory the redis user may not enter on the way.
    std::fs::create_dir_all(b.join("closed/data")).unwrap();
    std::fs::set_permissions(b.join("closed"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // The home directory of another user, from the password database.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let home = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[0] != "redis" && Path::new(f[5]).components().count() >= 4).then(|| f[5].to_string())
        })
        .next()
        .expect("a user whose home is three directories deep (Debian's base-passwd has man, news, lp)");
    let cases: Vec<(String, &str)> = vec![
        (b.join("foreign").display().to_string(), "report.pdf"),
        (b.join("shared").display().to_string(), "uid 4242"),
        (b.join("closed/data").display().to_string(), "may not enter"),
        (home.clone(), "home directory"),
    ];
    let watched = [b.to_path_buf(), PathBuf::from(&home)];
    let before: Vec<Snapshot> = watched.iter().map(|d| snapshot(d)).collect();
    for (dir, why) in &cases {
        for bin in [RZK_REDIS, RZK_SENTINEL] {
            let o = run(bin, &[], Path::new("/"), &[("DATA_DIR", dir), ("BIND_IP", "127.0.0.1")]);
            assert_refused(&o, "DATA_DIR", &format!("{bin} DATA_DIR={dir}"));
            assert!(
                text(&o).contains(why),
                "{bin} DATA_DIR={dir}: expected the reason {why:?}:\n{}",
                text(&o)
            );
        }
    }
    for (d, s) in watched.iter().zip(&before) {
        assert_unchanged(s, d, "the refusals");
    }
}

/// What is handed over: `DATA_DIR` and root's entries in it, but not a
/// symbolic link (nor what it points to), and nothing on another file
/// system mounted inside it.
#[test]
fn a_data_dir_of_its_own_is_handed_over_without_links_or_other_mounts() {
    require_root();
    let (redis_uid, redis_gid) = redis_ids();
    let data = tempfile::Builder::new()
        .prefix("rzk-own-ok-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let d = data.path();
    std::fs::write(d.join("redis.conf"), "# root's").unwrap();
    std::fs::create_dir(d.join("appendonlydir")).unwrap();
    std::fs::write(d.join("appendonlydir/a.aof"), "x").unwrap();
    let outside = tempfile::Builder::new()
        .prefix("rzk-own-outside-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(outside.path().join("target"), "root's, elsewhere").unwrap();
    std::os::unix::fs::symlink(outside.path().join("target"), d.join("dump.rdb")).unwrap();
    let mnt = d.join("appendonlydir/mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "rzk-own-test", mnt.to_str().unwrap()])
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mount a tmpfs inside DATA_DIR (root can)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    std::fs::write(mnt.join("other-fs"), "x").unwrap();
    let outside_before = snapshot(outside.path());
    // It hands over and drops, then cannot reach ZooKeeper (exit 1).
    let o = run(
        RZK_REDIS,
        &[],
        Path::new("/"),
        &[("DATA_DIR", d.to_str().unwrap()), ("BIND_IP", "127.0.0.1")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let owner = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    for p in [
        d.to_path_buf(),
        d.join("redis.conf"),
        d.join("appendonlydir"),
        d.join("appendonlydir/a.aof"),
    ] {
        assert_eq!(owner(&p), (redis_uid, redis_gid), "{} not handed over", p.display());
    }
    assert_eq!(owner(&d.join("dump.rdb")), (0, 0), "the link itself must be left alone");
    assert_unchanged(&outside_before, outside.path(), "the link's target");
    assert_eq!(
        owner(&mnt),
        (0, 0),
        "the mount point (another file system) must be left alone"
    );
    assert_eq!(
        owner(&mnt.join("other-fs")),
        (0, 0),
        "another file system's file must be left alone"
    );
}

/// A root launcher drops to `redis`, and the kernel clears a parent-death
/// signal when the credentials change: the launcher sets it again, so it
/// still dies with the process that started it (a supervisor, or a test
/// harness that must leave nothing behind).
#[test]
fn a_root_launcher_still_dies_with_its_parent() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    require_root();
    let (redis_uid, _) = redis_ids();
    let cwd = root_owned_dir("pdeath");
    // A parent (sh) that starts the watcher with a parent-death signal,
    // prints its pid, and waits; ZooKeeper unreachable for a minute, so
    // the watcher keeps running on its own.
    let mut parent = command(
        "sh",
        &[
            "-c",
            r#"setpriv --pdeathsig KILL -- "$0" & echo $!; exec sleep 600"#,
            RZK_WATCHER,
        ],
        cwd.path(),
        &[("ZK_CONNECT_TIMEOUT_S", "60")],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: i32 = line.trim().parse().unwrap_or_else(|_| panic!("a pid, got {line:?}"));
    let status = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |s: &str, name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    // It dropped to redis.
    let t0 = Instant::now();
    loop {
        let s = status(pid);
        if field(&s, "Uid:").first().map(String::as_str) == Some(&redis_uid.to_string()) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the root watcher (pid {pid}) did not drop to redis (uid {redis_uid}) within 10 s: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    parent.kill().unwrap();
    parent.wait().unwrap();
    // Gone, or a zombie nobody reaps yet: killed either way.
    let t0 = Instant::now();
    loop {
        let s = status(pid);
        let state = field(&s, "State:");
        if s.is_empty() || state.first().map(String::as_str) == Some("Z") {
            break;
        }
        if t0.elapsed() > Duration::from_secs(5) {
            // SAFETY: plain kill(2) of the process this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the watcher (pid {pid}) outlived its parent by 5 s: state {state:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
