#!/usr/bin/env bash
# A whole redis-zk group on this machine, on loopback addresses: ZooKeeper
# (one server, or with --ensemble three, as production runs it), three
# rzk-redis, three rzk-sentinel and one rzk-watcher, every task with its
# admin port.
#
#   bash scripts/local-group.sh              # run, show a live status line, Ctrl-C stops all
#   bash scripts/local-group.sh --ensemble   # the same on a 3-server ZooKeeper ensemble
#   bash scripts/local-group.sh --haproxy    # and HAProxy in front: one address for writes
#                                            # (127.0.0.1:REDIS_PORT_BASE) and one for reads
#   bash scripts/local-group.sh --demo       # bring up, kill the master, watch the record
#                                            # move to the promoted replica, tear down;
#                                            # exit 0 only if all of that happened
#   bash scripts/local-group.sh --ensemble --demo
#                                            # first also kill the ZooKeeper leader: the
#                                            # group stays healthy, nothing fails over
#   bash scripts/local-group.sh --haproxy --demo
#                                            # also: a write through the proxy succeeds
#                                            # before and after the failover
#
# The status line is `rzkctl status` in one line: the record, each server's
# role, each Sentinel's master, the verdict (and the ensemble's modes).
# Missing Debian packages are installed (as root) or the command to install
# them is printed. Everything it writes lives in $GROUP_DIR.
#
# Settings (environment): GROUP_DIR (/tmp/rzk-local-group), ZK_PORT (22181;
# with --ensemble each server's client port on 127.0.2.1-3, and ZK_PORT+1,
# ZK_PORT+2 its quorum and election ports), REDIS_PORT_BASE (7000: ports
# 7001-7003), SENTINEL_PORT_BASE (26000), ADMIN_PORT_BASE (17000: redis
# 17001-17003, sentinels 17004-17006, watcher 17007), HAPROXY_PORT (with
# --haproxy: writes on 127.0.0.1:REDIS_PORT_BASE, reads on HAPROXY_PORT+4),
# RZK_BIN_DIR (default: build the release binaries into target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { echo "usage: $0 [--ensemble] [--haproxy] [--demo]" >&2; exit 2; }
demo=0 ensemble=0 haproxy=0
for arg in "$@"; do
  case "$arg" in
    --demo) demo=1 ;;
    --ensemble) ensemble=1 ;;
    --haproxy) haproxy=1 ;;
    *) usage ;;
  esac
done

RZK_HAPROXY=$haproxy source scripts/deps.sh
if [ -z "${RZK_BIN_DIR:-}" ]; then
  echo "building release binaries…"
  cargo build --release --locked -q
  RZK_BIN_DIR=$PWD/target/release
fi
# Under /tmp, not the checkout: launchers started as root run as `redis`,
# which must reach their DATA_DIRs (a home directory is often closed).
GROUP_DIR=${GROUP_DIR:-${TMPDIR:-/tmp}/rzk-local-group}
ZK_PORT=${ZK_PORT:-22181}
REDIS_PORT_BASE=${REDIS_PORT_BASE:-7000}
SENTINEL_PORT_BASE=${SENTINEL_PORT_BASE:-26000}
HAPROXY_PORT=${HAPROXY_PORT:-$REDIS_PORT_BASE}
ADMIN_PORT_BASE=${ADMIN_PORT_BASE:-17000}

rm -rf "$GROUP_DIR" && mkdir -p "$GROUP_DIR"
declare -A pid=()
stop_all() {
  trap - EXIT INT TERM
  echo "stopping the group…"
  # Launchers first (they stop their servers), ZooKeeper last.
  local k
  for k in "${!pid[@]}"; do [[ $k == zk* ]] || kill -TERM "${pid[$k]}" 2>/dev/null || true; done
  for k in "${!pid[@]}"; do [[ $k == zk* ]] || wait "${pid[$k]}" 2>/dev/null || true; done
  for k in "${!pid[@]}"; do [[ $k != zk* ]] || kill -TERM "${pid[$k]}" 2>/dev/null || true; done
  for k in "${!pid[@]}"; do [[ $k != zk* ]] || wait "${pid[$k]}" 2>/dev/null || true; done
  echo "stopped; logs are in $GROUP_DIR"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# --- ZooKeeper: one server on 127.0.0.1, or three on 127.0.2.1-3 ---
zk_servers=()
if [ "$ensemble" = 1 ]; then zk_servers=(127.0.2.1 127.0.2.2 127.0.2.3); else zk_servers=(127.0.0.1); fi
ZK_HOSTS=$(printf "%s:$ZK_PORT," "${zk_servers[@]}")
ZK_HOSTS=${ZK_HOSTS%,}
start_zk() { # index (1-based)
  local i=$1 dir=$GROUP_DIR/zk$1 j
  if [ ! -f "$dir/zoo.cfg" ]; then
    mkdir -p "$dir/data"
    cat >"$dir/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=4
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=${zk_servers[i - 1]}
admin.enableServer=false
4lw.commands.whitelist=*
CFG
    if [ "$ensemble" = 1 ]; then
      echo "$i" >"$dir/data/myid"
      for j in 1 2 3; do
        echo "server.$j=${zk_servers[j - 1]}:$((ZK_PORT + 1)):$((ZK_PORT + 2))" >>"$dir/zoo.cfg"
      done
    fi
  fi
  java -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >>"$GROUP_DIR/zk$i.log" 2>&1 &
  pid[zk$i]=$!
  echo "${pid[zk$i]}" >"$GROUP_DIR/zk$i.pid"
}
four() { # address word: a ZooKeeper four-letter word
  (exec 3<>"/dev/tcp/$1/$ZK_PORT" && echo "$2" >&3 && timeout 1 cat <&3) 2>/dev/null || true
}
zk_mode() { # address: leader, follower, standalone, or "down"
  local m
  m=$(four "$1" srvr | sed -n 's/^Mode: //p')
  echo "${m:-down}"
}
zk_modes() { local a out=(); for a in "${zk_servers[@]}"; do out+=("$(zk_mode "$a")"); done; local IFS=,; echo "${out[*]}"; }
zk_serving() { # every running server serves, one of them leads (or stands alone)
  local modes
  modes=$(zk_modes)
  [[ ,$modes, == *,leader,* || $modes == standalone ]] && [[ ,$modes, != *,down,* ]]
}
for i in "${!zk_servers[@]}"; do start_zk $((i + 1)); done
for _ in $(seq 150); do zk_serving && break; sleep 0.2; done
zk_serving || { echo "ZooKeeper did not start ($(zk_modes)); see $GROUP_DIR/zk*.log" >&2; exit 1; }

# --- the tasks ---
export ZK_HOSTS ZK_ROOT=/redis MASTER_NAME=mymaster
export TAKEOVER_GRACE_S=10 SENTINEL_DOWN_AFTER_MS=2000 SENTINEL_FAILOVER_TIMEOUT_MS=10000
export RECONCILE_INTERVAL_S=2
redis_addr() { echo "127.0.0.1$1 $((REDIS_PORT_BASE + $1))"; }
sentinel_addr() { echo "127.0.0.2$1 $((SENTINEL_PORT_BASE + $1))"; }
start_redis() { # index
  local i=$1 dir=$GROUP_DIR/redis$1
  mkdir -p "$dir"
  BIND_IP=127.0.0.1$i PORT0=$((REDIS_PORT_BASE + i)) DATA_DIR=$dir ADMIN_PORT=$((ADMIN_PORT_BASE + i)) \
    "$RZK_BIN_DIR/rzk-redis" --save "" --repl-diskless-sync-delay 0 >"$GROUP_DIR/redis$i.log" 2>&1 &
  pid[redis$i]=$!
  echo "${pid[redis$i]}" >"$GROUP_DIR/redis$i.pid"
}
start_sentinel() { # index
  local i=$1 dir=$GROUP_DIR/sentinel$1
  mkdir -p "$dir"
  BIND_IP=127.0.0.2$i PORT0=$((SENTINEL_PORT_BASE + i)) DATA_DIR=$dir ADMIN_PORT=$((ADMIN_PORT_BASE + 3 + i)) \
    "$RZK_BIN_DIR/rzk-sentinel" >"$GROUP_DIR/sentinel$i.log" 2>&1 &
  pid[sentinel$i]=$!
  echo "${pid[sentinel$i]}" >"$GROUP_DIR/sentinel$i.pid"
}
for i in 1 2 3; do start_redis "$i"; done
for i in 1 2 3; do start_sentinel "$i"; done
ADMIN_PORT=$((ADMIN_PORT_BASE + 7)) "$RZK_BIN_DIR/rzk-watcher" >"$GROUP_DIR/watcher.log" 2>&1 &
pid[watcher]=$!

# --- HAProxy in front: the docs' recipe (docs/haproxy.cfg), the one
# address a client that knows neither ZooKeeper nor Sentinel uses ---
if [ "$haproxy" = 1 ]; then
  servers() { # the three servers, checked on their admin ports
    local i
    for i in 1 2 3; do
      echo "    server redis$i $(redis_addr "$i" | tr ' ' :) check port $((ADMIN_PORT_BASE + i))"
    done
  }
  # docs/haproxy.cfg as it is, but for its frontends' addresses and its
  # server lines, which name this group's tasks.
  awk -v w="127.0.0.1:$HAPROXY_PORT" -v r="127.0.0.1:$((HAPROXY_PORT + 4))" -v servers="$(servers)" '
    /^    bind :6379$/ { print "    bind " w; next }
    /^    bind :6380$/ { print "    bind " r; next }
    /^    server / { next }
    { print }
    /^    default-server / { print servers }
  ' docs/haproxy.cfg >"$GROUP_DIR/haproxy.cfg"
  grep -q "bind $(printf 127.0.0.1:%s "$HAPROXY_PORT")" "$GROUP_DIR/haproxy.cfg" && [ "$(grep -c '^    server ' "$GROUP_DIR/haproxy.cfg")" = 6 ] ||
    { echo "docs/haproxy.cfg no longer has the form this script adapts (bind :6379, bind :6380, server lines after default-server)" >&2; exit 1; }
  haproxy -db -f "$GROUP_DIR/haproxy.cfg" >"$GROUP_DIR/haproxy.log" 2>&1 &
  pid[haproxy]=$!
  echo "${pid[haproxy]}" >"$GROUP_DIR/haproxy.pid"
fi

# --- observing it: rzkctl status, in one line ---
rzkctl() { ZK_CONNECT_TIMEOUT_S=2 timeout 10 "$RZK_BIN_DIR/rzkctl" "$@"; }
row() { # rzkctl's table, an address, awk's fields to print: that address's row, or "down"
  awk -v a="$2" '$1" "$2 == a { print '"$3"'; found = 1; exit } END { if (!found) print "down" }' <<<"$1"
}
status() { # prints one line; afterwards $rec is the record and $verdict rzkctl's verdict
  local out i line
  out=$(rzkctl status 2>&1) || true
  rec=$(sed -n 's/^record: \(.*\) (version .*/\1/p' <<<"$out")
  [ "$rec" != - ] || rec=""
  verdict=$(sed -n 's/^verdict: //p' <<<"$out")
  line="$(date +%T) record=[$rec]"
  for i in 1 2 3; do line+="  redis$i=$(row "$out" "$(redis_addr "$i")" '$3')"; done
  for i in 1 2 3; do line+="  sentinel$i->[$(row "$out" "$(sentinel_addr "$i")" '$3 == "-" ? "-" : $3" "$4')]"; done
  [ "$ensemble" = 0 ] || line+="  zk=$(zk_modes)"
  line+="  ${verdict:-no answer: $(head -1 <<<"$out")}"
  [ "$verdict" != degraded ] || line+=" ($(sed -n 's/^  - //p' <<<"$out" | head -1))"
  echo "$line"
}

echo "group starting in $GROUP_DIR, ZooKeeper at $ZK_HOSTS"
cat <<TXT
  status:      ZK_HOSTS=$ZK_HOSTS $RZK_BIN_DIR/rzkctl status
  a server:    redis-cli -h 127.0.0.11 -p $((REDIS_PORT_BASE + 1)) role
  a sentinel:  redis-cli -h 127.0.0.21 -p $((SENTINEL_PORT_BASE + 1)) sentinel get-master-addr-by-name mymaster
  admin pages (/health /ready /liveness /metrics; a server's also /master /replica, the watcher's /master /sentinels):
TXT
for i in 1 2 3; do echo "    redis$i     http://127.0.0.1$i:$((ADMIN_PORT_BASE + i))/ready"; done
for i in 1 2 3; do echo "    sentinel$i  http://127.0.0.2$i:$((ADMIN_PORT_BASE + 3 + i))/ready"; done
echo "    watcher    http://127.0.0.1:$((ADMIN_PORT_BASE + 7))/master"
if [ "$haproxy" = 1 ]; then
  echo "  through HAProxy ($GROUP_DIR/haproxy.cfg), the one address a client needs:"
  echo "    writes:    redis-cli -h 127.0.0.1 -p $HAPROXY_PORT"
  echo "    reads:     redis-cli -h 127.0.0.1 -p $((HAPROXY_PORT + 4))"
fi

if [ "$demo" = 0 ]; then
  echo "Ctrl-C stops everything."
  while true; do status; sleep 2; done
fi

# --- demo ---
sentinel_field() { # ip port field
  timeout 1 redis-cli -h "$1" -p "$2" sentinel master mymaster 2>/dev/null | grep -A1 -x "$3" | tail -1 || true
}
sentinels_met() { # every Sentinel knows the two others and two replicas: a failover can be agreed on
  local i s sp
  for i in 1 2 3; do
    read -r s sp <<<"$(sentinel_addr "$i")"
    [ "$(sentinel_field "$s" "$sp" num-other-sentinels)" = 2 ] || return 1
    [ "$(sentinel_field "$s" "$sp" num-slaves)" -ge 2 ] 2>/dev/null || return 1
  done
}
wait_healthy() { # what to say on failure
  local deadline=$((SECONDS + 120))
  until rzkctl status >/dev/null 2>&1 && sentinels_met; do
    [ $SECONDS -lt $deadline ] || { status; echo "DEMO FAILED: $1" >&2; exit 1; }
    sleep 1
  done
  status
}
wait_healthy "the group did not become healthy"
proxy_write() { # what to say on failure: a write through the proxy's one address succeeds
  local deadline=$((SECONDS + 30)) t0=$SECONDS got
  until got=$(timeout 2 redis-cli -h 127.0.0.1 -p "$HAPROXY_PORT" set rzk-demo "$SECONDS" 2>&1) && [ "$got" = OK ]; do
    [ $SECONDS -lt $deadline ] || { echo "DEMO FAILED: $1 (last answer: ${got:-none})" >&2; exit 1; }
    sleep 0.2
  done
  echo "a write through HAProxy (127.0.0.1:$HAPROXY_PORT) acknowledged, $((SECONDS - t0)) s after asking"
}
[ "$haproxy" = 0 ] || proxy_write "no write through HAProxy succeeded within 30 s"
if [ "$ensemble" = 1 ]; then
  # A ZooKeeper fault: the leader dies. The other two elect a leader, the
  # launchers' sessions move to them, and nothing fails over.
  before=$rec leader=""
  for i in 1 2 3; do [ "$(zk_mode "${zk_servers[i - 1]}")" = leader ] && leader=$i; done
  [ -n "$leader" ] || { echo "DEMO FAILED: no ZooKeeper leader ($(zk_modes))" >&2; exit 1; }
  echo "killing the ZooKeeper leader (zk$leader, ${zk_servers[leader - 1]}) with SIGKILL…"
  kill -KILL "${pid[zk$leader]}"
  wait "${pid[zk$leader]}" 2>/dev/null || true
  sleep 1
  wait_healthy "the group did not stay healthy without the ZooKeeper leader"
  [ "$rec" = "$before" ] || { echo "DEMO FAILED: the record moved from [$before] to [$rec]" >&2; exit 1; }
  echo "ZooKeeper leader killed: the record stayed [$rec], the group is healthy; starting zk$leader again"
  start_zk "$leader"
fi
# Fail the master over and check that the record follows.
old=$rec
victim=""
for i in 1 2 3; do [ "$old" = "$(redis_addr "$i")" ] && victim=redis$i; done
[ -n "$victim" ] || { echo "DEMO FAILED: the record [$old] names no task of this group" >&2; exit 1; }
echo "killing the master's task ($victim, $old) with SIGKILL…"
killed_at=$SECONDS
kill -KILL "${pid[$victim]}"
wait "${pid[$victim]}" 2>/dev/null || true
unset "pid[$victim]"
deadline=$((SECONDS + 60))
while true; do
  status
  if [ -n "$rec" ] && [ "$rec" != "$old" ] && [ "$(timeout 1 redis-cli -h "${rec% *}" -p "${rec#* }" role 2>/dev/null | head -1)" = master ]; then
    echo "record moved: [$old] -> [$rec] about $((SECONDS - killed_at)) s after the kill"
    break
  fi
  [ $SECONDS -lt $deadline ] || { echo "DEMO FAILED: the record did not move from [$old]" >&2; exit 1; }
  sleep 1
done
[ "$haproxy" = 0 ] || proxy_write "no write through HAProxy succeeded within 30 s of the record's move"
echo "DEMO OK"
