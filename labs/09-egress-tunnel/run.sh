#!/usr/bin/env bash
# Lab 09: leaving the cluster and coming in. Three nodes on two L3 subnets behind a router that
# knows no pod CIDR and runs no BGP, and an "internet" host behind the same router.
#   1. native routing with BPF masquerade: pods reach the internet host, which sees the node's IP;
#   2. a NodePort service (externalTrafficPolicy Local): the internet host reaches nodeIP:30080 on
#      every node and the node's own pod answers, seeing the client's IP; pods on different
#      subnets cannot reach each other (the router has no pod routes);
#   3. the same cluster in VXLAN tunnel mode (pn node init --tunnel vxlan, peers by hand): pods on
#      every node reach each other over the router that still knows no pod CIDR, masquerade keeps
#      working, and a NodePort with externalTrafficPolicy Cluster answers from a backend on either
#      subnet through any node.
# Tears everything down unless PN_LAB_KEEP=1.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
PY=$HERE/../04-services   # the tiny python server and client of lab 04

need_root
need_cmds ip tc bpftool clang node python3
ALL_NS=("$RTR_NS" "$INET_NS" "$SW_NS")
for i in "${NODES[@]}"; do ALL_NS+=("$(node_ns "$i")" "$(pod_ns "$i")"); done
for ns in "${ALL_NS[@]}"; do
  [ ! -e "/run/netns/$ns" ] || die "$ns already exists (a previous run kept? run $HERE/teardown.sh)"
done
ensure_built
ensure_bpffs
on_exit "bash $HERE/teardown.sh"
mkdir -p "$WORK"

json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(eval("v"+process.argv[1]))})' "$1"; }
# What a runtime does (the native client; no agent here, so its standalone path): cni I COMMAND
cni() {
  local i=$1 cmd=$2
  local conf="{\"cniVersion\":\"1.0.0\",\"name\":\"pn-lab\",\"type\":\"pn\",\"stateDir\":\"$(node_state "$i")\"}"
  ip netns exec "$(node_ns "$i")" env -i PATH="$PATH" CNI_COMMAND="$cmd" CNI_CONTAINERID="$LAB_ID-p$i" CNI_NETNS="/run/netns/$(pod_ns "$i")" \
    CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin "$PN_REPO/dist/native/pn-cni" <<<"$conf"
}
pod_ip() { ip -n "$(pod_ns "$1")" -j addr show dev eth0 | json '[0].addr_info.find(a=>a.family==="inet").local'; }
declare -A PIP
# init_nodes EXTRA_FLAGS…: pn node init on every node, then a pod with a server on 8080 on each
init_nodes() {
  for i in "${NODES[@]}"; do
    pn_in "$(node_ns "$i")" "$(node_state "$i")" node init --name "$(node_name "$i")" --device eth0 --pod-cidr "$(node_cidr "$i")" \
      --routing bpf --masquerade bpf --non-masquerade-cidr "$CLUSTER_CIDR" --non-masquerade-cidr "$NODE_NET" "$@" --json >/dev/null || die "pn node init on node $i failed"
    ns_add "$(pod_ns "$i")"
    cni "$i" ADD >/dev/null || die "CNI ADD on node $i failed"
    PIP[$i]=$(pod_ip "$i")
    ip netns exec "$(pod_ns "$i")" python3 "$PY/server.py" 8080 "pod$i" >/dev/null 2>&1 & echo $! >"$WORK/pod$i.pid"
  done
  for i in "${NODES[@]}"; do
    for _ in $(seq 50); do ip netns exec "$(pod_ns "$i")" bash -c "exec 3<>/dev/tcp/127.0.0.1/8080" 2>/dev/null && break; sleep 0.1; done
    echo "node $i ($(node_ip "$i")): pod ${PIP[$i]} serving 8080, mtu $(ip -n "$(pod_ns "$i")" -j link show eth0 | json '[0].mtu')"
  done
}
reset_nodes() {
  for i in "${NODES[@]}"; do
    kill "$(cat "$WORK/pod$i.pid")" 2>/dev/null || true
    cni "$i" DEL >/dev/null || die "CNI DEL on node $i failed"
    ns_del "$(pod_ns "$i")"
    pn_in "$(node_ns "$i")" "$(node_state "$i")" node reset --json >/dev/null || die "pn node reset on node $i failed"
  done
}
# services POLICY BACKEND_PODS…: the same NodePort file on every node (no cluster store in this lab)
services() {
  local policy=$1 b list=""
  shift
  for b in "$@"; do list+="${list:+, }\"${PIP[$b]}:8080\""; done
  cat >"$WORK/services.json" <<JSON
[{"frontend": "10.96.9.10:80/tcp", "backends": [$list], "type": "NodePort", "nodePort": 30080, "externalTrafficPolicy": "$policy"}]
JSON
  cat "$WORK/services.json"
  for i in "${NODES[@]}"; do pn_in "$(node_ns "$i")" "$(node_state "$i")" service apply "$WORK/services.json" --json >/dev/null || die "service apply on node $i failed"; done
}
# egress I: pod i → the internet host, 20 connections; the host must see node i's IP (masquerade)
egress() {
  local out seen
  out=$(ip netns exec "$(pod_ns "$1")" python3 "$PY/client.py" tcp "$INET_IP" 8080 20)
  echo "pod $1 (${PIP[$1]}) -> $INET_IP:8080: $out"
  [[ $out == *"failures: 0"* ]] || die "pod $1 could not reach the internet host"
  # The server's greeting names the client address it saw.
  seen=$(ip netns exec "$(pod_ns "$1")" python3 -c "import socket; s = socket.create_connection(('$INET_IP', 8080), 2); print(s.makefile().readline().split()[1])")
  echo "  the internet host saw $seen"
  [[ $seen == "$(node_ip "$1")":* ]] || die "the internet host saw $seen, not node $1's IP $(node_ip "$1")"
}
# nodeport I PODS…: the internet host → node i's IP:30080, 40 connections; each named pod answers
nodeport() {
  local i=$1 out p
  shift
  out=$(ip netns exec "$INET_NS" python3 "$PY/client.py" tcp "$(node_ip "$i")" 30080 40)
  echo "internet -> $(node_ip "$i"):30080 (node $i): $out"
  [[ $out == *"failures: 0"* ]] || die "NodePort on node $i: connections failed"
  for p in "$@"; do [[ $out == *"pod$p="* ]] || die "NodePort on node $i: pod $p never answered"; done
}
pod_to_pod() { ip netns exec "$(pod_ns "$1")" python3 "$PY/client.py" tcp "${PIP[$2]}" 8080 5; }

step "the world: router $RTR_NS (subnet A 172.30.91.0/24: nodes 1, 2; subnet B 172.30.92.0/24: node 3; internet 203.0.113.0/24)"
for ns in "${ALL_NS[@]}"; do [[ $ns == *-p[0-9] ]] || ns_add "$ns"; done
ip -n "$RTR_NS" link add swA type veth peer name rtrA netns "$SW_NS"
ip -n "$SW_NS" link add br0 type bridge; ip -n "$SW_NS" link set br0 up; ip -n "$SW_NS" link set rtrA master br0 up
ip -n "$RTR_NS" addr add 172.30.91.254/24 dev swA; ip -n "$RTR_NS" link set swA up
for i in 1 2; do
  ip -n "$(node_ns "$i")" link add eth0 type veth peer name "n$i" netns "$SW_NS"
  ip -n "$SW_NS" link set "n$i" master br0 up
done
ip -n "$(node_ns 3)" link add eth0 type veth peer name n3 netns "$RTR_NS"
ip -n "$RTR_NS" addr add 172.30.92.254/24 dev n3; ip -n "$RTR_NS" link set n3 up
for i in "${NODES[@]}"; do
  ip -n "$(node_ns "$i")" addr add "$(node_ip "$i")/24" dev eth0
  ip -n "$(node_ns "$i")" link set eth0 up
  ip -n "$(node_ns "$i")" route add default via "$(node_gw "$i")"
done
ip -n "$INET_NS" link add eth0 type veth peer name inet netns "$RTR_NS"
ip -n "$RTR_NS" addr add 203.0.113.1/24 dev inet; ip -n "$RTR_NS" link set inet up
ip -n "$INET_NS" addr add "$INET_IP/24" dev eth0; ip -n "$INET_NS" link set eth0 up
ip -n "$INET_NS" route add default via 203.0.113.1
ip netns exec "$RTR_NS" sysctl -qw net.ipv4.ip_forward=1
echo "the router's routes (no pod CIDR, no BGP):"
show ip -n "$RTR_NS" route
ip netns exec "$INET_NS" python3 -u "$PY/server.py" 8080 inet >/dev/null 2>&1 & echo $! >"$WORK/inet.pid"

step "native routing, BPF masquerade (pn node init --masquerade bpf --non-masquerade-cidr $CLUSTER_CIDR --non-masquerade-cidr $NODE_NET)"
init_nodes
show pn_in "$(node_ns 1)" "$(node_state 1)" node show
for i in "${NODES[@]}"; do egress "$i"; done
show pn_in "$(node_ns 1)" "$(node_state 1)" bpf map dump pn_snat4

step "NodePort 30080, externalTrafficPolicy Local: each node sends the internet host to its own pod, keeping the client IP"
services Local 1 2 3
show pn_in "$(node_ns 2)" "$(node_state 2)" service list
for i in "${NODES[@]}"; do nodeport "$i" "$i"; done
seen=$(ip netns exec "$INET_NS" python3 -c "import socket; s = socket.create_connection(('$(node_ip 3)', 30080), 2); print(s.makefile().readline().strip())")
echo "pod 3's greeting through node 3: $seen (the internet host's own address: Local keeps it)"
[[ $seen == "pod3 $INET_IP:"* ]] || die "Local did not keep the client IP: $seen"
out=$(pod_to_pod 1 3)
echo "pod 1 -> pod 3 (${PIP[3]}) in native routing: $out"
[[ $out == *"failures: 5"* ]] || die "pod 1 reached pod 3 although the router knows no pod CIDR"
echo "as expected: the router has no route to $(node_cidr 3) and drops it"

step "the same cluster in VXLAN tunnel mode (pn node init --tunnel vxlan; peers added by hand with pn node peer add)"
reset_nodes
init_nodes --tunnel vxlan
for i in "${NODES[@]}"; do for j in "${NODES[@]}"; do
  [ "$i" = "$j" ] || pn_in "$(node_ns "$i")" "$(node_state "$i")" node peer add "$(node_name "$j")" --node-ip "$(node_ip "$j")" --pod-cidr "$(node_cidr "$j")" --json >/dev/null || die "peer add $j on node $i failed"
done; done
show pn_in "$(node_ns 1)" "$(node_state 1)" node peer list
show ip -n "$(node_ns 1)" -d link show pn_vxlan
for i in "${NODES[@]}"; do for j in "${NODES[@]}"; do
  [ "$i" = "$j" ] && continue
  out=$(pod_to_pod "$i" "$j")
  echo "pod $i -> pod $j (${PIP[$j]}): $out"
  [[ $out == *"failures: 0"* ]] || die "pod $i could not reach pod $j through the tunnel"
done; done
echo "the router still has no pod route; it forwarded only UDP 8472 between node IPs"
show ip -n "$RTR_NS" route
for i in "${NODES[@]}"; do egress "$i"; done
step "NodePort 30080, externalTrafficPolicy Cluster, backends pod 1 (subnet A) and pod 3 (subnet B): any node, either backend"
services Cluster 1 3
for i in "${NODES[@]}"; do nodeport "$i" 1 3; done
show pn_in "$(node_ns 3)" "$(node_state 3)" status

step "done: masquerade, NodePort on every node, and a tunnel over a router that knows no pod CIDR"
