#!/usr/bin/env bash
# Builds and tags the three images from the repository root:
#   docker/build.sh [registry-prefix] [tag]
# e.g. docker/build.sh registry.example.com/ 0.1.0, then push them with
#   docker push registry.example.com/redis-zk-{redis,sentinel,watcher}:0.1.0
#
# Set BINARIES=prebuilt to take the binaries from target/release (run
# `cargo build --release --locked --bins` first), or from BIN_DIR (a path
# inside the repository that .dockerignore lets through), instead of
# compiling them in the rust image.
# Set ENGINE=valkey to build images that run Valkey (Debian's Valkey 8 from
# bookworm-backports) instead of Redis; their tags end in -valkey
# (redis-zk-redis:0.1.0-valkey).
# Set BUILDER="buildah build" to build with buildah instead of docker; the
# images are then written in Docker's format, since the OCI format has no
# HEALTHCHECK and buildah would drop it.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-}
tag=${2:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
builder=${BUILDER:-docker build}
export BUILDAH_FORMAT=docker
engine=${ENGINE:-redis}
case $engine in
  redis) suffix="" ;;
  valkey) suffix="-valkey" ;;
  *) echo "ENGINE=$engine: expected redis or valkey" >&2; exit 2 ;;
esac
args=(--build-arg "BINARIES=${BINARIES:-compiled}" --build-arg "ENGINE=$engine")
if [ -n "${BIN_DIR:-}" ]; then
  args+=(--build-arg "BIN_DIR=$BIN_DIR")
fi
for target in redis sentinel watcher; do
  # shellcheck disable=SC2086 # $builder is a command and its flags
  $builder --platform linux/amd64 -f docker/Dockerfile --target "$target" \
    "${args[@]}" -t "${prefix}redis-zk-${target}:${tag}${suffix}" .
done
echo "built ${prefix}redis-zk-{redis,sentinel,watcher}:${tag}${suffix}"
