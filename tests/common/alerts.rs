//! docs/alerts.yml against a real group: scrape every process's
//! `/metrics` healthy and in a fault, write the samples as promtool
//! `input_series` (the healthy values for 10 minutes, then the fault's for
//! 20), and run `promtool test rules`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use super::group::Member;
use super::wait_for;

/// One fault: its scrape, the alerts that must fire in it, and those that
/// must not.
pub struct Case {
    pub name: &'static str,
    pub phase: Scrape,
    pub fires: Vec<&'static str>,
    pub quiet: Vec<&'static str>,
}

/// One scrape of a group: every sample of every process scraped, by its
/// series (with the `job` and `instance` labels Prometheus would add).
pub type Scrape = BTreeMap<String, String>;

/// Scrapes `/metrics` of each of `members`.
pub async fn scrape(members: &[&Member]) -> Scrape {
    let mut out = Scrape::new();
    for m in members {
        let port = m.admin.unwrap();
        let (code, text) = m.admin_get("/metrics").await.unwrap();
        assert_eq!(code, 200, "/metrics of {}: {text}", m.addr());
        let added = format!("job=\"rzk\",instance=\"127.0.0.1:{port}\"");
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            if value.parse::<f64>().is_ok_and(|v| !v.is_finite()) {
                continue;
            }
            let series = match series.split_once('{') {
                Some((name, labels)) => format!("{name}{{{added},{labels}"),
                None => format!("{series}{{{added}}}"),
            };
            out.insert(series, value.to_string());
        }
    }
    out
}

/// The value of `name{…label…}` in `m`'s own `/metrics`.
pub async fn metric(m: &Member, name_and_label: &str) -> Result<f64, String> {
    let (_, text) = m.admin_get("/metrics").await?;
    let (name, label) = name_and_label.split_once('|').unwrap_or((name_and_label, ""));
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']) && l.contains(label))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
        .ok_or_else(|| format!("no {name_and_label} in {}'s metrics", m.addr()))
}

/// Waits until `m`'s `name|label` metric satisfies `ok`.
pub async fn wait_metric(m: &Member, name_and_label: &str, ok: impl Fn(f64) -> bool, timeout: Duration) {
    wait_for(&format!("{name_and_label} of {}", m.addr()), timeout, || async {
        let v = metric(m, name_and_label).await?;
        if ok(v) { Ok(v) } else { Err(format!("{v}")) }
    })
    .await;
}

/// One promtool test: the healthy scrape for 10 minutes, then `phase` for
/// 20; at minute 16, `fires` are firing and `quiet` are not even pending.
fn promtool_case(healthy: &Scrape, c: &Case) -> String {
    let (phase, name, fires, quiet) = (&c.phase, c.name, &c.fires, &c.quiet);
    let mut series: BTreeSet<&String> = healthy.keys().collect();
    series.extend(phase.keys());
    let mut out = format!("  # {name}\n  - interval: 1m\n    input_series:\n");
    for s in series {
        let before = healthy.get(s).map_or("_x9".to_string(), |v| format!("{v}x9"));
        let after = phase.get(s).map_or("stale".to_string(), |v| format!("{v}x20"));
        out += &format!(
            "      - series: '{}'\n        values: '{before} {after}'\n",
            s.replace('\'', "''")
        );
    }
    out += "    promql_expr_test:\n";
    for a in fires {
        out += &format!(
            "      - expr: count by (alertname) (ALERTS{{alertname=\"{a}\",alertstate=\"firing\"}})\n        eval_time: 16m\n        exp_samples:\n          - labels: '{{alertname=\"{a}\"}}'\n            value: 1\n"
        );
    }
    for a in quiet {
        out += &format!("      - expr: ALERTS{{alertname=\"{a}\"}}\n        eval_time: 16m\n        exp_samples: []\n");
    }
    out
}

/// Runs `promtool test rules` on docs/alerts.yml: nothing fires or is
/// pending in `healthy` (at 5, 16 and 30 minutes), and each case as it
/// says. Panics with promtool's report (and keeps the test file) when not.
pub fn promtool_test_rules(healthy: &Scrape, cases: &[Case]) {
    let mut file = format!(
        "rule_files:\n  - {}/docs/alerts.yml\nevaluation_interval: 1m\ntests:\n",
        env!("CARGO_MANIFEST_DIR")
    );
    file += "  # healthy\n  - interval: 1m\n    input_series:\n";
    for (s, v) in healthy {
        file += &format!(
            "      - series: '{}'\n        values: '{v}x30'\n",
            s.replace('\'', "''")
        );
    }
    file += "    promql_expr_test:\n";
    for at in ["5m", "16m", "30m"] {
        file += &format!("      - expr: ALERTS\n        eval_time: {at}\n        exp_samples: []\n");
    }
    for c in cases {
        file += &promtool_case(healthy, c);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts_test.yml");
    std::fs::write(&path, &file).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    if !out.status.success() {
        let kept = std::env::temp_dir().join(format!("rzk-alerts-{}.yml", std::process::id()));
        std::fs::write(&kept, &file).unwrap();
        panic!(
            "promtool test rules failed (the test file is kept in {}):\n{}{}",
            kept.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
