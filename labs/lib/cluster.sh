# Cluster-store helpers for labs whose nodes share a cluster (source after common.sh): etcd in its
# own namespace, agents that join the cluster, and waits on `pn cluster status`. Lab 07 shows the
# whole story (failures included); labs 04 and 05 use these to apply services once and to register
# their nodes.

# start_etcd NS IP DIR: one etcd member in NS, clients on IP:2379, data, log and pid file in DIR
# (DIR/etcd.pid: `ip netns exec` execs etcd, so the pid is etcd's). Returns once a client connects.
start_etcd() {
  local ns=$1 ip=$2 dir=$3 name
  name=$(basename "$dir")
  mkdir -p "$dir"
  ip netns exec "$ns" etcd --name "pn-$name" --data-dir "$dir/data" \
    --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "pn-$name=http://127.0.0.1:2380" >>"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  local _
  for _ in $(seq 150); do
    ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/$ip/2379" 2>/dev/null && return 0
    sleep 0.2
  done
  cat "$dir/etcd.log" >&2
  die "etcd did not answer on $ip:2379"
}

# stop_pidfile FILE NEEDLE: SIGTERM the pid in FILE if its command line contains NEEDLE (a pid file
# can outlive its process and the pid be reused), SIGKILL after 5 s. Quiet when there is nothing.
stop_pidfile() {
  local file=$1 needle=$2 pid _
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle" || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    [ -d "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# pn_cluster NS args…: pn in NS without a state dir (the cluster commands need only --cluster).
pn_cluster() {
  local ns=$1
  shift
  ip netns exec "$ns" node "$PN_REPO/bin/run.js" "$@"
}

# cluster_converged NS CLUSTER N: `pn cluster status` (run in NS) lists N nodes alive and
# converged (each has applied the store's latest desired revision).
cluster_converged() {
  pn_cluster "$1" cluster status --cluster "$2" --json |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const n=JSON.parse(s).result.nodes.filter(x=>x.alive&&x.converged===true);process.exit(n.length===+process.argv[1]?0:1)})' "$3"
}

# wait_converged SECONDS NS CLUSTER N: until cluster_converged holds (polled every 0.2 s).
wait_converged() {
  local secs=$1 _
  shift
  for _ in $(seq $((secs * 5))); do cluster_converged "$@" 2>/dev/null && return 0; sleep 0.2; done
  pn_cluster "$1" cluster status --cluster "$2" >&2 || true
  die "timed out after ${secs}s waiting for $3 nodes converged on $2"
}

# wait_alive SECONDS NS CLUSTER N: until `pn cluster status` lists exactly N live nodes (a stopped
# agent's node leaves when its lease expires).
wait_alive() {
  local secs=$1 ns=$2 cluster=$3 n=$4 _
  for _ in $(seq $((secs * 5))); do
    pn_cluster "$ns" cluster status --cluster "$cluster" --json 2>/dev/null |
      node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.exit(JSON.parse(s).result.nodes.filter(x=>x.alive).length===+process.argv[1]?0:1))' "$n" && return 0
    sleep 0.2
  done
  pn_cluster "$ns" cluster status --cluster "$cluster" >&2 || true
  die "timed out after ${secs}s waiting for $n live nodes on $cluster"
}
