//! Running one child process, tini-style: no shell, signals forwarded, the
//! child's exit status passed on, and the child never outliving us.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not
//! when the process does. Children are spawned with `tokio::process` on the
//! launcher's `current_thread` runtime, whose one thread is the main thread:
//! it lives exactly as long as the launcher, so if the launcher is killed,
//! the kernel kills the child too. [`spawn`] refuses any other runtime.
//!
//! The child is reaped and signalled from that same thread, and only while
//! `try_wait` says it has not been reaped yet: an unreaped child keeps its
//! pid (a zombie at worst), so a signal can never reach a process that
//! reused the pid.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{info, warn};

/// A running child.
#[derive(Debug)]
pub struct Child {
    inner: tokio::process::Child,
    pid: i32,
    status: Option<ExitStatus>,
}

/// A failure to wait for the child, reported as status 1.
fn failed() -> ExitStatus {
    ExitStatus::from_raw(1 << 8)
}

/// Starts `program` with `args` in `cwd`, under `umask 077` (Redis and
/// Sentinel re-create config files holding secrets on every rewrite), with
/// `PR_SET_PDEATHSIG(SIGKILL)`. No shell is involved: arguments reach the
/// program exactly as given.
pub async fn spawn(program: &Path, args: &[String], cwd: &Path) -> io::Result<Child> {
    if Handle::current().runtime_flavor() != RuntimeFlavor::CurrentThread {
        return Err(io::Error::other(
            "children must be spawned on a current_thread runtime: PR_SET_PDEATHSIG follows the spawning thread",
        ));
    }
    let parent = nix::unistd::getpid();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).current_dir(cwd).stdin(Stdio::null()).kill_on_drop(false);
    without_secrets(&mut cmd);
    crate::metrics::metrics().child_starts.inc();
    // SAFETY: only async-signal-safe system calls between fork and exec
    // (each of these nix functions is one system call).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)?;
            // The launcher may have died before prctl took effect: then
            // the child must not run (the error makes it exit at once).
            if nix::unistd::getppid() != parent {
                return Err(io::Error::other("the launcher died before its child started"));
            }
            Ok(())
        });
    }
    let inner = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", program.display())))?;
    let pid = inner
        .id()
        .ok_or_else(|| io::Error::other("child exited before its pid was read"))? as i32;
    Ok(Child {
        inner,
        pid,
        status: None,
    })
}

impl Child {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig` to the child, unless it has already been reaped (its pid
    /// could belong to someone else by then).
    pub fn signal(&mut self, sig: i32) {
        if self.try_status().is_some() {
            return;
        }
        // The child is not reaped, so its pid is still its own (see the
        // module documentation).
        let sent = nix::sys::signal::Signal::try_from(sig)
            .and_then(|s| nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), s));
        if let Err(e) = sent {
            warn!(pid = self.pid, sig, error = %e, "could not signal child");
        }
    }

    /// The exit status, if the child has exited (reaping it then).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.inner.try_wait().unwrap_or_else(|_| Some(failed()));
        }
        self.status
    }

    /// Waits for the child to exit. Cancellation safe.
    pub async fn wait(&mut self) -> ExitStatus {
        match self.status {
            Some(s) => s,
            None => *self.status.insert(self.inner.wait().await.unwrap_or_else(|_| failed())),
        }
    }

    /// SIGTERM, then SIGKILL if the child has not exited within `grace`;
    /// returns once it is reaped.
    pub async fn stop(&mut self, grace: std::time::Duration) {
        self.signal(libc::SIGTERM);
        if tokio::time::timeout(grace, self.wait()).await.is_err() {
            self.signal(libc::SIGKILL);
            self.wait().await;
        }
    }
}

/// Removes the secrets from a child's environment. The children get
/// their secrets from their config files; they need not inherit them in
/// their environment (/proc/<pid>/environ). The configuration matches names
/// ASCII-case-insensitively, so every spelling it could have read is
/// removed.
fn without_secrets(cmd: &mut tokio::process::Command) {
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_ascii_uppercase();
        if ["REDIS_PASSWORD", "ZK_DIGEST", "REDIS_PASSWORD_FILE", "ZK_DIGEST_FILE"].contains(&upper.as_str()) {
            cmd.env_remove(&name);
        }
    }
}

/// How long `<server program> --version` may take.
const VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The engine of a server program, from its `--version` line (`Redis
/// server v=7.0.15 …`, `Valkey server v=8.0.1 …`): what the server will
/// run, known before it starts and touches any data. Not a child start:
/// the program only prints and exits.
pub async fn program_engine(program: &Path) -> Result<crate::model::Engine, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    without_secrets(&mut cmd);
    let program = program.display();
    let out = tokio::time::timeout(VERSION_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("{program} --version did not answer within {VERSION_TIMEOUT:?}"))?
        .map_err(|e| format!("{program} --version: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    crate::reply::engine_of_version_line(&text)
        .ok_or_else(|| format!("{program} --version said {:?}, neither Redis nor Valkey", text.trim()))
}

/// The launcher's exit code for a child status: its code, or 128+signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The signals a launcher forwards: SIGTERM, SIGINT, SIGHUP. Installed at
/// start, so a signal that arrives before the child runs is seen too.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub fn new() -> io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal and returns its number.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.int.recv() => libc::SIGINT,
            _ = self.hup.recv() => libc::SIGHUP,
        }
    }
}

/// Supervises `child` until it exits, forwarding every signal, and returns
/// the launcher's exit code.
pub async fn supervise(child: &mut Child, signals: &mut Signals) -> i32 {
    supervise_with(child, signals, |_| std::future::ready(())).await
}

/// Like [`supervise`], but runs `before_forward(sig)` before each signal is
/// forwarded (the master's planned hand-over on SIGTERM). If the child exits
/// meanwhile, its status wins; the hook bounds its own duration.
pub async fn supervise_with<F, Fut>(child: &mut Child, signals: &mut Signals, mut before_forward: F) -> i32
where
    F: FnMut(i32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let status = loop {
        let sig = tokio::select! {
            status = child.wait() => break status,
            sig = signals.recv() => sig,
        };
        tokio::select! {
            _ = before_forward(sig) => {},
            status = child.wait() => break status,
        }
        info!(pid = child.pid(), sig, "forwarding signal to child");
        child.signal(sig);
    };
    let code = exit_code(status);
    info!(pid = child.pid(), code, "child exited");
    code
}
