#!/usr/bin/env bash
# Lab 05: two nodes behind a top-of-rack router, no static routes. The ToR runs bird2 and is the
# nodes' default gateway; the cluster store (and its pool) lives on etcd (PN_LAB_POOL=file: a
# directory). Each node takes its pod CIDR from the cluster's pool (pn node init --pool),
# announces it to the ToR with BGP (pn bgp up), registers in the cluster through its agent
# (pn agent start --cluster … --reach bgp: BGP keeps the routing, the agent adds no route), and
# plugs in two pods (pn cni add). Proof: the ToR learned both pod CIDRs by BGP with the node IPs
# as next hops, nobody holds a static route for a pod CIDR, and pods on different nodes talk
# (ping, TCP) through the ToR. Then pn bgp down withdraws a CIDR and pn bgp up brings it back.
# Tears everything down unless PN_LAB_KEEP=1.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/env.sh"

need_root
need_cmds ip tc bpftool clang node ping stat bird birdc
[ "$POOL_KIND" = file ] || need_cmds etcd
for ns in "$TOR_NS" "$KV_NS" "$N1_NS" "$N2_NS" "$A1_NS" "$A2_NS" "$B1_NS" "$B2_NS"; do
  ! ns_exists "$ns" || die "$ns already exists (a previous run kept? run $(dirname "$0")/teardown.sh)"
done
ensure_built
ensure_bpffs
on_exit "bash $(dirname "$0")/teardown.sh"
mkdir -p "$LAB_DIR" "$TOR_DIR" "$ETCD_DIR"

json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(eval("v"+process.argv[1]))})' "$1"; }
# wait_for SECONDS WHAT CMD…: poll CMD until it succeeds (generous timeouts, never a timed assertion).
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for i in $(seq $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "timed out after ${secs}s waiting for $what"
}
operator() { ip netns exec "$KV_NS" node "$PN_REPO/bin/run.js" "$@"; }
# tor_route CIDR VIA: the ToR's kernel table has CIDR, learned by bird, via VIA.
tor_route() { ip -n "$TOR_NS" route show "$1" proto bird | grep -q "via $2 "; }
no_tor_route() { ! ip -n "$TOR_NS" route show root "$1" | grep -q .; }

step "the world: ToR $TOR_NS (bridge br0 = $TOR_IP, forwarding), nodes $N1_NS $N2_NS and etcd host $KV_NS on it"
for ns in "$TOR_NS" "$KV_NS" "$N1_NS" "$N2_NS" "$A1_NS" "$A2_NS" "$B1_NS" "$B2_NS"; do ns_add "$ns"; done
ip -n "$TOR_NS" link add br0 type bridge
ip -n "$TOR_NS" addr add "$TOR_IP/24" dev br0
ip -n "$TOR_NS" link set br0 up
ip netns exec "$TOR_NS" sysctl -qw net.ipv4.ip_forward=1
# Router on a stick: nodes share the subnet, so the ToR would otherwise send ICMP redirects.
ip netns exec "$TOR_NS" sysctl -qw net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.br0.send_redirects=0
i=0
for pair in "$N1_NS:$N1_UPLINK_IP" "$N2_NS:$N2_UPLINK_IP" "$KV_NS:$KV_IP"; do
  i=$((i + 1))
  ns=${pair%%:*} ip=${pair##*:}
  ip -n "$ns" link add eth0 type veth peer name "port$i" netns "$TOR_NS"
  ip -n "$TOR_NS" link set "port$i" master br0 up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$TOR_IP"
done
show ip -n "$N1_NS" route

step "the ToR's bird2: a BGP session per node, learned routes into its kernel table, nothing announced back"
cat >"$TOR_DIR/bird.conf" <<EOF
router id $TOR_IP;
log "$TOR_DIR/bird.log" all;
protocol device {}
protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }
protocol bgp node1 { local $TOR_IP as $TOR_AS; neighbor $N1_UPLINK_IP as $N1_AS; connect retry time 5; ipv4 { import all; export none; }; }
protocol bgp node2 { local $TOR_IP as $TOR_AS; neighbor $N2_UPLINK_IP as $N2_AS; connect retry time 5; ipv4 { import all; export none; }; }
EOF
cat "$TOR_DIR/bird.conf"
show ip netns exec "$TOR_NS" bird -c "$TOR_DIR/bird.conf" -s "$TOR_DIR/bird.ctl" -P "$TOR_DIR/bird.pid"

if [ "$POOL_KIND" = file ]; then
  step "the cluster store: a directory ($CLUSTER), its pool $POOL"
else
  step "the cluster store on etcd: one etcd on $KV_IP:2379 in $KV_NS (data in $ETCD_DIR/data); its pool under the same URL"
  start_etcd "$KV_NS" "$KV_IP" "$ETCD_DIR"
fi
show operator cluster init --cluster "$CLUSTER"
show operator pool init --cidr 10.20.30.40/24 --mask-size 26 --pool "$POOL"

step "each node: pn node init --pool (its pod CIDR from the shared pool), then pn bgp up peering with the ToR"
show pn_in "$N1_NS" "$N1_STATE" node init --name "$LAB_ID-n1" --device eth0 --pool "$POOL"
show pn_in "$N2_NS" "$N2_STATE" node init --name "$LAB_ID-n2" --device eth0 --pool "$POOL"
show operator pool show --pool "$POOL"
N1_CIDR=$(pn_in "$N1_NS" "$N1_STATE" node show --json | json '.result.node.podCidrs[0]')
N2_CIDR=$(pn_in "$N2_NS" "$N2_STATE" node show --json | json '.result.node.podCidrs[0]')
[ "$N1_CIDR" = 10.20.30.0/26 ] && [ "$N2_CIDR" = 10.20.30.64/26 ] || die "unexpected pod CIDRs $N1_CIDR $N2_CIDR"
show pn_in "$N1_NS" "$N1_STATE" bgp up --local-as "$N1_AS" --peer "$TOR_IP" --peer-as "$TOR_AS"
show pn_in "$N2_NS" "$N2_STATE" bgp up --local-as "$N2_AS" --peer "$TOR_IP" --peer-as "$TOR_AS"
show cat "$N1_STATE/bgp/bird.conf"

step "each node joins the cluster: pn agent start --cluster … --reach bgp (registered under a lease; BGP keeps the routing)"
show pn_in "$N1_NS" "$N1_STATE" agent start --cluster "$CLUSTER" --reach bgp --lease-ttl 5
show pn_in "$N2_NS" "$N2_STATE" agent start --cluster "$CLUSTER" --reach bgp --lease-ttl 5
wait_converged 30 "$KV_NS" "$CLUSTER" 2
show operator cluster status --cluster "$CLUSTER"
operator cluster status --cluster "$CLUSTER" --json | json '.result.nodes.map(n=>`${n.name} ${n.reach} ${n.podCidrs.join(",")} ${n.nodeIps.join(",")}`).join(";")' >"$LAB_DIR/nodes.txt"
[ "$(cat "$LAB_DIR/nodes.txt")" = "$LAB_ID-n1 bgp $N1_CIDR $N1_UPLINK_IP;$LAB_ID-n2 bgp $N2_CIDR $N2_UPLINK_IP" ] ||
  die "the cluster lists $(cat "$LAB_DIR/nodes.txt"), not both nodes reached by bgp with their pool CIDRs and uplink IPs"

step "two pods per node: pn cni add"
for spec in "$N1_NS:$N1_STATE:$A1_NS" "$N1_NS:$N1_STATE:$A2_NS" "$N2_NS:$N2_STATE:$B1_NS" "$N2_NS:$N2_STATE:$B2_NS"; do
  IFS=: read -r node state pod <<<"$spec"
  show pn_in "$node" "$state" cni add --container-id "$pod" --netns "/run/netns/$pod" --args "K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod#pn-"$LAB_ID"-}"
done
pod_ip() { ip -n "$1" -j addr show dev eth0 | json '[0].addr_info.find(a=>a.family==="inet").local'; }
A1_IP=$(pod_ip "$A1_NS") A2_IP=$(pod_ip "$A2_NS") B1_IP=$(pod_ip "$B1_NS") B2_IP=$(pod_ip "$B2_NS")
echo "a1 $A1_IP, a2 $A2_IP (node 1, $N1_CIDR); b1 $B1_IP, b2 $B2_IP (node 2, $N2_CIDR)"

step "proof 1: the ToR learned both pod CIDRs by BGP (proto bird), the node IPs as next hops"
wait_for 60 "$N1_CIDR via $N1_UPLINK_IP on the ToR" tor_route "$N1_CIDR" "$N1_UPLINK_IP"
wait_for 60 "$N2_CIDR via $N2_UPLINK_IP on the ToR" tor_route "$N2_CIDR" "$N2_UPLINK_IP"
show ip -n "$TOR_NS" route
show birdc -s "$TOR_DIR/bird.ctl" show route
show pn_in "$N1_NS" "$N1_STATE" bgp status
[ "$(pn_in "$N1_NS" "$N1_STATE" bgp status --json | json '.result.announced.join(" ")')" = "$N1_CIDR" ] || die "node 1 announces more than its pod CIDR"

step "proof 2: no static route for a pod CIDR anywhere (the ToR's are proto bird; the nodes use their default route)"
for cidr in "$N1_CIDR" "$N2_CIDR"; do
  [ "$(ip -n "$TOR_NS" route show "$cidr" | grep -vc 'proto bird')" = 0 ] || die "non-BGP route for $cidr on the ToR"
done
# A node's only pod CIDR route is its own, to pn_host (local delivery, set up by node init).
ip -n "$N1_NS" route show "$N2_CIDR" | grep -q . && die "node 1 has a route for node 2's pod CIDR"
ip -n "$N2_NS" route show "$N1_CIDR" | grep -q . && die "node 2 has a route for node 1's pod CIDR"
for ns in "$N1_NS" "$N2_NS"; do
  ip -n "$ns" route | grep -v "dev pn_host" | grep -q '^10\.20\.30\.' && die "$ns has a pod CIDR route that is not its own"
  ip -n "$ns" route | grep -q 'proto 112' && die "$ns has a route from its agent (reach bgp: it must add none)"
done
show ip -n "$N1_NS" route
show ip -n "$N1_NS" route get "$B1_IP"
ip -n "$N1_NS" route get "$B1_IP" | grep -q "via $TOR_IP " || die "node 1 does not send $B1_IP to the ToR"

step "proof 3: pods on different nodes reach each other through the ToR (ping and TCP)"
fwd_before=$(ip netns exec "$TOR_NS" cat /proc/net/snmp | awk '/^Ip: [0-9]/{print $7}')
show ip netns exec "$A1_NS" ping -c 3 -i 0.2 -W 2 "$B1_IP" || die "a1 -> b1 (across the ToR) failed"
show ip netns exec "$B2_NS" ping -c 3 -i 0.2 -W 2 "$A2_IP" || die "b2 -> a2 (across the ToR) failed"
show ip netns exec "$A2_NS" ping -c 2 -i 0.2 -W 2 "$A1_IP" || die "a2 -> a1 (same node) failed"
# A tiny TCP server in pod b1 (node), killed by its pid at teardown; a1 connects across the ToR.
ip netns exec "$B1_NS" node -e '
  require("net").createServer((s) => s.end(`hello from b1 to ${s.remoteAddress}\n`)).listen(8080, "0.0.0.0", () => console.log("listening"))
' pn-lab-listener >"$LAB_DIR/listener.log" 2>&1 &
echo $! >"$LISTENER_PID"
wait_for 20 "the listener in b1" grep -q listening "$LAB_DIR/listener.log"
reply=$(ip netns exec "$A1_NS" node -e '
  const c = require("net").connect(8080, process.argv[1]); let s = ""
  c.on("data", (d) => (s += d)).on("end", () => { process.stdout.write(s); process.exit(0) })
  c.on("error", (e) => { console.error(e.message); process.exit(1) }); setTimeout(() => process.exit(2), 10000)
' "$B1_IP") || die "TCP a1 -> b1:8080 failed"
echo "$reply"
[ "$reply" = "hello from b1 to $A1_IP" ] || die "unexpected TCP reply: $reply"
fwd_after=$(ip netns exec "$TOR_NS" cat /proc/net/snmp | awk '/^Ip: [0-9]/{print $7}')
echo "the ToR forwarded $((fwd_after - fwd_before)) packets meanwhile"
[ $((fwd_after - fwd_before)) -ge 12 ] || die "the ToR did not forward the pod traffic"

step "pn monitor on node 2 while a1 pings b1: the packet arrives from the network (the ToR) and goes straight into b1"
monitor_around "$N2_NS" "$N2_STATE" 3 "--ip $A1_IP" ip netns exec "$A1_NS" ping -c 1 -W 1 "$B1_IP"

step "pn status: node 1 after the build-up (devices, hooks, endpoints)"
show pn_in "$N1_NS" "$N1_STATE" status

step "pn bgp down on node 2: the ToR withdraws $N2_CIDR and b1 becomes unreachable; pn bgp up brings it back"
show pn_in "$N2_NS" "$N2_STATE" bgp down
wait_for 15 "$N2_CIDR to leave the ToR" no_tor_route "$N2_CIDR"
show ip -n "$TOR_NS" route
! ip netns exec "$A1_NS" ping -c 1 -W 1 "$B1_IP" >/dev/null 2>&1 || die "b1 still reachable without its route"
show pn_in "$N2_NS" "$N2_STATE" bgp up --local-as "$N2_AS" --peer "$TOR_IP" --peer-as "$TOR_AS"
wait_for 60 "$N2_CIDR back on the ToR" tor_route "$N2_CIDR" "$N2_UPLINK_IP"
wait_for 20 "a1 -> b1 again" ip netns exec "$A1_NS" ping -c 1 -W 1 "$B1_IP"
echo "a1 -> b1 works again"

step "pods out (pn cni del), agents stopped (the nodes leave the cluster with their leases), then node reset: stops each bird (the ToR withdraws) and returns the pod CIDRs"
for spec in "$N1_NS:$N1_STATE:$A1_NS" "$N1_NS:$N1_STATE:$A2_NS" "$N2_NS:$N2_STATE:$B1_NS" "$N2_NS:$N2_STATE:$B2_NS"; do
  IFS=: read -r node state pod <<<"$spec"
  pn_in "$node" "$state" cni del --container-id "$pod" --netns "/run/netns/$pod" >/dev/null
done
show pn_in "$N1_NS" "$N1_STATE" agent stop
show pn_in "$N2_NS" "$N2_STATE" agent stop
wait_alive 20 "$KV_NS" "$CLUSTER" 0
show pn_in "$N1_NS" "$N1_STATE" node reset
show pn_in "$N2_NS" "$N2_STATE" node reset
wait_for 15 "the ToR to withdraw both pod CIDRs" no_tor_route 10.20.30.0/24
show ip -n "$TOR_NS" route
show operator pool show --pool "$POOL"
[ "$(operator pool list --pool "$POOL" --json | json '.result.length')" = 0 ] || die "pod CIDRs not returned to the pool"

echo
echo "lab 05: OK ($POOL_KIND cluster store)"
