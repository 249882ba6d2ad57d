#!/usr/bin/env bash
# Runs the whole test suite on a Debian machine, installing what it needs
# first. The tests start their own ZooKeeper, redis-server and redis-sentinel
# processes on loopback addresses.
set -euo pipefail
cd "$(dirname "$0")/.."
RZK_TEST_DEPS=1 source scripts/deps.sh
exec cargo test --locked "$@"
