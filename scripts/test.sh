#!/usr/bin/env bash
# Runs the whole test suite on a Debian machine, installing what it needs
# first. The tests start their own ZooKeeper, redis-server and redis-sentinel
# processes on loopback addresses.
#
#   bash scripts/test.sh                 the whole suite, test binaries in lanes
#   bash scripts/test.sh --test chaos    any arguments: plain `cargo test --locked …`
#
# Why lanes: most of the suite's time is spent waiting (Sentinel's down-after,
# failover timeouts, ZooKeeper session expiry), not computing, and `cargo test`
# runs its test binaries one after the other. So the binaries are built once
# and then run RZK_TEST_JOBS at a time (default 2), longest first. Each binary
# has its own ZooKeeper, its own ports, and its own namespace and bridge names,
# so binaries never share anything but the CPU. A binary's output is printed
# in one piece when it ends, followed by a table of every binary's time.
set -euo pipefail
cd "$(dirname "$0")/.."
RZK_TEST_DEPS=1 source scripts/deps.sh
# The build (target/, about 0.8 GB) and the image test's base image and
# buildah storage (about 0.6 GB under /var/tmp) need room; say so up front
# rather than as a linker's bus error halfway through.
for dir in . /var/tmp; do
  free_mb=$(df -Pm "$dir" | awk 'NR == 2 { print $4 }')
  if [ "${free_mb:-0}" -lt 2048 ]; then
    echo "warning: only ${free_mb} MB free on the file system of $dir; the suite needs about 1.5 GB (target/ 0.8 GB, image storage 0.6 GB)" >&2
  fi
done
if (($#)); then
  exec cargo test --locked "$@"
fi

jobs=${RZK_TEST_JOBS:-2}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "RZK_TEST_JOBS=$jobs: expected a whole number of parallel test binaries, at least 1" >&2; exit 2; }
# A test binary that runs longer than this is stuck: it is killed (and its
# children with it, by their parent-death signal) and counted as failed.
limit=${RZK_TEST_BINARY_TIMEOUT:-900}

work=$(mktemp -d /tmp/rzk-test-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$SECONDS

# Build every test target once; the JSON names each test executable.
cargo test --locked --no-run --message-format=json-render-diagnostics >"$work/build.json"
jq -r 'select(.reason == "compiler-artifact" and .profile.test and .executable != null)
       | "\(.target.kind[0]):\(.target.name) \(.executable)"' "$work/build.json" >"$work/all"
build_secs=$((SECONDS - start))

# Longest first (by their times in a sequential run: 245 s down to 10 s), so
# that the lanes end close together. The rest (under 10 s each) follow.
slow="failover promotion partition chaos bench_smoke image demo write_fence security admin rzkctl zk_faults proxy persistence redis_bootstrap"
{
  for name in $slow; do grep "^test:$name " "$work/all" || true; done
  grep -v -E "^test:($(tr ' ' '|' <<<"$slow")) " "$work/all" || true
} | awk '{ print NR - 1, $0 }' >"$work/queue"
slots=$(wc -l <"$work/queue")
((slots <= 60)) || { echo "$slots test binaries: more than the 60 port ranges tests/common/mod.rs splits its ports into" >&2; exit 1; }

run_one() {
  local slot=$1 name=$2 exe=$3 out t0 rc=0
  out="$work/out.${name//[^A-Za-z0-9_]/_}"
  t0=$SECONDS
  # Its own share of the test port range (see free_port in tests/common).
  RZK_TEST_PORT_SLOT=$slot RZK_TEST_PORT_SLOTS=$slots \
    timeout --kill-after=30 "$limit" "$exe" >"$out" 2>&1 || rc=$?
  ((rc != 124)) || echo "test binary $name killed after ${limit}s (RZK_TEST_BINARY_TIMEOUT)" >>"$out"
  # One binary's output in one piece, never interleaved with another's.
  {
    flock 9
    echo "──── $name ($exe): exit $rc after $((SECONDS - t0))s"
    cat "$out"
    printf '%s %s %s\n' "$rc" "$((SECONDS - t0))" "$name" >>"$work/results"
  } 9>"$work/lock"
  return 0
}
: >"$work/results"
export -f run_one
export work limit slots
xargs -P "$jobs" -L 1 bash -c 'run_one "$@"' _ <"$work/queue"

# A binary killed by the timeout never ran its clean-up: remove the network
# namespaces, bridges and veths the namespace tests create (all named rzk…).
if awk '$1 == 124 || $1 == 137 { found = 1 } END { exit !found }' "$work/results"; then
  for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^rzk/ { print $1 }'); do
    echo "removing network namespace $ns left by a killed test binary" >&2
    ip netns del "$ns" || true
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^rzk/ { sub(/@.*/, "", $2); print $2 }'); do
    echo "removing link $link left by a killed test binary" >&2
    ip link del "$link" 2>/dev/null || true
  done
fi

# Doc tests are not executables of their own; cargo runs them.
doc_rc=0
cargo test --locked --doc -q || doc_rc=$?

echo
echo "test binaries ($jobs at a time), slowest first; build ${build_secs}s, all $((SECONDS - start))s:"
sort -k2,2nr "$work/results" | awk '{ printf "  %-32s %5ss  %s\n", $3, $2, ($1 == 0 ? "ok" : "FAILED (exit " $1 ")") }'
failed=$(awk '$1 != 0 { print $3 }' "$work/results")
expected=$(wc -l <"$work/queue")
ran=$(wc -l <"$work/results")
if [ -n "$failed" ] || ((ran != expected)) || ((doc_rc != 0)); then
  echo "FAILED: ${failed//$'\n'/ }$( ((ran == expected)) || echo " (only $ran of $expected test binaries reported)")$( ((doc_rc == 0)) || echo " doc tests")" >&2
  exit 101
fi
echo "all $ran test binaries and the doc tests passed"
