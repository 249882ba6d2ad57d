//! Keeps a ZooKeeper session, and the ephemeral registrations that depend on
//! it, alive for as long as the child runs.
//!
//! Session expiry is final in zookeeper-client: the ephemeral nodes are gone
//! and the client is dead. The keeper notices (through the session state
//! watcher, not by polling), opens a new session with no deadline, creates the
//! registrations again and publishes the new [`Zk`] to whoever follows it. The
//! supervised child is never touched: Redis keeps serving while ZooKeeper is
//! away.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use zookeeper_client::SessionState;

use crate::backoff::Backoff;
use crate::metrics::metrics;
use crate::zk::Zk;

/// Ephemeral nodes to keep: (path, data).
type Registrations = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Handle to the keeper task. Dropping it stops the keeper; call
/// [`Keeper::shutdown`] to also remove the registrations at once.
pub struct Keeper {
    current: watch::Receiver<Zk>,
    ephemerals: Registrations,
    task: JoinHandle<()>,
    creators: Mutex<Vec<JoinHandle<()>>>,
}

impl Keeper {
    /// Starts keeping `zk`'s session.
    pub fn spawn(zk: Zk) -> Keeper {
        let (tx, rx) = watch::channel(zk);
        let ephemerals = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(keep(tx, ephemerals.clone()));
        Keeper {
            current: rx,
            ephemerals,
            task,
            creators: Mutex::new(Vec::new()),
        }
    }

    /// The current session.
    pub fn zk(&self) -> Zk {
        self.current.borrow().clone()
    }

    /// A receiver that changes whenever a new session replaces an expired one,
    /// for tasks that hold watches and must re-read state.
    pub fn subscribe(&self) -> watch::Receiver<Zk> {
        self.current.clone()
    }

    /// Creates the ephemeral node `path` (in the background, retrying
    /// transient errors, so the caller can go on supervising its child
    /// while ZooKeeper is away) and again after every session expiry.
    pub fn register(&self, path: &str, data: &[u8]) {
        let registration = (path.to_string(), data.to_vec());
        self.ephemerals.lock().expect("poisoned").push(registration.clone());
        let (zk, (path, data)) = (self.zk(), registration);
        let creator = tokio::spawn(async move { create_retrying(&zk, &path, &data).await });
        self.creators.lock().expect("poisoned").push(creator);
    }

    /// Stops keeping `path` and deletes it (best effort: it goes with the
    /// session otherwise).
    pub async fn unregister(&self, path: &str) {
        self.ephemerals.lock().expect("poisoned").retain(|(p, _)| p != path);
        remove(&self.zk(), path).await;
    }

    /// Stops the keeper and deletes the registrations (bounded by the
    /// session timeout), so peers see this task leave at once rather than
    /// after the session times out.
    pub async fn shutdown(self) {
        self.task.abort();
        for creator in self.creators.lock().expect("poisoned").drain(..) {
            creator.abort();
        }
        let (zk, list) = (self.zk(), self.ephemerals.lock().expect("poisoned").clone());
        for (path, _) in &list {
            remove(&zk, path).await;
        }
    }
}

/// Deletes the registration `path`; one left behind goes with the session.
async fn remove(zk: &Zk, path: &str) {
    match zk.delete(path).await {
        Ok(()) => info!(path = %path, "registration removed"),
        Err(e) => warn!(path = %path, error = %e, "could not remove registration; it expires with the session"),
    }
}

async fn create_retrying(zk: &Zk, path: &str, data: &[u8]) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        match zk.create_ephemeral(path, data).await {
            Ok(()) => {
                info!(path = %path, data = %String::from_utf8_lossy(data), "registered");
                return;
            }
            Err(e) if zk.client().state().is_terminated() => {
                // The keeper loop will open a new session and retry.
                warn!(path = %path, error = %e, "registration deferred until a new session");
                return;
            }
            Err(e) => {
                warn!(path = %path, error = %e, "registration failed; retrying");
                tokio::time::sleep(backoff.next_pause()).await;
            }
        }
    }
}

async fn keep(tx: watch::Sender<Zk>, ephemerals: Registrations) {
    loop {
        let zk = tx.borrow().clone();
        let mut states = zk.client().state_watcher();
        let mut state = zk.client().state();
        while !state.is_terminated() {
            state = states.changed().await;
            match state {
                SessionState::Disconnected => warn!("ZooKeeper connection lost; the session may still recover"),
                SessionState::SyncConnected => info!("ZooKeeper connection restored"),
                _ => {}
            }
        }
        if state == SessionState::Expired {
            metrics().zk_sessions_expired.inc();
        }
        error!(state = %state, "ZooKeeper session ended; opening a new one and re-registering");
        let cfg = zk.config().clone();
        drop(zk);
        let fresh = Zk::connect_forever(&cfg).await;
        let list = ephemerals.lock().expect("poisoned").clone();
        for (path, data) in &list {
            create_retrying(&fresh, path, data).await;
        }
        if tx.send(fresh).is_err() {
            return;
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut creators) = self.creators.lock() {
            creators.drain(..).for_each(|c| c.abort());
        }
    }
}
