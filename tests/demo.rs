//! The README's first command in its non-interactive demo mode: a whole
//! local group comes up, the master's task is killed, the record follows the
//! promoted replica, and the teardown leaves no process behind.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::*;

/// Processes whose command line, environment or working directory mention `dir`.
fn processes_using(dir: &str) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == std::process::id() as i32 || !pid_alive(pid) {
            continue;
        }
        let p = entry.path();
        let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(p.join("environ")).unwrap_or_default();
        let cwd = std::fs::read_link(p.join("cwd")).unwrap_or_default();
        let mentions = |b: &[u8]| String::from_utf8_lossy(b).contains(dir);
        if mentions(&cmdline) || mentions(&environ) || cwd.starts_with(dir) {
            found.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// A base B such that B+1..=B+n are free (the script's port scheme); the
/// harness hands out free ports in ascending order, so n in a row usually
/// are consecutive.
fn free_ports_after(n: u16) -> u16 {
    for _ in 0..50 {
        let first = task().port;
        if (1..n).all(|i| task().port == first + i) {
            return first - 1;
        }
    }
    panic!("no {n} consecutive free ports");
}

fn three_free_ports_after() -> u16 {
    free_ports_after(3)
}

/// The script with its ports and directory chosen by the test: the
/// command, `GROUP_DIR`, and the ZooKeeper client port.
fn local_group(args: &[&str]) -> (Command, std::path::PathBuf, u16) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_rzk-redis")).parent().unwrap();
    let dir = task().dir.join("group");
    // With --ensemble the servers also take the two ports after it.
    let zk_port = free_ports_after(3) + 1;
    let mut cmd = Command::new("bash");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/local-group.sh"))
        .args(args)
        .env("RZK_BIN_DIR", bin_dir)
        .env("GROUP_DIR", &dir)
        .env("ZK_PORT", zk_port.to_string())
        .env("REDIS_PORT_BASE", three_free_ports_after().to_string())
        .env("SENTINEL_PORT_BASE", three_free_ports_after().to_string())
        .env("ADMIN_PORT_BASE", free_ports_after(7).to_string());
    (cmd, dir, zk_port)
}

/// A status line's record is an address or nothing, never another
/// program's chatter (zkCli's output once raced its data into it).
fn check_status_lines(stdout: &str) {
    let mut lines = 0;
    for l in stdout.lines().filter(|l| l.contains(" record=[")) {
        lines += 1;
        let rec = l.split(" record=[").nth(1).and_then(|r| r.split(']').next()).unwrap();
        let ok = rec.is_empty()
            || rec
                .split_once(' ')
                .is_some_and(|(ip, port)| ip.parse::<std::net::Ipv4Addr>().is_ok() && port.parse::<u16>().is_ok());
        assert!(ok, "a status line with a garbled record: {l}");
        assert!(
            l.contains("healthy") || l.contains("degraded") || l.contains("no answer"),
            "a status line without rzkctl's verdict: {l}"
        );
    }
    assert!(lines > 0, "no status line:\n{stdout}");
}

/// Top-level entries of the temporary directory (where a careless script
/// would leave state), less what other processes put there while the demo
/// runs: this suite's scratch area, the `tempfile` crate's `.tmpXXXXXX`
/// directories of test binaries running alongside (`scripts/test.sh` runs
/// them side by side; neither the script nor the launchers use that crate),
/// the JVM's per-user `hsperfdata_<user>`, which whichever JVM starts
/// first creates and every later one shares, and the compiler's and
/// linker's `ccXXXXXX.*` files of a build running alongside (another
/// user's `cargo`; the script builds nothing when given `RZK_BIN_DIR`).
fn tmp_entries() -> std::collections::BTreeSet<std::ffi::OsString> {
    let other = |n: &str| {
        n == "rzk-tests"
            || n.starts_with("hsperfdata_")
            || (n.len() == 10 && n.starts_with(".tmp") && n[4..].bytes().all(|b| b.is_ascii_alphanumeric()))
            || (n.len() > 9
                && n.starts_with("cc")
                && n.as_bytes()[8] == b'.'
                && n[2..8].bytes().all(|b| b.is_ascii_alphanumeric()))
    };
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !n.to_str().is_some_and(other))
        .collect()
}

/// Runs the demo and the Ctrl-C test one at a time: each brings up a group.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `local-group.sh --demo` with `args` and checks what every demo
/// shows; returns its output.
fn demo(args: &[&str]) -> String {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (mut cmd, dir, _) = local_group(args);
    let dir_s = dir.display().to_string();
    let tmp_before = tmp_entries();
    let t0 = Instant::now();
    let out = cmd.arg("--demo").output().expect("run scripts/local-group.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("MEASURE demo {args:?} took {:?}\n{stdout}", t0.elapsed());
    assert!(
        out.status.success(),
        "demo failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("record moved:") && stdout.contains("DEMO OK"),
        "{stdout}"
    );
    check_status_lines(&stdout);
    let left = processes_using(&dir_s);
    assert!(
        left.is_empty(),
        "processes left running after the demo:\n{}",
        left.join("\n")
    );
    let written: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        written.len() >= 8,
        "the demo should keep its state and logs in GROUP_DIR: {written:?}"
    );
    // What the demo left stays; what another process had there for a
    // moment is gone a few seconds later.
    let mut new: Vec<std::ffi::OsString> = vec![];
    for _ in 0..10 {
        new = tmp_entries().difference(&tmp_before).cloned().collect();
        if new.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(new.is_empty(), "the demo left state outside its directory: {new:?}");
    stdout
}

#[test]
fn local_group_demo_fails_over_and_cleans_up() {
    demo(&[]);
}

/// With `--ensemble`: three ZooKeeper servers on 127.0.2.1-3, the tasks
/// given all three; the demo kills the ZooKeeper leader first, and the
/// group stays healthy with the same record.
#[test]
fn local_group_on_an_ensemble_survives_its_leader_and_fails_over() {
    let out = demo(&["--ensemble"]);
    assert!(out.contains("ZooKeeper at 127.0.2.1:"), "{out}");
    assert!(out.contains("ZooKeeper leader killed: the record stayed"), "{out}");
    // The status line shows the ensemble: a leader and two followers, then
    // one of them down.
    assert!(
        out.lines()
            .any(|l| l.contains("zk=") && l.contains("leader") && l.contains("down")),
        "{out}"
    );
}

#[test]
fn ctrl_c_stops_every_process_of_the_local_group() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (mut cmd, dir, _) = local_group(&[]);
    let dir_s = dir.display().to_string();
    cmd.stdout(std::process::Stdio::piped());
    // Its own process group, like a shell job: Ctrl-C reaches all of it.
    // SIGINT back to its default, as in a terminal: a test binary started
    // from a background job inherits it ignored, and bash can't trap a
    // signal ignored on entry (seen: a rehearsal started with `&` hung here).
    // SAFETY: setsid and signal are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run scripts/local-group.sh");
    let pgid = child.id() as i32;
    // A failed check below must not leave the group running.
    struct Stop(i32);
    impl Drop for Stop {
        fn drop(&mut self) {
            // SAFETY: plain kill(2) on the group we created.
            unsafe { libc::kill(-self.0, libc::SIGTERM) };
        }
    }
    let _stop = Stop(pgid);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let t0 = Instant::now();
    let mut seen = vec![];
    loop {
        let line = lines.next().expect("the script ended early").unwrap();
        seen.push(line.clone());
        if line.contains("=master") {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(90),
            "no status line with a master:\n{}",
            seen.join("\n")
        );
    }
    check_status_lines(&seen.join("\n"));
    // Every task's admin page, as the script printed it, answers 200.
    let urls: Vec<(String, u16, String)> = seen
        .iter()
        .filter_map(|l| {
            let rest = l.split("http://").nth(1)?;
            let (host, path) = rest.split_once('/')?;
            let (ip, port) = host.split_once(':')?;
            Some((ip.to_string(), port.parse().ok()?, format!("/{path}")))
        })
        .collect();
    assert_eq!(
        urls.len(),
        7,
        "an admin URL for each of the 7 tasks:\n{}",
        seen.join("\n")
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (ip, port, path) in &urls {
            wait_for(
                &format!("http://{ip}:{port}{path} to answer 200"),
                std::time::Duration::from_secs(60),
                || async {
                    match http_get(ip, *port, path).await {
                        Ok((200, _)) => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await;
        }
    });
    // SAFETY: plain kill(2) on the group we created.
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(
        rest.iter().any(|l| l.contains("stopped")),
        "no clean stop:\n{}",
        rest.join("\n")
    );
    assert_eq!(status.code(), Some(130), "exit status after Ctrl-C");
    let left = processes_using(&dir_s);
    assert!(
        left.is_empty(),
        "processes left running after Ctrl-C:\n{}",
        left.join("\n")
    );
}
