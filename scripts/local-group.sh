#!/usr/bin/env bash
# Brings up a local redis-zk group on loopback addresses: one ZooKeeper,
# three rzk-redis, three rzk-sentinel and one rzk-watcher; shows its status
# until Ctrl-C, then stops everything.
# All state lives in target/local-group/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cargo build --release --locked -q

DIR=$PWD/target/local-group
rm -rf "$DIR" && mkdir -p "$DIR"
ZK_PORT=${ZK_PORT:-22181}
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "stopping…"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "stopped; logs were in $DIR"
}
trap cleanup EXIT INT TERM

cat > "$DIR/zoo.cfg" <<CFG
tickTime=500
dataDir=$DIR/zk-data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
CFG
java -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$DIR/zoo.cfg" >"$DIR/zk.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ "$( (exec 3<>/dev/tcp/127.0.0.1/$ZK_PORT && echo ruok >&3 && cat <&3) 2>/dev/null)" = imok ] && break
  sleep 0.2
done

export ZK_HOSTS=127.0.0.1:$ZK_PORT ZK_ROOT=/redis TAKEOVER_GRACE_S=10
export SENTINEL_DOWN_AFTER_MS=${SENTINEL_DOWN_AFTER_MS:-2000} SENTINEL_FAILOVER_TIMEOUT_MS=${SENTINEL_FAILOVER_TIMEOUT_MS:-10000}
for i in 1 2 3; do
  mkdir -p "$DIR/redis$i"
  BIND_IP=127.0.0.1$i PORT0=700$i DATA_DIR=$DIR/redis$i \
    target/release/rzk-redis --save "" >"$DIR/redis$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  mkdir -p "$DIR/sentinel$i"
  BIND_IP=127.0.0.2$i PORT0=2600$i DATA_DIR=$DIR/sentinel$i \
    target/release/rzk-sentinel >"$DIR/sentinel$i.log" 2>&1 &
  pids+=($!)
done
RECONCILE_INTERVAL_S=2 target/release/rzk-watcher >"$DIR/watcher.log" 2>&1 &
pids+=($!)

cat <<TXT
group is starting; logs in $DIR
  master record:  /usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:$ZK_PORT get /redis/master
  a server:       redis-cli -h 127.0.0.11 -p 7001 role
  a sentinel:     redis-cli -h 127.0.0.21 -p 26001 sentinel get-master-addr-by-name mymaster
Ctrl-C stops everything.
TXT
while true; do
  rec=$(/usr/share/zookeeper/bin/zkCli.sh -server 127.0.0.1:$ZK_PORT get /redis/master 2>/dev/null | tail -1 || true)
  line="$(date +%T) record=[$rec]"
  for i in 1 2 3; do
    r=$(timeout 1 redis-cli -h 127.0.0.1$i -p 700$i role 2>/dev/null | head -1 || true)
    line+="  127.0.0.1$i:700$i=${r:-down}"
  done
  for i in 1 2 3; do
    r=$(timeout 1 redis-cli -h 127.0.0.2$i -p 2600$i sentinel get-master-addr-by-name mymaster 2>/dev/null | paste -sd' ' || true)
    line+="  s$i->[${r:-down}]"
  done
  echo "$line"
  sleep 2
done
