#!/usr/bin/env bash
# Builds and tags the three images from the repository root:
#   docker/build.sh [registry-prefix] [tag]
# e.g. docker/build.sh registry.example.com/ 0.1.0, then push them with
#   docker push registry.example.com/redis-zk-{redis,sentinel,watcher}:0.1.0
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-}
tag=${2:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
for target in redis sentinel watcher; do
  docker build -f docker/Dockerfile --target "$target" -t "${prefix}redis-zk-${target}:${tag}" .
done
echo "built ${prefix}redis-zk-{redis,sentinel,watcher}:${tag}"
