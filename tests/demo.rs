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

/// A base B such that B+1..=B+3 are free (the script's port scheme); the
/// harness hands out free ports in ascending order, so three in a row usually
/// are consecutive.
fn three_free_ports_after() -> u16 {
    for _ in 0..50 {
        let ports: Vec<u16> = (0..3).map(|_| task().port).collect();
        if ports[1] == ports[0] + 1 && ports[2] == ports[0] + 2 {
            return ports[0] - 1;
        }
    }
    panic!("no three consecutive free ports");
}

#[test]
fn local_group_demo_fails_over_and_cleans_up() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_rzk-redis")).parent().unwrap();
    let dir = task().dir.join("group");
    let dir_s = dir.display().to_string();
    let redis_base = three_free_ports_after();
    let sentinel_base = three_free_ports_after();
    let zk_port = task().port;
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/local-group.sh"))
        .arg("--demo")
        .env("RZK_BIN_DIR", bin_dir)
        .env("GROUP_DIR", &dir)
        .env("ZK_PORT", zk_port.to_string())
        .env("REDIS_PORT_BASE", redis_base.to_string())
        .env("SENTINEL_PORT_BASE", sentinel_base.to_string())
        .output()
        .expect("run scripts/local-group.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("MEASURE demo took {:?}\n{stdout}", t0.elapsed());
    assert!(
        out.status.success(),
        "demo failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("record moved:") && stdout.contains("DEMO OK"),
        "{stdout}"
    );
    let left = processes_using(&dir_s);
    assert!(
        left.is_empty(),
        "processes left running after the demo:\n{}",
        left.join("\n")
    );
    let outside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !outside.is_empty(),
        "the demo should have written its state into GROUP_DIR"
    );
}
