//! Waiting for a freshly started child to answer in its intended role.

use std::time::Duration;

use tokio::time::{Instant, sleep};
use tracing::{error, info, warn};

use crate::model::{Endpoint, Role};
use crate::probe::Probe;
use crate::supervise::{Child, Signals, exit_code};

/// How long a new child may take to answer in its role. A server loading a
/// large dataset is slow, but the bootstrap lock is held meanwhile: a child
/// that never becomes ready (say a pass-through `--port` that moved it) must
/// not block every other launcher for ever.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(300);

/// How waiting for a new child ended.
pub enum Ready {
    /// It answers PING and its ROLE is the intended one.
    Yes,
    /// It exited first, with this launcher exit code.
    ChildExited(i32),
    /// A signal came first and was forwarded; supervise until it exits.
    Signalled,
}

/// Waits until the child at `local` answers PING and `ROLE` satisfies
/// `intended`, while watching the child and the signals.
pub async fn wait_ready(
    probe: &Probe,
    local: &Endpoint,
    intended: impl Fn(&Role) -> bool,
    child: &mut Child,
    signals: &mut Signals,
) -> Ready {
    let started = Instant::now();
    let mut last_log = Instant::now();
    loop {
        let ok = probe.role(local).await.is_ok_and(|r| intended(&r));
        if ok && probe.ping(local).await.is_ok() {
            info!(addr = %local, ms = started.elapsed().as_millis() as u64, "child answers in its intended role");
            return Ready::Yes;
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            warn!(addr = %local, waited_s = started.elapsed().as_secs(), "child not ready yet");
        }
        if started.elapsed() >= STARTUP_TIMEOUT {
            error!(addr = %local, timeout_s = STARTUP_TIMEOUT.as_secs(), "child never answered in its intended role; stopping it");
            child.stop(Duration::from_secs(10)).await;
            return Ready::ChildExited(1);
        }
        tokio::select! {
            _ = sleep(Duration::from_millis(50)) => {},
            status = child.wait() => {
                let code = exit_code(status);
                error!(code, "child exited before it was ready");
                return Ready::ChildExited(code);
            },
            sig = signals.recv() => {
                info!(sig, "signal while the child starts; forwarding");
                child.signal(sig);
                return Ready::Signalled;
            },
        }
    }
}
