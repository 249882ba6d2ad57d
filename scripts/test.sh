#!/usr/bin/env bash
# Runs the whole test suite on a Debian machine, installing what it needs
# first. The tests start their own ZooKeeper, redis-server and redis-sentinel
# processes on loopback addresses.
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
exec cargo test --locked "$@"
