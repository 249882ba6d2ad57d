//! redis-zk: highly available Redis with Sentinel on DC/OS/Marathon, where
//! ZooKeeper is the meeting point for tasks that land on unknown hosts and
//! ports.
//!
//! The modules read in the data's own order: [`config`] → [`endpoint`] →
//! [`zk`] (and [`session`]) → [`discover`] / [`decide`] and [`promotion`]
//! (pure rules) → [`supervise`], with [`node`] tying them together for
//! `rzk-redis`.

pub mod cli;
pub mod conf;
pub mod config;
pub mod decide;
pub mod discover;
pub mod endpoint;
pub mod events;
pub mod guard;
pub mod handover;
pub mod logging;
pub mod node;
pub mod probe;
pub mod promotion;
pub mod sentinel;
pub mod session;
pub mod supervise;
pub mod task;
pub mod watcher;
pub mod zk;
