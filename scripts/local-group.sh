#!/usr/bin/env bash
# A whole redis-zk group on this machine, on loopback addresses: one
# ZooKeeper, three rzk-redis, three rzk-sentinel and one rzk-watcher.
#
#   bash scripts/local-group.sh          # run, show a live status line, Ctrl-C stops all
#   bash scripts/local-group.sh --demo   # bring up, kill the master, watch the record
#                                        # move to the promoted replica, tear down;
#                                        # exit 0 only if all of that happened
#
# Missing Debian packages are installed (as root) or the command to install
# them is printed. Everything it writes lives in $GROUP_DIR.
#
# Settings (environment): GROUP_DIR (/tmp/rzk-local-group), ZK_PORT (22181),
# REDIS_PORT_BASE (7000: ports 7001-7003), SENTINEL_PORT_BASE (26000),
# RZK_BIN_DIR (default: build the release binaries into target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
case "$mode" in run | --demo) ;; *) echo "usage: $0 [--demo]" >&2; exit 2 ;; esac

source scripts/deps.sh
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
ZKCLI=/usr/share/zookeeper/bin/zkCli.sh

rm -rf "$GROUP_DIR" && mkdir -p "$GROUP_DIR"
declare -A pid=()
stop_all() {
  trap - EXIT INT TERM
  echo "stopping the group…"
  # Launchers first (they stop their servers), ZooKeeper last.
  for k in "${!pid[@]}"; do [ "$k" = zk ] || kill -TERM "${pid[$k]}" 2>/dev/null || true; done
  for k in "${!pid[@]}"; do [ "$k" = zk ] || wait "${pid[$k]}" 2>/dev/null || true; done
  if [ -n "${pid[zk]:-}" ]; then kill -TERM "${pid[zk]}" 2>/dev/null || true; wait "${pid[zk]}" 2>/dev/null || true; fi
  echo "stopped; logs are in $GROUP_DIR"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# --- ZooKeeper ---
cat >"$GROUP_DIR/zoo.cfg" <<CFG
tickTime=500
dataDir=$GROUP_DIR/zk-data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
CFG
java -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$GROUP_DIR/zoo.cfg" >"$GROUP_DIR/zk.log" 2>&1 &
pid[zk]=$!
zk_ok() { [ "$( (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT" && echo ruok >&3 && cat <&3) 2>/dev/null)" = imok ]; }
for _ in $(seq 150); do zk_ok && break; sleep 0.2; done
zk_ok || { echo "ZooKeeper did not start; see $GROUP_DIR/zk.log" >&2; exit 1; }

# --- the tasks ---
export ZK_HOSTS=127.0.0.1:$ZK_PORT ZK_ROOT=/redis MASTER_NAME=mymaster
export TAKEOVER_GRACE_S=10 SENTINEL_DOWN_AFTER_MS=2000 SENTINEL_FAILOVER_TIMEOUT_MS=10000
export RECONCILE_INTERVAL_S=2
start_redis() { # index
  local i=$1 dir=$GROUP_DIR/redis$1
  mkdir -p "$dir"
  BIND_IP=127.0.0.1$i PORT0=$((REDIS_PORT_BASE + i)) DATA_DIR=$dir \
    "$RZK_BIN_DIR/rzk-redis" --save "" --repl-diskless-sync-delay 0 >"$GROUP_DIR/redis$i.log" 2>&1 &
  pid[redis$i]=$!
  echo "${pid[redis$i]}" >"$GROUP_DIR/redis$i.pid"
}
start_sentinel() { # index
  local i=$1 dir=$GROUP_DIR/sentinel$1
  mkdir -p "$dir"
  BIND_IP=127.0.0.2$i PORT0=$((SENTINEL_PORT_BASE + i)) DATA_DIR=$dir \
    "$RZK_BIN_DIR/rzk-sentinel" >"$GROUP_DIR/sentinel$i.log" 2>&1 &
  pid[sentinel$i]=$!
  echo "${pid[sentinel$i]}" >"$GROUP_DIR/sentinel$i.pid"
}
for i in 1 2 3; do start_redis "$i"; done
for i in 1 2 3; do start_sentinel "$i"; done
"$RZK_BIN_DIR/rzk-watcher" >"$GROUP_DIR/watcher.log" 2>&1 &
pid[watcher]=$!

# --- observing it ---
record() { "$ZKCLI" -server "127.0.0.1:$ZK_PORT" get /redis/master 2>/dev/null | tail -1 || true; }
role_of() { timeout 1 redis-cli -h "$1" -p "$2" role 2>/dev/null | head -1 || true; }
sentinel_says() { timeout 1 redis-cli -h "$1" -p "$2" sentinel get-master-addr-by-name mymaster 2>/dev/null | paste -sd' ' || true; }
sentinel_field() { # ip port field
  timeout 1 redis-cli -h "$1" -p "$2" sentinel master mymaster 2>/dev/null | grep -A1 -x "$3" | tail -1 || true
}
status() { # prints one line; the record is in $rec afterwards
  rec=$(record)
  local line i r
  line="$(date +%T) record=[$rec]"
  for i in 1 2 3; do
    r=$(role_of 127.0.0.1$i $((REDIS_PORT_BASE + i)))
    line+="  redis$i=${r:-down}"
  done
  for i in 1 2 3; do line+="  sentinel$i->[$(sentinel_says 127.0.0.2$i $((SENTINEL_PORT_BASE + i)))]"; done
  echo "$line"
}
healthy() { # one master named by the record, every Sentinel agreeing and knowing its peers and replicas
  rec=$(record)
  local ip=${rec% *} port=${rec#* } i
  [ "$(role_of "$ip" "$port")" = master ] || return 1
  for i in 1 2 3; do
    local s=127.0.0.2$i sp=$((SENTINEL_PORT_BASE + i))
    [ "$(sentinel_says $s $sp)" = "$rec" ] || return 1
    [ "$(sentinel_field $s $sp num-other-sentinels)" = 2 ] || return 1
    [ "$(sentinel_field $s $sp num-slaves)" -ge 2 ] 2>/dev/null || return 1
  done
}

cat <<TXT
group starting in $GROUP_DIR
  master record:  $ZKCLI -server 127.0.0.1:$ZK_PORT get /redis/master
  a server:       redis-cli -h 127.0.0.11 -p $((REDIS_PORT_BASE + 1)) role
  a sentinel:     redis-cli -h 127.0.0.21 -p $((SENTINEL_PORT_BASE + 1)) sentinel get-master-addr-by-name mymaster
TXT

if [ "$mode" = run ]; then
  echo "Ctrl-C stops everything."
  while true; do status; sleep 2; done
fi

# --- demo: fail over and check that the record follows ---
deadline=$((SECONDS + 120))
until healthy; do
  [ $SECONDS -lt $deadline ] || { status; echo "DEMO FAILED: the group did not become healthy" >&2; exit 1; }
  sleep 1
done
status
old=$rec
victim=""
for i in 1 2 3; do [ "$old" = "127.0.0.1$i $((REDIS_PORT_BASE + i))" ] && victim=redis$i; done
[ -n "$victim" ] || { echo "DEMO FAILED: the record [$old] names no task of this group" >&2; exit 1; }
echo "killing the master's task ($victim, $old) with SIGKILL…"
killed_at=$SECONDS
kill -KILL "${pid[$victim]}"
wait "${pid[$victim]}" 2>/dev/null || true
unset "pid[$victim]"
deadline=$((SECONDS + 60))
while true; do
  status
  if [ -n "$rec" ] && [ "$rec" != "$old" ] && [ "$(role_of "${rec% *}" "${rec#* }")" = master ]; then
    echo "record moved: [$old] -> [$rec] about $((SECONDS - killed_at)) s after the kill"
    break
  fi
  [ $SECONDS -lt $deadline ] || { echo "DEMO FAILED: the record did not move from [$old]" >&2; exit 1; }
  sleep 1
done
echo "DEMO OK"
