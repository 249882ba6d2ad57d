#!/usr/bin/env bash
# Runs the benchmark (benches/rzk.rs) on a Debian machine, installing what it
# needs first, and prints one Markdown table: every figure over repeated
# rounds, next to a baseline measured in the same run (raw Sentinel, bare
# redis-server, bare ZooKeeper sessions). Real processes on loopback; it
# takes about 12 minutes with the defaults. Options go to the benchmark:
#   bash scripts/bench.sh --rounds 10 --sizes 5,10,30 --start-rounds 3 \
#        --pong-rounds 10 --forced-rounds 5 --crash-rounds 5 --idle-secs 60
#   bash scripts/bench.sh --only F     # one part: P6 P5 P2 T P2c F P3 P4
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
exec cargo bench --locked --bench rzk -- "$@"
