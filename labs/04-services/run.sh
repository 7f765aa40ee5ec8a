#!/usr/bin/env bash
# Lab 04: services load-balanced in BPF (pn's kube-proxy replacement). Two nodes (netns) on a
# bridge "switch" with etcd on it; each node runs `pn agent start --cluster … --auto-direct-routes`
# (routes to the other node's pod CIDR, no static routes). Node 1 has a client pod and backend
# b1, node 2 has backend b2. The service file is written ONCE to the cluster store
# (`pn service apply FILE --cluster`) and both agents program it. The client reaches VIP:80 (TCP)
# and VIP:53 (UDP); answers come from both backends, and the client only ever sees the VIP. Then
# a backend is removed while a connection to the other one stays up, a service without backends
# drops, and the service is deleted, each one write to the store. Tears everything down unless
# PN_LAB_KEEP=1.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/env.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

need_root
need_cmds ip tc bpftool clang node python3 stat etcd
for ns in "$SW_NS" "$ETCD_NS" "$N1_NS" "$N2_NS" "$CLIENT_NS" "$B1_NS" "$B2_NS"; do
  ! ns_exists "$ns" || die "$ns already exists (a previous run kept? run $HERE/teardown.sh)"
done
ensure_built
ensure_bpffs
on_exit "bash $HERE/teardown.sh"
mkdir -p "$WORK"

step "the world: switch $SW_NS, nodes $N1_NS and $N2_NS (routing bpf), etcd in $ETCD_NS on the same switch"
for ns in "$SW_NS" "$ETCD_NS" "$N1_NS" "$N2_NS" "$CLIENT_NS" "$B1_NS" "$B2_NS"; do ns_add "$ns"; done
switch_nodes "$SW_NS" "$N1_NS:$N1_UPLINK_IP" "$N2_NS:$N2_UPLINK_IP" "$ETCD_NS:$ETCD_IP"
pn_in "$N1_NS" "$N1_STATE" node init --name "$N1_NAME" --device eth0 --pod-cidr "$N1_CIDR" --routing bpf >/dev/null
pn_in "$N2_NS" "$N2_STATE" node init --name "$N2_NAME" --device eth0 --pod-cidr "$N2_CIDR" --routing bpf >/dev/null
start_etcd "$ETCD_NS" "$ETCD_IP" "$ETCD_DIR"

step "the cluster: pn cluster init, one agent per node (--cluster --auto-direct-routes: no static routes)"
show pn_cluster "$N1_NS" cluster init --cluster "$CLUSTER"
pn_in "$N1_NS" "$N1_STATE" agent start --cluster "$CLUSTER" --auto-direct-routes --lease-ttl 5 >/dev/null
pn_in "$N2_NS" "$N2_STATE" agent start --cluster "$CLUSTER" --auto-direct-routes --lease-ttl 5 >/dev/null
wait_converged 30 "$N1_NS" "$CLUSTER" 2
show pn_cluster "$N1_NS" cluster status --cluster "$CLUSTER"
ip -n "$N1_NS" route show "$N2_CIDR" | grep -q "via $N2_UPLINK_IP dev eth0 proto 112" || die "node 1 has no route to $N2_CIDR from its agent"
ip -n "$N2_NS" route show "$N1_CIDR" | grep -q "via $N1_UPLINK_IP dev eth0 proto 112" || die "node 2 has no route to $N1_CIDR from its agent"
show ip -n "$N1_NS" route show "$N2_CIDR"
for spec in "$N1_NS:$N1_STATE:$CLIENT_NS:$CLIENT_IP" "$N1_NS:$N1_STATE:$B1_NS:$B1_IP" "$N2_NS:$N2_STATE:$B2_NS:$B2_IP"; do
  IFS=: read -r node state pod ip <<<"$spec"
  pn_in "$node" "$state" veth create --container-id "$pod" --netns "/run/netns/$pod" --ip "$ip" >/dev/null
  pn_in "$node" "$state" bpf load --container-id "$pod" >/dev/null
done
echo "client $CLIENT_IP and backend b1 $B1_IP on node 1, backend b2 $B2_IP on node 2"

step "backends: a tiny python server in b1 and b2 (TCP and UDP on 8080, answers with its name)"
ip netns exec "$B1_NS" python3 "$HERE/server.py" 8080 b1 >/dev/null 2>&1 & echo $! >"$WORK/b1.pid"
ip netns exec "$B2_NS" python3 "$HERE/server.py" 8080 b2 >/dev/null 2>&1 & echo $! >"$WORK/b2.pid"
sleep 0.5

step "one service file, written ONCE to the cluster store; every node's agent programs it (each node holds every service, as in Cilium)"
cat >"$WORK/services.json" <<JSON
[
  {"frontend": "$VIP:80/tcp", "backends": ["$B1_IP:8080", "$B2_IP:8080"]},
  {"frontend": "$VIP:53/udp", "backends": ["$B1_IP:8080", "$B2_IP:8080"]}
]
JSON
cat "$WORK/services.json"
show pn_in "$N1_NS" "$N1_STATE" service apply "$WORK/services.json" --dry-run   # what the table would change on node 1
show pn_cluster "$N1_NS" service apply "$WORK/services.json" --cluster "$CLUSTER"
wait_converged 30 "$N1_NS" "$CLUSTER" 2
show pn_cluster "$N1_NS" service list --cluster "$CLUSTER"
for pair in "$N1_NS:$N1_STATE" "$N2_NS:$N2_STATE"; do
  [ "$(pn_in "${pair%%:*}" "${pair##*:}" service list --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).result.length))')" = 2 ] || die "${pair%%:*} does not hold the 2 services"
done
echo "both nodes hold the 2 services (their agents applied the cluster's table):"
show pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_lb4_services
show pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_lb4_backends

step "TCP: 300 new connections from the client to $VIP:80"
out=$(ip netns exec "$CLIENT_NS" python3 "$HERE/client.py" tcp "$VIP" 80 300)
echo "$out"
[[ $out == *"b1="* && $out == *"b2="* ]] || die "not every backend answered"
[[ $out == *"peers seen: $VIP:80 |"* ]] || die "the client saw a peer other than the VIP"
[[ $out == *"failures: 0" ]] || die "connections failed"

step "UDP: 100 datagrams from new sockets to $VIP:53"
out=$(ip netns exec "$CLIENT_NS" python3 "$HERE/client.py" udp "$VIP" 53 100)
echo "$out"
[[ $out == *"b1="* && $out == *"b2="* && $out == *"peers seen: $VIP:53 |"* && $out == *"failures: 0" ]] || die "UDP through the VIP failed"

step "pn monitor on node 1 while the client opens one connection to $VIP:80: each packet shows the service it was sent to"
monitor_around "$N1_NS" "$N1_STATE" 3 "--from-ip $CLIENT_IP --type trace" ip netns exec "$CLIENT_NS" python3 "$HERE/client.py" tcp "$VIP" 80 1

step "per-service counters and the conntrack entries behind them"
show pn_in "$N1_NS" "$N1_STATE" service list
pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_ct4 >"$WORK/ct.txt"
echo "\$ pn bpf map dump pn_ct4 | head -4    ($(wc -l <"$WORK/ct.txt") entries)"
head -4 "$WORK/ct.txt"
grep -q "dir=service" "$WORK/ct.txt" && grep -q "dir=reply" "$WORK/ct.txt" || die "no conntrack entries"

step "pn status: node 1 after the build-up"
show pn_in "$N1_NS" "$N1_STATE" status

step "remove b1 while a connection to b2 is open: it survives, new connections all go to b2"
mkfifo "$WORK/hold.fifo"
held=""
for _ in $(seq 1 20); do
  ip netns exec "$CLIENT_NS" python3 "$HERE/hold.py" "$VIP" 80 "$WORK/hold.fifo" >"$WORK/hold.out" 2>&1 & echo $! >"$WORK/hold.pid"
  for _ in $(seq 1 30); do [ -s "$WORK/hold.out" ] && break; sleep 0.1; done
  if grep -q "to b2 " "$WORK/hold.out"; then held=yes; break; fi
  echo quit >"$WORK/hold.fifo"; wait "$(cat "$WORK/hold.pid")" 2>/dev/null || true
done
[ -n "$held" ] || die "could not get a connection on b2"
cat "$WORK/hold.out"
cat >"$WORK/services-b2.json" <<JSON
[
  {"frontend": "$VIP:80/tcp", "backends": ["$B2_IP:8080"]},
  {"frontend": "$VIP:53/udp", "backends": ["$B1_IP:8080", "$B2_IP:8080"]}
]
JSON
show pn_cluster "$N1_NS" service apply "$WORK/services-b2.json" --cluster "$CLUSTER"
wait_converged 30 "$N1_NS" "$CLUSTER" 2
echo "after-update" >"$WORK/hold.fifo"
for _ in $(seq 1 30); do grep -q "echo: after-update" "$WORK/hold.out" && break; sleep 0.1; done
cat "$WORK/hold.out"
grep -q "echo: after-update" "$WORK/hold.out" || die "the established connection to b2 did not survive the update"
echo quit >"$WORK/hold.fifo"
out=$(ip netns exec "$CLIENT_NS" python3 "$HERE/client.py" tcp "$VIP" 80 100)
echo "$out"
[[ $out == "answered by: b2=100 "* ]] || die "new connections still reach the removed backend"

step "a service with no backends drops (counted), it never leaks to the network"
cat >"$WORK/services-81.json" <<JSON
[
  {"frontend": "$VIP:80/tcp", "backends": ["$B2_IP:8080"]},
  {"frontend": "$VIP:53/udp", "backends": ["$B1_IP:8080", "$B2_IP:8080"]},
  {"frontend": "$VIP:81/tcp", "backends": []}
]
JSON
show pn_cluster "$N1_NS" service apply "$WORK/services-81.json" --cluster "$CLUSTER"
wait_converged 30 "$N1_NS" "$CLUSTER" 2
ip netns exec "$CLIENT_NS" python3 "$HERE/client.py" tcp "$VIP" 81 2
pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_metrics | grep DROP_NO_SERVICE || die "no DROP_NO_SERVICE count"

step "delete the service (the table without it, written once): the VIP is unreachable again"
node -e 'const l=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(JSON.stringify(l.filter(s=>!s.frontend.endsWith(":80/tcp")),null,2))' "$WORK/services-81.json" >"$WORK/services-del.json"
show pn_cluster "$N1_NS" service apply "$WORK/services-del.json" --cluster "$CLUSTER"
wait_converged 30 "$N1_NS" "$CLUSTER" 2
out=$(ip netns exec "$CLIENT_NS" python3 "$HERE/client.py" tcp "$VIP" 80 2)
echo "$out"
[[ $out == *"failures: 2" ]] || die "the VIP still answers after delete"
show pn_in "$N1_NS" "$N1_STATE" service list
[ "$(pn_in "$N2_NS" "$N2_STATE" service list --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).result.map(x=>x.frontend).filter(f=>f.endsWith(":80/tcp")).length))')" = 0 ] || die "node 2 still holds $VIP:80"

step "the agents stop (pn agent stop): their nodes leave the store when their leases expire"
show pn_in "$N1_NS" "$N1_STATE" agent stop
show pn_in "$N2_NS" "$N2_STATE" agent stop
wait_alive 20 "$N1_NS" "$CLUSTER" 0
show pn_cluster "$N1_NS" cluster status --cluster "$CLUSTER"

echo
echo "lab 04: OK"
