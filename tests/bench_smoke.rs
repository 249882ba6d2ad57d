//! The benchmark runs: one round of every part but T (TLS on vs off; see
//! `Opts::tiny`), with tiny counts. It asserts that every figure was
//! measured, never how fast (times belong to `scripts/bench.sh`, not to
//! `cargo test`).

mod common;
#[path = "common/bench.rs"]
mod bench;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_measures_every_figure() {
    let report = bench::run(&bench::Opts::tiny()).await;
    let table = report.table();
    eprintln!("{table}");
    // P1 has no baseline: raw Sentinel has no record to move.
    let p1 = report.row("P1").unwrap_or_else(|| panic!("no row P1 in\n{table}"));
    assert_eq!(p1.ours.0.len(), 1, "P1 lacks its sample:\n{table}");
    for id in ["P2", "P2s", "P2c", "F1", "F2", "F3", "P3 N=3", "P5", "P6", "ZK", "CMD"] {
        let row = report.row(id).unwrap_or_else(|| panic!("no row {id} in\n{table}"));
        assert!(
            !row.ours.0.is_empty() && !row.base.0.is_empty(),
            "row {id} lacks samples:\n{table}"
        );
    }
    for kind in ["rzk-redis", "rzk-sentinel", "rzk-watcher"] {
        for id in [format!("P4 {kind}"), format!("CPU {kind}")] {
            let row = report.row(&id).unwrap_or_else(|| panic!("no row {id} in\n{table}"));
            assert!(
                !row.ours.0.is_empty() && !row.base.0.is_empty(),
                "row {id} lacks samples:\n{table}"
            );
            assert!(
                row.ours.0.iter().all(|v| v.is_finite() && *v >= 0.0),
                "row {id}: {:?}",
                row.ours.0
            );
        }
    }
    // RSS is read from /proc: a zero would mean the launcher was gone.
    let rss = report.row("P4 rzk-redis").unwrap();
    assert!(
        rss.ours.0.iter().all(|v| *v > 0.5),
        "launcher RSS {:?} MB: was it running?",
        rss.ours.0
    );
}
