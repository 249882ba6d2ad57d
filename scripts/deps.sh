#!/usr/bin/env bash
# Installs the Debian packages redis-zk needs at run and test time when they
# are missing: zookeeper (with a Java runtime), redis-server, redis-sentinel,
# redis-tools, and prometheus (its server and promtool check the admin API's
# /metrics in the tests).
# Sourced by the other scripts; as non-root it prints the command instead.
need=()
{ [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null; } || need+=(zookeeper)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
command -v redis-cli >/dev/null || need+=(redis-tools)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || need+=(prometheus)
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
