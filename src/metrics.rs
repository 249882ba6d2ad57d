//! The process's metrics, served on `/metrics` in Prometheus' text format
//! 0.0.4.
//!
//! One registry per process, reached through [`metrics()`], so that the
//! place where something happens (a record write in [`crate::zk`], a guard
//! action in the launcher) counts it without carrying a handle through
//! every layer. The gauges are set from the same snapshot the admin pages
//! show; the counters only ever go up. Every name carries the `rzk_`
//! prefix. A process that serves no `ADMIN_PORT` still counts; nobody
//! reads it, and a counter costs an atomic add.

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// `rzk_info{binary, group}`: 1, naming the binary (`rzk-redis`,
    /// `rzk-sentinel`, `rzk-watcher`) and its group (the ZooKeeper path of
    /// `ZK_ROOT`, chroot included): what alerting rules join on to count a
    /// group's servers, whatever the scrape jobs.
    pub info: IntGaugeVec,
    /// `rzk_zk_sessions_expired_total`: ZooKeeper sessions that expired
    /// (and were replaced by a new one).
    pub zk_sessions_expired: IntCounter,
    /// `rzk_role{role}`: 1 for the role the supervised server answers
    /// (`master`, `replica`), 0 for the other; both 0 when it does not answer.
    pub role: IntGaugeVec,
    /// `rzk_zk_session{state}`: 1 for the current ZooKeeper session state
    /// (`connected`, `suspended`, `expired`).
    pub zk_session: IntGaugeVec,
    /// `rzk_record_matches`: 1 when `<root>/master` agrees with what this
    /// process serves or sees (see the admin API).
    pub record_matches: IntGauge,
    /// `rzk_ready`: 1 when `/ready` answers 200.
    pub ready: IntGauge,
    /// `rzk_repl_offset_bytes`: the server's replication offset.
    pub repl_offset: IntGauge,
    /// `rzk_repl_lag_bytes`: how far a replica is behind its master.
    pub repl_lag: IntGauge,
    /// `rzk_promotable`: 1 when the server may be promoted by Sentinel (a
    /// replica that finished its first sync, with priority above 0).
    pub promotable: IntGauge,
    /// `rzk_record_writes_total`: successful writes of `<root>/master`.
    pub record_writes: IntCounter,
    /// `rzk_record_cas_conflicts_total`: record writes that lost the
    /// compare-and-set race (and were decided again).
    pub cas_conflicts: IntCounter,
    /// `rzk_takeovers_total`: takeovers after total loss.
    pub takeovers: IntCounter,
    /// `rzk_guard_actions_total{action}`: `repoint` and `demote`.
    pub guard_actions: IntCounterVec,
    /// `rzk_ghost_resets_total`: `SENTINEL RESET`s sent to clear dead peers.
    pub ghost_resets: IntCounter,
    /// `rzk_handovers_total{outcome}`: `done`, `skipped`, `unsafe`,
    /// `aborted`, `timeout` (`switchover::Outcome::label`).
    pub handovers: IntCounterVec,
    /// `rzk_handover_duration_seconds`: how long each hand-over took.
    pub handover_seconds: Histogram,
    /// `rzk_child_starts_total`: child processes started. The launchers
    /// never restart a child (its exit ends the task, and Marathon starts
    /// a new one), so this is 1 in a healthy task.
    pub child_starts: IntCounter,
    /// `rzk_admin_rejected_total`: admin connections closed unanswered
    /// because the concurrency bound was reached.
    pub admin_rejected: IntCounter,
    /// `rzk_fenced`: 1 while the master refuses writes because its
    /// Sentinels' lease ran out (contract section 8).
    pub fenced: IntGauge,
    /// `rzk_fences_total`: times the master was fenced.
    pub fences: IntCounter,
    /// `rzk_frozen`: 1 while a failover of this master is under way and
    /// its writes are paused.
    pub frozen: IntGauge,
    /// `rzk_failover_freezes_total{outcome}`: freezes of this master for a
    /// failover it did not start, by how they ended (`done`, `aborted`,
    /// `timeout`).
    pub failover_freezes: IntCounterVec,
    /// `rzk_crash_failovers_total{outcome}`: the server died as master:
    /// `done` (the Sentinels named a new master), `skipped` (not asked
    /// for: no promotable replica, fenced, a failover already running),
    /// `aborted` (refused or given up), `timeout`.
    pub crash_failovers: IntCounterVec,
    /// `rzk_diverged_copy`: 1 while `DATA_DIR` keeps a copy of data a full
    /// sync replaced, which may hold writes the master never had.
    pub diverged_copy: IntGauge,
    /// `rzk_diverged_copies_total`: copies kept.
    pub diverged_copies: IntCounter,
    /// `rzk_paused`: 1 while the group is paused (`rzkctl pause`).
    pub paused: IntGauge,
    /// `rzk_pause_until_seconds`: when the pause ends (Unix seconds; 0
    /// while there is none).
    pub pause_until: IntGauge,
    /// `rzk_engine_info{engine,version}`: 1 for the engine and version the
    /// supervised server answers in `INFO server` (`redis` or `valkey`);
    /// no series before it first answered.
    pub engine_info: IntGaugeVec,
    /// `rzk_tls_reloads_total{outcome}`: changed TLS files taken into
    /// service (`loaded`) or refused (`refused`: the old ones stay).
    pub tls_reloads: IntCounterVec,
    /// `rzk_tls_cert_not_after_seconds{link}`: when the certificate in
    /// service expires (Unix seconds), for `redis` (the Redis and Sentinel
    /// links and the admin API) and `zookeeper`; no series without TLS.
    pub tls_not_after: IntGaugeVec,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Registers `m`, just made from fixed names: neither step can fail.
fn reg<M: Collector + Clone + 'static>(r: &Registry, m: prometheus::Result<M>) -> M {
    let m = m.expect("valid metric name");
    r.register(Box::new(m.clone())).expect("metric registered once");
    m
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("rzk")
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    reg(r, IntGauge::with_opts(opts(name, help)))
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(r, IntCounter::with_opts(opts(name, help)))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(r, IntGaugeVec::new(opts(name, help), labels))
}

fn counter_vec(r: &Registry, name: &str, help: &str, label: &str, values: &[&str]) -> IntCounterVec {
    let c = reg(r, IntCounterVec::new(opts(name, help), &[label]));
    // Every series exists from the start, at 0: a rate over a series that
    // appears only on its first event misses that event.
    for v in values {
        c.with_label_values(&[v]);
    }
    c
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let buckets = vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0];
        let handover = HistogramOpts::new("handover_duration_seconds", "How long each SIGTERM hand-over took");
        let m = Metrics {
            info: gauge_vec(
                &r,
                "info",
                "1, naming this process's binary and group",
                &["binary", "group"],
            ),
            zk_sessions_expired: counter(
                &r,
                "zk_sessions_expired_total",
                "ZooKeeper sessions that expired and were replaced",
            ),
            role: gauge_vec(&r, "role", "1 for the role the supervised server answers", &["role"]),
            zk_session: gauge_vec(&r, "zk_session", "1 for the ZooKeeper session's state", &["state"]),
            record_matches: gauge(
                &r,
                "record_matches",
                "1 when <root>/master agrees with this process's view",
            ),
            ready: gauge(&r, "ready", "1 when /ready answers 200"),
            repl_offset: gauge(&r, "repl_offset_bytes", "Replication offset of the supervised server"),
            repl_lag: gauge(&r, "repl_lag_bytes", "Bytes a replica is behind its master"),
            promotable: gauge(&r, "promotable", "1 when Sentinel may promote this replica"),
            record_writes: counter(&r, "record_writes_total", "Successful writes of <root>/master"),
            cas_conflicts: counter(
                &r,
                "record_cas_conflicts_total",
                "Record writes that lost the compare-and-set",
            ),
            takeovers: counter(&r, "takeovers_total", "Takeovers after the loss of every master"),
            guard_actions: counter_vec(
                &r,
                "guard_actions_total",
                "Role guard actions",
                "action",
                &["repoint", "demote"],
            ),
            ghost_resets: counter(&r, "ghost_resets_total", "SENTINEL RESETs sent to forget dead peers"),
            handovers: counter_vec(
                &r,
                "handovers_total",
                "SIGTERM hand-overs by outcome",
                "outcome",
                &["done", "skipped", "unsafe", "aborted", "timeout"],
            ),
            handover_seconds: reg(&r, Histogram::with_opts(handover.namespace("rzk").buckets(buckets))),
            child_starts: counter(&r, "child_starts_total", "Child processes started"),
            admin_rejected: counter(
                &r,
                "admin_rejected_total",
                "Admin connections refused at the concurrency bound",
            ),
            fenced: gauge(
                &r,
                "fenced",
                "1 while this master refuses writes: no witness confirmed it",
            ),
            fences: counter(&r, "fences_total", "Times this master was fenced"),
            frozen: gauge(
                &r,
                "frozen",
                "1 while a failover of this master is under way and its writes are paused",
            ),
            failover_freezes: counter_vec(
                &r,
                "failover_freezes_total",
                "Freezes for a failover this launcher did not start, by outcome",
                "outcome",
                &["done", "aborted", "timeout"],
            ),
            crash_failovers: counter_vec(
                &r,
                "crash_failovers_total",
                "Failovers asked for when the server died as master, by outcome",
                "outcome",
                &["done", "skipped", "aborted", "timeout"],
            ),
            diverged_copy: gauge(
                &r,
                "diverged_copy",
                "1 while DATA_DIR keeps a copy of data a full sync replaced",
            ),
            diverged_copies: counter(&r, "diverged_copies_total", "Copies of diverged data kept aside"),
            paused: gauge(&r, "paused", "1 while the group is paused: no failover, no role change"),
            pause_until: gauge(
                &r,
                "pause_until_seconds",
                "When the pause ends, in Unix seconds (0: not paused)",
            ),
            engine_info: gauge_vec(
                &r,
                "engine_info",
                "1 for the engine and version the supervised server runs",
                &["engine", "version"],
            ),
            tls_reloads: counter_vec(
                &r,
                "tls_reloads_total",
                "Changed TLS files taken into service or refused",
                "outcome",
                &["loaded", "refused"],
            ),
            tls_not_after: gauge_vec(
                &r,
                "tls_cert_not_after_seconds",
                "When the TLS certificate in service expires, in Unix seconds",
                &["link"],
            ),
            registry: r,
        };
        // Every series of these two exists from the start, at 0.
        m.set_role(None);
        m.set_zk_session("");
        m
    }

    /// Sets `rzk_info{binary, group}` to 1.
    pub fn set_info(&self, binary: &str, group: &str) {
        self.info.with_label_values(&[binary, group]).set(1);
    }

    /// Sets `rzk_role`: `role` is `"master"`, `"replica"` or `None`.
    pub fn set_role(&self, role: Option<&str>) {
        for r in ["master", "replica"] {
            self.role.with_label_values(&[r]).set(i64::from(role == Some(r)));
        }
    }

    /// Sets `rzk_engine_info` to the one engine the server answered with
    /// (the server is never restarted by this process, so the last one
    /// known stays while it does not answer).
    pub fn set_engine(&self, engine: Option<(&str, &str)>) {
        if let Some((engine, version)) = engine
            && !self
                .engine_info
                .get_metric_with_label_values(&[engine, version])
                .is_ok_and(|g| g.get() == 1)
        {
            self.engine_info.reset();
            self.engine_info.with_label_values(&[engine, version]).set(1);
        }
    }

    /// Sets `rzk_zk_session` to `state` (`connected`, `suspended`, `expired`).
    pub fn set_zk_session(&self, state: &str) {
        for s in ["connected", "suspended", "expired"] {
            self.zk_session.with_label_values(&[s]).set(i64::from(state == s));
        }
    }

    /// The whole registry in Prometheus' text format 0.0.4.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::with_capacity(4096);
        // Encoding our own well-formed metrics into memory cannot fail.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_there_from_the_start_and_prefixed() {
        let m = metrics();
        m.set_role(Some("replica"));
        m.set_zk_session("connected");
        m.set_engine(Some(("redis", "7.0.15")));
        m.set_engine(None);
        m.set_engine(Some(("valkey", "8.0.1")));
        let text = m.render();
        assert!(!text.contains("version=\"7.0.15\""), "{text}");
        for line in [
            "rzk_role{role=\"master\"} 0",
            "rzk_role{role=\"replica\"} 1",
            "rzk_zk_session{state=\"connected\"} 1",
            "rzk_handovers_total{outcome=\"unsafe\"} 0",
            "rzk_handovers_total{outcome=\"aborted\"} 0",
            "rzk_guard_actions_total{action=\"demote\"} 0",
            "# TYPE rzk_handover_duration_seconds histogram",
            "rzk_engine_info{engine=\"valkey\",version=\"8.0.1\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("rzk_"), "unprefixed: {line}");
        }
    }
}
