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
# and then run RZK_TEST_JOBS at a time (default 3), longest first. Each binary
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

jobs=${RZK_TEST_JOBS:-3}
# This run's tag: the namespace tests put it in the names of their network
# namespaces, bridges and veths (rzk<letter><tag>-…, tests/common run_tag),
# so that only what this run made is removed after it, never what a run
# beside it (another checkout's) is using. Hex of this script's pid: unique
# among the runs alive on the host.
export RZK_TEST_TAG
RZK_TEST_TAG=$(printf '%x' $$)
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

# What must run, from the sources rather than from the build: the library,
# every binary of bins/ and every tests/*.rs. A target missing from the
# queue or from the results fails the run by name.
{
  echo "lib:$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | head -n 1 | tr - _)"
  for f in bins/*.rs; do f=${f##*/}; echo "bin:${f%.rs}"; done
  for f in tests/*.rs; do f=${f##*/}; echo "test:${f%.rs}"; done
} | sort >"$work/expected"

# Longest first (by their times in a sequential run: 245 s down to 10 s), so
# that the lanes end close together. The rest (under 10 s each) follow. The
# image test comes first: on a machine that has not built the images before
# it is the longest by far (about 420 s: the base image, a release build and
# the layers; about 40 s once cached), and started eighth it ended the run
# (882 s of the 900 s budget on such a machine, 2026-12-05).
slow="image failover promotion partition chaos zk_ensemble bench_smoke demo write_fence engines tls tls_move migration security admin rzkctl zk_faults proxy persistence redis_bootstrap"
{
  for name in $slow; do grep "^test:$name " "$work/all" || true; done
  grep -v -E "^test:($(tr ' ' '|' <<<"$slow")) " "$work/all" || true
} | awk '{ print NR - 1, $0 }' >"$work/queue"
slots=$(wc -l <"$work/queue")
unqueued=$(awk '{ print $2 }' "$work/queue" | sort | comm -23 "$work/expected" -)
if ((slots == 0)); then
  echo "FAILED: no test binary to run (the build named none); expected: ${unqueued//$'\n'/ }" >&2
  exit 1
elif [ -n "$unqueued" ]; then
  echo "FAILED: test targets the build or the queue missed: ${unqueued//$'\n'/ }" >&2
  exit 1
fi
((slots <= 60)) || { echo "$slots test binaries: more than the 60 port ranges tests/common/mod.rs splits its ports into" >&2; exit 1; }

# The processes still running whose environment carries RZK_TEST_OWNER=$1:
# everything a binary started inherits it, also what left its process group
# (the demo's Ctrl-C test runs the local group under setsid).
owned_by() {
  grep -lzx "RZK_TEST_OWNER=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 || true
}

run_one() {
  local slot=$1 name=$2 exe=$3 out t0 rc=0 owner left p i
  out="$work/out.${name//[^A-Za-z0-9_]/_}"
  owner="$RZK_TEST_TAG-$slot"
  t0=$SECONDS
  # Its own share of the test port range (see free_port in tests/common).
  # timeout runs it in a process group of its own and, on expiry, signals
  # the whole group; the owner mark finds what left the group.
  RZK_TEST_OWNER=$owner RZK_TEST_PORT_SLOT=$slot RZK_TEST_PORT_SLOTS=$slots \
    timeout --kill-after=30 "$limit" "$exe" >"$out" 2>&1 || rc=$?
  ((rc != 124)) || echo "test binary $name killed after ${limit}s (RZK_TEST_BINARY_TIMEOUT)" >>"$out"
  # Its children die with it (parent-death signal); give them 2 s to go,
  # then kill whatever of it still runs. Processes a binary that ended by
  # itself left behind are its bug: the binary fails.
  for i in 1 2 3 4 5 6 7 8 9 10; do
    left=$(owned_by "$owner")
    [ -n "$left" ] || break
    sleep 0.2
  done
  if [ -n "$left" ]; then
    echo "processes left running by test binary $name, killed:" >>"$out"
    for p in $left; do
      echo "  $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" >>"$out"
    done
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    ((rc != 0)) || rc=97
  fi
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
export -f run_one owned_by
export work limit slots
xargs -P "$jobs" -L 1 bash -c 'run_one "$@"' _ <"$work/queue"

# A binary killed by the timeout never ran its clean-up: remove the network
# namespaces, bridges and veths of this run (named rzk<letter><tag>-…); the
# ones of runs beside it stay. A namespace left by a binary that ended by
# itself is a leak and fails the run. Links are only removed: the kernel
# tears a deleted namespace's veths down in the background, and under load
# that takes minutes (seen: 35 veths of the partition test, 24 of them
# still there 30 s after it ended).
mine="^rzk[a-z]$RZK_TEST_TAG-"
leaked=0
for ns in $(ip netns list 2>/dev/null | awk -v re="$mine" '$1 ~ re { print $1 }'); do
  echo "removing network namespace $ns left by this run" >&2
  ip netns del "$ns" || true
  leaked=1
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' -v re="$mine" '$2 ~ re { sub(/@.*/, "", $2); print $2 }'); do
  ip link del "$link" 2>/dev/null || true
done
if ((leaked)) && ! awk '$1 == 124 || $1 == 137 { found = 1 } END { exit !found }' "$work/results"; then
  echo "network namespaces were left behind by test binaries that were not killed" >&2
  printf '%s %s %s\n' 96 0 "network-clean-up" >>"$work/results"
fi

# Doc tests are not executables of their own; cargo runs them.
doc_rc=0
cargo test --locked --doc -q || doc_rc=$?

echo
echo "test binaries ($jobs at a time), slowest first; build ${build_secs}s, all $((SECONDS - start))s:"
sort -k2,2nr "$work/results" | awk '{ printf "  %-32s %5ss  %s\n", $3, $2, ($1 == 0 ? "ok" : "FAILED (exit " $1 ")") }'
failed=$(awk '$1 != 0 { print $3 }' "$work/results")
# Every expected target must have reported; name those that did not.
missing=$(awk '{ print $3 }' "$work/results" | sort | comm -23 "$work/expected" -)
ran=$(awk '$3 != "network-clean-up"' "$work/results" | wc -l)
if [ -n "$failed" ] || [ -n "$missing" ] || ((doc_rc != 0)); then
  echo "FAILED: ${failed//$'\n'/ }$([ -z "$missing" ] || echo " never reported: ${missing//$'\n'/ }")$( ((doc_rc == 0)) || echo " doc tests")" >&2
  exit 101
fi
echo "all $ran test binaries and the doc tests passed"
