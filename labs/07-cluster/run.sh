#!/usr/bin/env bash
# Lab 07: a cluster in etcd. Four nodes (netns) on one L2 (a bridge), etcd in its own namespace on
# the same bridge. `pn cluster init`, then on every node `pn agent start --cluster …
# --auto-direct-routes`: each agent registers its node under a lease, publishes its pods and
# programs the others' (pn_ipcache entries, routes to their pod CIDRs via their node IPs). Pods are
# plugged in through the native CNI client on every node; the services are written ONCE to the
# store and every node programs them. Then the failures: one agent SIGKILLed (its entries and
# routes leave the others within the lease TTL + 1 s), etcd stopped (connections and CNI keep
# working), etcd restarted (a service added then converges everywhere). Tears everything down
# unless PN_LAB_KEEP=1.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
PY=$HERE/../04-services   # the tiny python server and clients of lab 04

need_root
need_cmds ip tc bpftool clang node python3 etcd jq stat
ALL_NS=("$SW_NS" "$ETCD_NS" "$NEW_NS")
for i in "${NODES[@]}"; do ALL_NS+=("$(node_ns "$i")" "$(client_ns "$i")" "$(backend_ns "$i")"); done
for ns in "${ALL_NS[@]}"; do
  [ ! -e "/run/netns/$ns" ] || die "$ns already exists (a previous run kept? run $HERE/teardown.sh)"
done
ensure_built
ensure_bpffs
on_exit "bash $HERE/teardown.sh"
mkdir -p "$WORK"

json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(eval("v"+process.argv[1]))})' "$1"; }
ms() { date +%s%3N; }
# pn in a namespace without a state dir (the cluster commands need only the store's location).
pn_at() { local ns=$1; shift; ip netns exec "$ns" node "$PN_REPO/bin/run.js" "$@"; }
N1=$(node_ns 1)

# What a runtime does, through the native client (it hands the call to the node's agent):
# cni NODE_INDEX COMMAND CONTAINER_ID POD_NS
cni() {
  local i=$1 cmd=$2 cid=$3 pod=$4
  local conf="{\"cniVersion\":\"1.0.0\",\"name\":\"pn-lab\",\"type\":\"pn\",\"stateDir\":\"$(node_state "$i")\"}"
  ip netns exec "$(node_ns "$i")" env -i PATH="$PATH" CNI_COMMAND="$cmd" CNI_CONTAINERID="$cid" CNI_NETNS="/run/netns/$pod" \
    CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=$cid" \
    "$PN_REPO/dist/native/pn-cni" <<<"$conf"
}
pod_ip() { ip -n "$1" -j addr show dev eth0 | json '[0].addr_info.find(a=>a.family==="inet").local'; }

start_etcd() {
  ip netns exec "$ETCD_NS" etcd --name "$LAB_ID" --data-dir "$WORK/etcd" \
    --listen-client-urls "http://$ETCD_IP:2379" --advertise-client-urls "http://$ETCD_IP:2379" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$LAB_ID=http://127.0.0.1:2380" >>"$WORK/etcd.log" 2>&1 &
  echo $! >"$WORK/etcd.pid"   # `ip netns exec` execs etcd: this is etcd's pid
  for _ in $(seq 100); do
    ip netns exec "$N1" bash -c "exec 3<>/dev/tcp/$ETCD_IP/2379" 2>/dev/null && return 0
    sleep 0.2
  done
  cat "$WORK/etcd.log"; die "etcd did not answer on $ETCD_IP:2379"
}
stop_etcd() {
  local pid; pid=$(cat "$WORK/etcd.pid")
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { rm -f "$WORK/etcd.pid"; return 0; }; sleep 0.1; done
  die "etcd ($pid) did not stop"
}
start_agent() { # node index → pid
  pn_in "$(node_ns "$1")" "$(node_state "$1")" agent start --cluster "$CLUSTER" --auto-direct-routes --lease-ttl "$TTL" --json | json '.result.pid'
}
# until SECONDS WHAT CMD…: retry CMD every 0.1 s
until_ok() {
  local secs=$1 what=$2 end
  shift 2
  end=$(($(ms) + secs * 1000))
  until "$@" >/dev/null 2>&1; do
    [ "$(ms)" -lt "$end" ] || die "timed out after ${secs} s waiting for $what"
    sleep 0.1
  done
}
all_converged() { # every node alive and converged (N nodes)
  pn_at "$N1" cluster status --cluster "$CLUSTER" --json |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const n=JSON.parse(s).result.nodes.filter(x=>x.alive&&x.converged===true);process.exit(n.length===+process.argv[1]?0:1)})' "$1"
}
# ipcache_node NODE_INDEX PREFIX: the node IP of the remote pn_ipcache entry for PREFIX ("" if none)
ipcache_node() {
  pn_in "$(node_ns "$1")" "$(node_state "$1")" bpf map dump pn_ipcache --json |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const e=JSON.parse(s).result.entries.find(e=>(e.key.prefix??`${e.key.ip}/${e.key.prefixlen}`)===process.argv[1]&&(e.value.flags&1)===0);console.log(e?e.value.nodeIp:"")})' "$2"
}
# remote_count NODE_INDEX NODE_IP: how many pn_ipcache entries point at NODE_IP
remote_count() {
  pn_in "$(node_ns "$1")" "$(node_state "$1")" bpf map dump pn_ipcache --json |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).result.entries.filter(e=>e.value.nodeIp===process.argv[1]).length))' "$2"
}
# fast_count NODE_INDEX NODE_IP: the same count, from the pinned map with bpftool (node_ip sits at byte 8 of the value)
fast_count() {
  local want; want=$(printf '"0x%02x",' ${2//./ })
  bpftool -j map dump pinned "$PN_BPFFS/$(node_name "$1")/maps/pn_ipcache" | jq "[.[] | select(.value[8:12] == [${want%,}])] | length"
}
store_endpoints() { pn_at "$N1" cluster status --cluster "$CLUSTER" --json 2>/dev/null | json '.result.endpoints'; }
# endpoints_are N: the store lists exactly N endpoints (no stale one)
endpoints_are() { [ "$(store_endpoints)" = "$1" ]; }
route_to() { ip -n "$(node_ns "$1")" route show exact "$2"; }
# has_route I J: node I routes node J's pod CIDR via J's node IP on its uplink, with pn's protocol
has_route() { route_to "$1" "$(node_cidr "$2")" | grep -q "via $(node_ip "$2") dev eth0 proto 112"; }
ipcache_is() { [ "$(ipcache_node "$1" "$2")" = "$3" ]; }

step "the world: switch $SW_NS (bridge), etcd in $ETCD_NS, nodes $(node_ns 1)…$(node_ns 4) (routing bpf), no static routes"
for ns in "${ALL_NS[@]}"; do ns_add "$ns"; done
specs=()
for i in "${NODES[@]}"; do specs+=("$(node_ns "$i"):$(node_ip "$i")"); done
switch_nodes "$SW_NS" "${specs[@]}" "$ETCD_NS:$ETCD_IP"
for i in "${NODES[@]}"; do
  pn_in "$(node_ns "$i")" "$(node_state "$i")" node init --name "$(node_name "$i")" --device eth0 --pod-cidr "$(node_cidr "$i")" --routing bpf >/dev/null
  echo "node $i: $(node_name "$i"), uplink $(node_ip "$i"), pod CIDR $(node_cidr "$i")"
done
start_etcd
echo "etcd $(etcd --version | head -1 | awk '{print $3}') on $ETCD_IP:2379 (pid $(cat "$WORK/etcd.pid"))"

step "the cluster: pn cluster init, then one agent per node with --cluster --auto-direct-routes (lease TTL $TTL s)"
show pn_at "$N1" cluster init --cluster "$CLUSTER"
declare -A AGENT
for i in "${NODES[@]}"; do
  AGENT[$i]=$(start_agent "$i") || die "pn agent start on node $i failed"
  echo "agent on node $i: pid ${AGENT[$i]}"
done
until_ok 20 "four nodes alive and converged" all_converged 4
show pn_at "$N1" cluster status --cluster "$CLUSTER"
for i in "${NODES[@]}"; do for j in "${NODES[@]}"; do
  [ "$i" = "$j" ] || until_ok 10 "node $i's route to $(node_cidr "$j")" has_route "$i" "$j"
done; done
echo "node 1's routes: one per other node, via its node IP, marked with pn's route protocol (112)"
show ip -n "$N1" route

step "pods on every node through the native CNI client (dist/native/pn-cni -> the node's agent)"
declare -A CIP BIP
for i in "${NODES[@]}"; do
  cni "$i" ADD "$LAB_ID-c$i" "$(client_ns "$i")" >"$WORK/add.json" || die "CNI ADD of client $i failed"
  cni "$i" ADD "$LAB_ID-b$i" "$(backend_ns "$i")" >/dev/null || die "CNI ADD of backend $i failed"
  CIP[$i]=$(pod_ip "$(client_ns "$i")")
  BIP[$i]=$(pod_ip "$(backend_ns "$i")")
  echo "node $i: client ${CIP[$i]}, backend b$i ${BIP[$i]}"
done
echo "\$ CNI_COMMAND=ADD CNI_CONTAINERID=$LAB_ID-c4 CNI_NETNS=/run/netns/$(client_ns 4) CNI_IFNAME=eth0 dist/native/pn-cni <<< '{…\"stateDir\":\"$(node_state 4)\"}'"
cat "$WORK/add.json"; echo
for i in "${NODES[@]}"; do for j in "${NODES[@]}"; do
  [ "$i" = "$j" ] || until_ok 10 "b$j's ${BIP[$j]} in node $i's pn_ipcache" ipcache_is "$i" "${BIP[$j]}/32" "$(node_ip "$j")"
done; done
until_ok 10 "8 endpoints in the store" endpoints_are 8
echo "every pod is in every other node's pn_ipcache with its node's IP (the store lists $(store_endpoints) endpoints):"
show pn_in "$N1" "$(node_state 1)" bpf map dump pn_ipcache
for i in 2 3 4; do
  show ip netns exec "$(client_ns 1)" ping -c 1 -W 1 "${BIP[$i]}" >/dev/null || die "client 1 -> b$i (${BIP[$i]}) failed"
done
echo "client 1 reaches b2, b3 and b4 on the other nodes"

step "backends: the python server of lab 04 in b1…b4 (TCP and UDP on 8080, answers with its name)"
for i in "${NODES[@]}"; do
  ip netns exec "$(backend_ns "$i")" python3 "$PY/server.py" 8080 "b$i" >/dev/null 2>&1 & echo $! >"$WORK/b$i.pid"
done
for i in "${NODES[@]}"; do until_ok 5 "b$i listening" ip netns exec "$(backend_ns "$i")" bash -c "exec 3<>/dev/tcp/127.0.0.1/8080"; done

step "the services, written ONCE to the store (from node 1); every agent programs them on its node"
cat >"$WORK/services.json" <<JSON
[
  {"frontend": "$VIP:80/tcp", "backends": ["${BIP[1]}:8080", "${BIP[2]}:8080", "${BIP[3]}:8080", "${BIP[4]}:8080"]},
  {"frontend": "$VIP:53/udp", "backends": ["${BIP[1]}:8080", "${BIP[2]}:8080", "${BIP[3]}:8080", "${BIP[4]}:8080"]}
]
JSON
cat "$WORK/services.json"
show pn_at "$N1" service apply "$WORK/services.json" --cluster "$CLUSTER"
show pn_at "$(node_ns 3)" service list --cluster "$CLUSTER"
until_ok 20 "four nodes converged on the services" all_converged 4
for i in "${NODES[@]}"; do
  n=$(pn_in "$(node_ns "$i")" "$(node_state "$i")" service list --json | json '.result.filter(s=>s.backends.length===4).length')
  [ "$n" = 2 ] || die "node $i has $n service(s) with 4 backends, not 2"
done
echo "node 4's table (written by its agent, nobody ran pn service apply there):"
show pn_in "$(node_ns 4)" "$(node_state 4)" service list
show pn_in "$(node_ns 4)" "$(node_state 4)" bpf map dump pn_lb4_backends
show pn_at "$N1" cluster status --cluster "$CLUSTER"

step "from the client pod on every node: 200 TCP connections and 100 UDP datagrams to the VIP"
for i in "${NODES[@]}"; do
  out=$(ip netns exec "$(client_ns "$i")" python3 "$PY/client.py" tcp "$VIP" 80 200)
  echo "client $i tcp: $out"
  for b in 1 2 3 4; do [[ $out == *"b$b="* ]] || die "client $i: b$b never answered over TCP"; done
  [[ $out == *"peers seen: $VIP:80 |"* && $out == *"failures: 0" ]] || die "client $i: TCP through the VIP failed"
  out=$(ip netns exec "$(client_ns "$i")" python3 "$PY/client.py" udp "$VIP" 53 100)
  echo "client $i udp: $out"
  [[ $out == *"peers seen: $VIP:53 |"* && $out == *"failures: 0" ]] || die "client $i: UDP through the VIP failed"
done

step "node 4's agent is SIGKILLed (pid ${AGENT[4]}): its lease runs out, the others drop its pods and its route"
before=$(remote_count 1 "$(node_ip 4)")
echo "before, on node 1: route to $(node_cidr 4) and $before pn_ipcache entries via $(node_ip 4)"
[ "$before" -ge 2 ] && [ "$(fast_count 1 "$(node_ip 4)")" = "$before" ] || die "bpftool and pn disagree on node 1's pn_ipcache"
show ip -n "$N1" route show exact "$(node_cidr 4)"
killed=$(ms)
kill -KILL "${AGENT[4]}"
# One watcher per node, polling every 50 ms: the time its route is gone, and the time no entry of
# its pn_ipcache points at node 4 (read with bpftool from the pin: a pn call takes longer than the
# precision wanted here; pn bpf map dump confirms below).
for i in 1 2 3; do
  (
    r=""
    while :; do
      [ -n "$r" ] || has_route "$i" 4 || r=$(($(ms) - killed))
      [ "$(fast_count "$i" "$(node_ip 4)")" != 0 ] || break
      sleep 0.05
    done
    while has_route "$i" 4; do sleep 0.05; done
    echo "$i ${r:-$(($(ms) - killed))} $(($(ms) - killed))" >"$WORK/gone.$i"
  ) & echo $! >"$WORK/watch$i.pid"
done
for i in 1 2 3; do
  for _ in $(seq 150); do [ -s "$WORK/gone.$i" ] && break; sleep 0.1; done
  kill "$(cat "$WORK/watch$i.pid")" 2>/dev/null || true; rm -f "$WORK/watch$i.pid"
  [ -s "$WORK/gone.$i" ] || die "node 4's state still on node $i 15 s after the kill"
  read -r _ r c <"$WORK/gone.$i"
  echo "node $i: route to $(node_cidr 4) gone after $r ms, its pn_ipcache entries after $c ms"
  [ "$r" -le $(((TTL + 1) * 1000)) ] && [ "$c" -le $(((TTL + 1) * 1000)) ] || die "node $i took longer than the lease TTL $TTL s + 1 s"
  [ "$(remote_count "$i" "$(node_ip 4)")" = 0 ] && ! has_route "$i" 4 || die "node 4's state came back on node $i"
done
show ip -n "$N1" route
show pn_in "$N1" "$(node_state 1)" bpf map dump pn_ipcache
show pn_at "$N1" cluster status --cluster "$CLUSTER"
has_route 1 2 || die "node 1 lost its route to node 2"
endpoints_are 6 || die "the store lists $(store_endpoints) endpoints, not 6 (node 4's went with its lease)"

step "node 4's agent starts again: it registers, republishes its pods and the others route to it again"
AGENT[4]=$(start_agent 4) || die "pn agent start on node 4 failed"
echo "agent on node 4: pid ${AGENT[4]}"
for i in 1 2 3; do
  until_ok 15 "node $i's route to node 4" has_route "$i" 4
  until_ok 15 "b4 in node $i's pn_ipcache" ipcache_is "$i" "${BIP[4]}/32" "$(node_ip 4)"
done
until_ok 20 "four nodes converged" all_converged 4
until_ok 10 "8 endpoints in the store" endpoints_are 8
out=$(ip netns exec "$(client_ns 1)" python3 "$PY/client.py" tcp "$VIP" 80 100)
echo "client 1 tcp: $out"
[[ $out == *"b4="* && $out == *"failures: 0" ]] || die "b4 not reached through the VIP again"

step "etcd stops: a held connection through the VIP carries on, and a new pod on node 2 gets its network"
mkfifo "$WORK/hold.fifo"
ip netns exec "$(client_ns 1)" python3 "$PY/hold.py" "$VIP" 80 "$WORK/hold.fifo" >"$WORK/hold.out" 2>&1 & echo $! >"$WORK/hold.pid"
until_ok 5 "the held connection" grep -q "held connection" "$WORK/hold.out"
cat "$WORK/hold.out"
echo "\$ kill $(cat "$WORK/etcd.pid")   # etcd"
stop_etcd
until_ok 15 "node 2's agent to see the store gone" bash -c "ip netns exec $(node_ns 2) node $PN_REPO/bin/run.js agent status --state-dir $(node_state 2) --json | grep -q '\"store\": *\"retrying\"'"
echo "before-outage-echo" >"$WORK/hold.fifo"
until_ok 5 "the echo on the held connection" grep -q "echo: before-outage-echo" "$WORK/hold.out"
cat "$WORK/hold.out"
t=$(ms)
NEW_RESULT=$(cni 2 ADD "$LAB_ID-new" "$NEW_NS") || die "CNI ADD on node 2 failed with etcd down"
echo "CNI ADD of a new pod on node 2 with etcd down: $(($(ms) - t)) ms"
echo "$NEW_RESULT"
NEW_IP=$(pod_ip "$NEW_NS")
show ip netns exec "$NEW_NS" ping -c 2 -i 0.2 -W 1 "${BIP[1]}" || die "the new pod cannot reach b1 on node 1"
out=$(ip netns exec "$NEW_NS" python3 "$PY/client.py" tcp "$VIP" 80 50)
echo "new pod tcp: $out"
[[ $out == *"failures: 0" ]] || die "the new pod cannot reach the VIP"
show pn_in "$(node_ns 2)" "$(node_state 2)" agent status
if pn_at "$N1" cluster status --cluster "$CLUSTER" >/dev/null 2>&1; then die "pn cluster status answered with etcd down"; fi
echo "pn cluster status with etcd down: fails (as it should) with:"
pn_at "$(node_ns 2)" cluster status --cluster "$CLUSTER" --state-dir "$(node_state 2)" 2>&1 | head -3 || true

step "etcd restarts: node 2's queued publication goes out, and a service added now converges on every node"
start_etcd
until_ok 20 "the new pod $NEW_IP in node 1's pn_ipcache" ipcache_is 1 "$NEW_IP/32" "$(node_ip 2)"
until_ok 10 "9 endpoints in the store" endpoints_are 9
echo "the new pod $NEW_IP (published once etcd answered) is in node 1's pn_ipcache via $(ipcache_node 1 "$NEW_IP/32")"
echo "after-outage-echo" >"$WORK/hold.fifo"
until_ok 5 "the echo on the held connection" grep -q "echo: after-outage-echo" "$WORK/hold.out"
cat "$WORK/hold.out"
echo quit >"$WORK/hold.fifo"
cat >"$WORK/services2.json" <<JSON
[
  {"frontend": "$VIP:80/tcp", "backends": ["${BIP[1]}:8080", "${BIP[2]}:8080", "${BIP[3]}:8080", "${BIP[4]}:8080"]},
  {"frontend": "$VIP:53/udp", "backends": ["${BIP[1]}:8080", "${BIP[2]}:8080", "${BIP[3]}:8080", "${BIP[4]}:8080"]},
  {"frontend": "$VIP2:80/tcp", "backends": ["${BIP[2]}:8080", "${BIP[3]}:8080"]}
]
JSON
t=$(ms)
show pn_at "$N1" service apply "$WORK/services2.json" --cluster "$CLUSTER"
until_ok 20 "four nodes converged on the new service" all_converged 4
echo "every node converged $(($(ms) - t)) ms after the write"
show pn_at "$N1" cluster status --cluster "$CLUSTER"
for i in "${NODES[@]}"; do
  out=$(ip netns exec "$(client_ns "$i")" python3 "$PY/client.py" tcp "$VIP2" 80 40)
  echo "client $i -> $VIP2:80: $out"
  [[ $out == *"b2="* && $out == *"b3="* && $out == *"failures: 0" ]] || die "client $i: the new service does not answer from b2 and b3"
done

step "teardown: agents and etcd stopped by pid, pn node reset, namespaces and pins removed"
pids="${AGENT[*]} $(cat "$WORK"/*.pid)"
trap - EXIT
bash "$HERE/teardown.sh"
left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^pn-$LAB_ID-" || true)
[ -z "$left" ] || die "namespaces left: $left"
for i in "${NODES[@]}"; do
  [ ! -e "$PN_BPFFS/$(node_name "$i")" ] || die "pins left under $PN_BPFFS/$(node_name "$i")"
done
for pid in $pids; do ! kill -0 "$pid" 2>/dev/null || die "process $pid (agent, etcd or server) still running"; done
[ ! -e "$LAB_DIR" ] || die "$LAB_DIR left"
echo "no pn-$LAB_ID-* namespace, no pins under $PN_BPFFS/$LAB_ID-n*, no agent, etcd or server left"

echo
echo "lab 07: OK"
