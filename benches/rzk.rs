//! `cargo bench --bench rzk [-- --rounds N --sizes 5,10,30 --start-rounds N
//! --pong-rounds N --idle-secs N]`: the benchmark table of `BENCHMARKS.md`.
//! Run it through `scripts/bench.sh`, which installs what it needs first.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/bench.rs"]
mod bench;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match bench::Opts::from_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = rt.block_on(bench::run(&opts));
    println!("{}", report.table());
}
