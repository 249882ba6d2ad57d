//! Which engine may replicate from which.
//!
//! Replication between the engines is one-way: a Redis (up to 7.2) master
//! can feed a Valkey replica, but Valkey 8 writes RDB version 11, which a
//! Redis 7.0 or 7.2 replica cannot load ("Can't handle RDB format version
//! 11"): it drops its own data for the full sync, fails to load the
//! master's, and starts again, for ever (valkey-io/valkey#845).

use crate::model::{Engine, EngineKind};

/// Why a server running `replica` must not become a replica of a master
/// running `master`; `None` when it may. An unknown engine on either side
/// is not refused (there is nothing to name).
pub fn replication_refused(master: &Engine, replica: &Engine) -> Option<String> {
    (master.kind == EngineKind::Valkey && replica.kind == EngineKind::Redis).then(|| {
        format!(
            "this server runs {replica} and the master runs {master}: a Redis replica cannot load a Valkey master's \
             data (its full sync would drop this server's data and then fail), so replication goes only from Redis \
             to Valkey; run this task with ENGINE=valkey (or a valkey-server REDIS_SERVER_BIN), or roll back only \
             while a Redis master still exists"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: EngineKind, v: &str) -> Engine {
        Engine {
            kind,
            version: v.into(),
        }
    }

    #[test]
    fn only_redis_from_valkey_is_refused() {
        let (redis, valkey) = (e(EngineKind::Redis, "7.0.15"), e(EngineKind::Valkey, "8.0.1"));
        assert_eq!(replication_refused(&redis, &redis), None);
        assert_eq!(replication_refused(&redis, &valkey), None);
        assert_eq!(replication_refused(&valkey, &valkey), None);
        let why = replication_refused(&valkey, &redis).unwrap();
        assert!(why.contains("redis 7.0.15") && why.contains("valkey 8.0.1"), "{why}");
    }
}
