//! `rzkctl`, the operator's command: the group's status from the same
//! snapshot the launchers decide on ([`crate::policy::status`]).

use tracing::error;

use crate::config::CtlConfig;
use crate::observe::{Scope, observe};
use crate::policy::status::{status as group_status, table};
use crate::probe::{PROBE_TIMEOUT, Probe};
use crate::zk::Zk;

/// `rzkctl status [--json]`: prints the table (or JSON) and returns the exit
/// code: 0 healthy, 1 degraded or unreadable.
pub async fn status(cfg: CtlConfig, json: bool) -> i32 {
    let zk = match Zk::connect_read_only(&cfg.common.zk).await {
        Ok(zk) => zk,
        Err(e) => {
            error!(error = %e, "cannot read the group");
            return 1;
        }
    };
    let probe = Probe::new(cfg.common.password.clone(), PROBE_TIMEOUT);
    let scope = Scope {
        nodes: true,
        ..Scope::default()
    };
    let snap = match observe(&zk, &probe, &cfg.common.master_name, scope).await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot read the group");
            return 1;
        }
    };
    let s = group_status(&snap);
    if json {
        match serde_json::to_string_pretty(&s) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                error!(error = %e, "cannot encode the status");
                return 1;
            }
        }
    } else {
        print!("{}", table(&s));
    }
    if s.healthy { 0 } else { 1 }
}
