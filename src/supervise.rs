//! Running one child process, tini-style: no shell, signals forwarded, the
//! child's exit status passed on, and the child never outliving us.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not
//! when the process does. So each child is spawned from a dedicated thread that
//! then blocks in `wait()` for it: the thread lives exactly as long as the
//! child, and if the whole launcher is killed, the kernel kills the child too.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// A running child.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    exit: oneshot::Receiver<io::Result<ExitStatus>>,
    status: Option<ExitStatus>,
}

/// Starts `program` with `args` in `cwd`, under `umask 077` (Redis and
/// Sentinel re-create config files holding secrets on every rewrite), with
/// `PR_SET_PDEATHSIG(SIGKILL)`. No shell is involved: arguments reach the
/// program exactly as given.
pub async fn spawn(program: &Path, args: &[String], cwd: &Path) -> io::Result<Child> {
    let (pid_tx, pid_rx) = oneshot::channel::<io::Result<i32>>();
    let (exit_tx, exit_rx) = oneshot::channel();
    let program: PathBuf = program.to_path_buf();
    let args = args.to_vec();
    let cwd = cwd.to_path_buf();
    let parent = std::process::id() as libc::pid_t;
    std::thread::Builder::new().name("child-keeper".into()).spawn(move || {
        let mut cmd = Command::new(&program);
        // The children get their secrets from their config files; they need
        // not inherit them in their environment (/proc/<pid>/environ). The
        // configuration matches names ASCII-case-insensitively, so every
        // spelling it could have read is removed.
        cmd.args(&args).current_dir(&cwd).stdin(Stdio::null());
        for (name, _) in std::env::vars_os() {
            let upper = name.to_string_lossy().to_ascii_uppercase();
            if upper == "REDIS_PASSWORD" || upper == "ZK_DIGEST" {
                cmd.env_remove(&name);
            }
        }
        // SAFETY: only async-signal-safe libc calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::umask(0o077);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The launcher may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let _ = pid_tx.send(Ok(child.id() as i32));
                let _ = exit_tx.send(child.wait());
            }
            Err(e) => {
                let _ = pid_tx.send(Err(io::Error::new(e.kind(), format!("{}: {e}", program.display()))));
            }
        }
    })?;
    let pid = pid_rx
        .await
        .map_err(|_| io::Error::other("child-keeper thread died"))??;
    Ok(Child {
        pid,
        exit: exit_rx,
        status: None,
    })
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig` to the child, unless it has already been reaped (its pid
    /// could belong to someone else by then).
    pub fn signal(&mut self, sig: i32) {
        if self.try_status().is_some() {
            return;
        }
        // SAFETY: plain syscall.
        if unsafe { libc::kill(self.pid, sig) } != 0 {
            warn!(pid = self.pid, sig, error = %io::Error::last_os_error(), "could not signal child");
        }
    }

    /// The exit status, if the child has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.exit.try_recv() {
                Ok(r) => self.status = Some(r.unwrap_or_else(|_| ExitStatus::from_raw(1 << 8))),
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => self.status = Some(ExitStatus::from_raw(1 << 8)),
            }
        }
        self.status
    }

    /// Waits for the child to exit. Cancellation safe.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let status = match (&mut self.exit).await {
            Ok(Ok(s)) => s,
            // wait() failed or the keeper thread vanished: report a failure.
            _ => ExitStatus::from_raw(1 << 8),
        };
        self.status = Some(status);
        status
    }
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
    /// Installs the handlers.
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
    loop {
        tokio::select! {
            status = child.wait() => {
                let code = exit_code(status);
                info!(pid = child.pid(), code, "child exited");
                return code;
            },
            sig = signals.recv() => {
                tokio::select! {
                    _ = before_forward(sig) => {},
                    status = child.wait() => {
                        let code = exit_code(status);
                        info!(pid = child.pid(), code, "child exited");
                        return code;
                    },
                }
                info!(pid = child.pid(), sig, "forwarding signal to child");
                child.signal(sig);
            },
        }
    }
}
