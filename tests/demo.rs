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
        // A read fails only for a process that has just ended (or a kernel
        // thread, which has none of these); otherwise it is an error, not
        // "mentions nothing".
        let read = |what: &str| -> Vec<u8> {
            match std::fs::read(p.join(what)) {
                Ok(b) => b,
                Err(_) if !pid_alive(pid) => vec![],
                // A kernel thread (or a process on its way out): no memory.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => vec![],
                // Another user's process (when not root) is not the demo's.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => vec![],
                Err(e) => panic!("{}/{what}: {e}", p.display()),
            }
        };
        let (cmdline, environ) = (read("cmdline"), read("environ"));
        let cwd = match std::fs::read_link(p.join("cwd")) {
            Ok(c) => c,
            Err(_) if !pid_alive(pid) => Default::default(),
            // A kernel thread has no cwd; another user's process is not the demo's.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                Default::default()
            }
            Err(e) => panic!("{}/cwd: {e}", p.display()),
        };
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
/// command and `GROUP_DIR`. With `--ensemble` the ZooKeeper servers also
/// take the two ports after `ZK_PORT`; every task has an admin port.
fn local_group(args: &[&str]) -> (Command, std::path::PathBuf) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_rzk-redis")).parent().unwrap();
    let dir = task().dir.join("group");
    let mut cmd = Command::new("bash");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/local-group.sh"))
        .args(args)
        .env("RZK_BIN_DIR", bin_dir)
        .env("GROUP_DIR", &dir)
        .env("ZK_PORT", (free_ports_after(3) + 1).to_string())
        .env("REDIS_PORT_BASE", three_free_ports_after().to_string())
        .env("SENTINEL_PORT_BASE", three_free_ports_after().to_string())
        .env("ADMIN_PORT_BASE", free_ports_after(7).to_string())
        // With --haproxy: writes on this port, reads 4 above it.
        .env("HAPROXY_PORT", (free_ports_after(5) + 1).to_string());
    (cmd, dir)
}

/// A status line's record is an address or nothing, never another
/// program's chatter (zkCli's output once raced its data into it), and
/// each line ends with `rzkctl status`'s verdict.
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

/// The entries of `dir`.
fn entries(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name())
        .collect()
}

/// Runs the demo and the Ctrl-C test one at a time: each brings up a group.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `scripts/local-group.sh`, optionally in a session of its own (`setsid`).
/// What it starts is not covered by this binary's parent-death signal, so
/// the guard kills the script and everything under it when it is dropped
/// while the script still runs (a failed check, a timeout). Without
/// `setsid` the script stays in this binary's process group, where a
/// Ctrl-C in a terminal and scripts/test.sh's timeout reach it.
struct Script {
    child: std::process::Child,
    pgid: Option<i32>,
}

/// `pid` and all its descendants (`/proc/<pid>/task/*/children`).
fn process_tree(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
            }
        }
        i += 1;
    }
    out
}

impl Script {
    fn spawn(mut cmd: Command, setsid: bool) -> Script {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid, setpgid and signal are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if setsid {
                    libc::setsid();
                    // SIGINT back to its default, as in a terminal: a test
                    // binary started from a background job inherits it
                    // ignored, and bash can't trap a signal ignored on
                    // entry (seen: a rehearsal started with `&` hung here).
                    libc::signal(libc::SIGINT, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("run scripts/local-group.sh");
        let pgid = setsid.then_some(child.id() as i32);
        Script { child, pgid }
    }

    /// Waits for the script to end, up to `timeout`.
    fn wait(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the script") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            for p in process_tree(self.child.id() as i32) {
                // SAFETY: plain kill(2) on processes this test started.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            if let Some(g) = self.pgid {
                // SAFETY: plain kill(2) on the group this test created.
                unsafe { libc::kill(-g, libc::SIGKILL) };
            }
            let _ = self.child.wait();
        }
    }
}

/// Runs `local-group.sh --demo` with `args`, waiting at most `limit`, and
/// checks what every demo shows; returns its output.
fn demo(args: &[&str], limit: std::time::Duration) -> String {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (mut cmd, dir) = local_group(args);
    let dir_s = dir.display().to_string();
    // A temporary directory of its own (TMPDIR, which the script and the
    // launchers use; the JVM writes only its shared hsperfdata to /tmp):
    // the machine's /tmp is shared with whatever else runs, and a diff of
    // it once blamed the demo for another checkout's /tmp/fm.log.
    let tmp = task().dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let t0 = Instant::now();
    // Its output goes to files beside the group's (the test's own scratch
    // directory), so that a hung script can be waited for with a deadline.
    let out_dir = task().dir;
    let (out_path, err_path) = (out_dir.join("demo.out"), out_dir.join("demo.err"));
    cmd.arg("--demo")
        .env("TMPDIR", &tmp)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let mut script = Script::spawn(cmd, false);
    let status = script.wait(limit);
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    let status = status.unwrap_or_else(|| panic!("the demo still runs after {limit:?}:\n{stdout}\n{stderr}"));
    eprintln!("MEASURE demo {args:?} took {:?}\n{stdout}", t0.elapsed());
    assert!(status.success(), "demo failed ({status:?}):\n{stdout}\n{stderr}");
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
    let left = entries(&tmp);
    assert!(
        left.is_empty(),
        "the demo left state in TMPDIR, outside its directory: {left:?}"
    );
    stdout
}

#[test]
fn local_group_demo_fails_over_and_cleans_up() {
    // The demo takes some 30 s here; four times that means it hangs.
    demo(&[], std::time::Duration::from_secs(120));
}

/// With `--ensemble --haproxy`: three ZooKeeper servers on 127.0.2.1-3, the
/// tasks given all three, and HAProxy in front with docs/haproxy.cfg; the
/// demo kills the ZooKeeper leader first, and the group
/// stays healthy with the same record; a write through the proxy's one
/// address succeeds before the master's task is killed and after the
/// record moved.
#[test]
fn local_group_on_an_ensemble_behind_haproxy_survives_its_leader_and_fails_over() {
    // 35-55 s here (a second Sentinel vote, 20 s later, once); the
    // script's own deadlines add up to 360 s.
    let out = demo(&["--ensemble", "--haproxy"], std::time::Duration::from_secs(360));
    assert_eq!(
        out.matches("a write through HAProxy (127.0.0.1:").count(),
        2,
        "a write through the proxy before and after the failover:\n{out}"
    );
    assert!(out.contains("writes:    redis-cli -h 127.0.0.1 -p "), "{out}");
    assert!(out.contains("ZooKeeper at 127.0.2.1:"), "{out}");
    assert!(out.contains("ZooKeeper leader killed: the record stayed"), "{out}");
    // The status line shows the ensemble: a leader, and a server down.
    assert!(
        out.lines()
            .any(|l| l.contains("zk=") && l.contains("leader") && l.contains("down")),
        "{out}"
    );
}

#[test]
fn ctrl_c_stops_every_process_of_the_local_group() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc::RecvTimeoutError;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (mut cmd, dir) = local_group(&[]);
    let dir_s = dir.display().to_string();
    cmd.stdout(std::process::Stdio::piped());
    // Its own session and process group, like a shell job: Ctrl-C reaches
    // all of it.
    let mut script = Script::spawn(cmd, true);
    let pgid = script.pgid.unwrap();
    // Lines arrive on a thread, so that every wait below has a deadline.
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = script.child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + std::time::Duration::from_secs(90);
    let mut seen = vec![];
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let master = line.contains("=master");
                seen.push(line);
                if master {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => panic!("no status line with a master in 90 s:\n{}", seen.join("\n")),
            Err(RecvTimeoutError::Disconnected) => panic!("the script ended early:\n{}", seen.join("\n")),
        }
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
    // It stops its launchers (each stops its server) and ZooKeeper.
    let status = script
        .wait(std::time::Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the group still runs 60 s after Ctrl-C"));
    // Its last lines (the reader ends when the pipe closes).
    let mut rest = vec![];
    let until = Instant::now() + std::time::Duration::from_secs(10);
    while let Ok(line) = lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
        rest.push(line);
    }
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
