//! redis-zk: highly available Redis with Sentinel on DC/OS/Marathon, where
//! ZooKeeper is the meeting point for tasks that land on unknown hosts and
//! ports.
//!
//! The modules read in the data's own order. Each one uses only modules
//! listed before it (`tests/layering.rs` checks this):
//!
//! 1. [`model`]: the shared types (addresses, roles, the record), and
//!    [`backoff`], the one retry pace, and [`metrics`], the process's
//!    counters and gauges; no dependencies.
//! 2. [`zk::settings`]: how ZooKeeper is reached and the `ZK_HOSTS`
//!    grammar (the rest of [`zk`] comes after [`config`]).
//! 3. [`config`]: environment variables, parsed and validated; no side
//!    effects.
//! 4. Access to the outside: [`zk`] (the coordination store, one small
//!    interface), [`probe`] (Redis and Sentinel), [`render`] (the generated
//!    config files), [`events`] (Sentinel's pub/sub payloads).
//! 5. [`observe`]: one look at the group, an immutable [`observe::Snapshot`].
//! 6. [`policy`]: pure functions from a snapshot to actions.
//! 7. [`act`]: the one place that performs actions, fenced by the session
//!    that observed.
//! 8. The process side: [`logging`], [`supervise`] (the child), [`session`]
//!    (keeping a ZooKeeper session and its registrations), [`startup`] (the
//!    machine checks before a launcher starts), [`admin`] (the admin HTTP
//!    API, serving what the launchers publish).
//! 9. [`launch`]: the three launchers; [`ctl`], the operator's `rzkctl`;
//!    and [`cli`], the binaries' `main`.

pub mod model;
pub mod backoff;
pub mod metrics;
pub mod config;
pub mod reply;
pub mod snapshot;
pub mod zk;
pub mod probe;
pub mod render;
pub mod observe;
pub mod policy;
pub mod view;
pub mod act;
pub mod logging;
pub mod supervise;
pub mod session;
pub mod startup;
pub mod admin;
pub mod launch;
pub mod ctl;
pub mod cli;
