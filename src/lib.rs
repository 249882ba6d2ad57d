//! redis-zk: highly available Redis with Sentinel on DC/OS/Marathon, where
//! ZooKeeper is the meeting point for tasks that land on unknown hosts and
//! ports.
//!
//! The modules read in the data's own order. Each one uses only modules
//! listed before it, and the pure ones (marked *pure*) use no I/O at all
//! (`tests/layering.rs` checks both):
//!
//! 1. [`model`] (*pure*): the shared types (addresses, roles, the record,
//!    the switchover intent); [`backoff`] (*pure*), the one retry pace;
//!    [`metrics`], the process's counters and gauges; [`tls`], the
//!    certificate files, checked, and the one copy in service.
//! 2. [`zk::settings`]: how ZooKeeper is reached and the `ZK_HOSTS`
//!    grammar (the rest of [`zk`] comes later).
//! 3. [`config`]: the one table of variables, parsed and validated.
//! 4. [`reply`] (*pure*): every reply parser; [`snapshot`] (*pure*): one
//!    look at the group, immutable.
//! 5. Access to the outside: [`zk`] (the coordination store, one small
//!    interface), [`probe`] (Redis and Sentinel), [`render`] (the generated
//!    config files).
//! 6. [`observe`]: the I/O of a look, and the one observer of a process.
//! 7. [`policy`] (*pure*): functions from a snapshot to what to do;
//!    [`view`] (*pure*): the admin pages and the status table.
//! 8. [`datadir`]: the launcher's own files in `DATA_DIR` (the replication
//!    mark and the kept copy of diverged data); [`act`]: the one place that
//!    performs actions, fenced as each kind needs.
//! 9. The process side: [`logging`], [`supervise`] (the child), [`session`]
//!    (keeping a ZooKeeper session and its registrations), [`startup`] (the
//!    machine checks before a launcher starts, and handing `DATA_DIR` over),
//!    [`admin`] (the admin HTTP API, serving what the launchers publish).
//! 10. [`launch`]: the three launchers; [`ctl`], the operator's `rzkctl`;
//!     and [`cli`], the binaries' `main`.

pub mod model;
pub mod backoff;
pub mod metrics;
pub mod tls;
pub mod config;
pub mod reply;
pub mod snapshot;
pub mod zk;
pub mod probe;
pub mod render;
pub mod observe;
pub mod policy;
pub mod view;
pub mod datadir;
pub mod act;
pub mod logging;
pub mod supervise;
pub mod session;
pub mod startup;
pub mod admin;
pub mod launch;
pub mod ctl;
pub mod cli;
