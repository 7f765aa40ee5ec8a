#!/usr/bin/env bash
# Lab 06: IPv6 in BPF. Two nodes (netns) on a bridge "switch" netns. Node 1 is dual-stack with
# pods a and b (one IPv4 and one IPv6 address each); node 2 is IPv6-only with pod c. Routing mode
# bpf: no per-pod routes, so IPv6 is delivered by BPF like IPv4 (NDP for the router answered in
# from-container, bpf_redirect_peer between pods, from-host for the node's own traffic, BPF host
# routing (bpf_fib_lookup + bpf_redirect_neigh) to the other node, from-netdev from it). Shows ping -6 and TCP over IPv6 on one node and
# across nodes, a spoofed IPv6 source dropped and counted, and the map entries gone after
# detach. Tears everything down unless PN_LAB_KEEP=1.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"

need_root
need_cmds ip tc bpftool clang node npx ping iperf3 stat
for ns in "$SW_NS" "$N1_NS" "$N2_NS" "$A_NS" "$B_NS" "$C_NS"; do
  ! ns_exists "$ns" || die "$ns already exists (a previous run kept? run $(dirname "$0")/teardown.sh)"
done
ensure_built
ensure_bpffs
on_exit "bash $(dirname "$0")/teardown.sh"

step "the world: switch $SW_NS (bridge), nodes $N1_NS and $N2_NS with uplink eth0 (IPv4 and IPv6)"
for ns in "$SW_NS" "$N1_NS" "$N2_NS" "$A_NS" "$B_NS" "$C_NS"; do ns_add "$ns"; done
switch_nodes "$SW_NS" "$N1_NS:$N1_UPLINK_IP" "$N2_NS:$N2_UPLINK_IP"
ip -n "$N1_NS" addr add "$N1_UPLINK_IP6/64" dev eth0 nodad
ip -n "$N2_NS" addr add "$N2_UPLINK_IP6/64" dev eth0 nodad

step "pn node init: node 1 with an IPv4 and an IPv6 pod CIDR, node 2 with an IPv6 one alone"
show pn_in "$N1_NS" "$N1_STATE" node init --name "$N1_NAME" --device eth0 --pod-cidr "$N1_CIDR" --pod-cidr "$N1_CIDR6" --routing bpf
show pn_in "$N2_NS" "$N2_STATE" node init --name "$N2_NAME" --device eth0 --pod-cidr "$N2_CIDR6" --routing bpf
show ip -n "$N1_NS" addr show dev pn_host
# Static routes to the other node's IPv6 pod CIDR (lab 05 shows BGP for IPv4).
ip -n "$N1_NS" -6 route add "$N2_CIDR6" via "$N2_UPLINK_IP6"
ip -n "$N2_NS" -6 route add "$N1_CIDR6" via "$N1_UPLINK_IP6"

step "pods: pn veth create (an address and routes of each family) + pn bpf load (v4 and v6 map entries)"
for spec in "$N1_NS|$N1_STATE|$A_NS|$A_IP|$A_IP6" "$N1_NS|$N1_STATE|$B_NS|$B_IP|$B_IP6" "$N2_NS|$N2_STATE|$C_NS||$C_IP6"; do
  IFS='|' read -r node state pod ip ip6 <<<"$spec"
  ips=(--ip "$ip6")
  [ -n "$ip" ] && ips+=(--ip "$ip")
  show pn_in "$node" "$state" veth create --container-id "$pod" --netns "/run/netns/$pod" "${ips[@]}"
  show pn_in "$node" "$state" bpf load --container-id "$pod"
done
show ip -n "$A_NS" addr show dev eth0
show ip -n "$A_NS" -6 route
show pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_endpoints
show pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_lxc

step "same node over IPv6: a <-> b (NDP answered in BPF, then bpf_redirect_peer), ping -6 and TCP"
show ip netns exec "$A_NS" ping -6 -c 3 -i 0.2 -W 1 "$B_IP6" || die "a -> b over IPv6 failed"
show ip -n "$A_NS" -6 neigh show dev eth0
ip netns exec "$B_NS" iperf3 -s -1 -p 5206 >/dev/null &
IPERF_PID=$!
sleep 0.5
show ip netns exec "$A_NS" iperf3 -6 -c "$B_IP6" -p 5206 -t 1 || die "TCP a -> b over IPv6 failed"
wait "$IPERF_PID" 2>/dev/null || true
show ip netns exec "$A_NS" ping -c 2 -i 0.2 -W 1 "$B_IP" || die "a -> b over IPv4 failed (dual stack)"

step "the node and its pods over IPv6: node 1 -> a (from-host), a -> the router address"
show ip netns exec "$N1_NS" ping -6 -c 2 -i 0.2 -W 1 "$A_IP6" || die "node1 -> a over IPv6 failed"
ROUTER6=$(ip -n "$N1_NS" -6 -j addr show dev pn_host scope global | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].addr_info.find(a=>a.family==="inet6").local))')
show ip netns exec "$A_NS" ping -6 -c 2 -i 0.2 -W 1 "$ROUTER6" || die "a -> router $ROUTER6 failed"

step "across nodes over IPv6: a -> c and c -> b (from-container -> BPF host routing -> uplink -> from-netdev -> pod)"
show ip netns exec "$A_NS" ping -6 -c 3 -i 0.2 -W 1 "$C_IP6" || die "a -> c over IPv6 failed"
show ip netns exec "$C_NS" ping -6 -c 3 -i 0.2 -W 1 "$B_IP6" || die "c -> b over IPv6 failed"
ip netns exec "$C_NS" iperf3 -s -1 -p 5206 >/dev/null &
IPERF_PID=$!
sleep 0.5
show ip netns exec "$A_NS" iperf3 -6 -c "$C_IP6" -p 5206 -t 1 || die "TCP a -> c over IPv6 failed"
wait "$IPERF_PID" 2>/dev/null || true

step "pn monitor: one ping -6 a -> b (same node) and a -> c (across nodes), with IPv6 addresses"
monitor_around "$N1_NS" "$N1_STATE" 3 "--from-ip $A_IP6" ip netns exec "$A_NS" ping -6 -c 1 -W 1 "$B_IP6"
monitor_around "$N2_NS" "$N2_STATE" 3 "--ip $A_IP6" ip netns exec "$A_NS" ping -6 -c 1 -W 1 "$C_IP6"

step "anti-spoofing: pod a pings from an IPv6 address that is not its own"
ip -n "$A_NS" addr add fd00:206:1::99/128 dev eth0 nodad
monitor_around "$N1_NS" "$N1_STATE" 3 "--type drop" ip netns exec "$A_NS" ping -6 -c 1 -W 1 -I fd00:206:1::99 "$B_IP6"
show ip netns exec "$A_NS" ping -6 -c 3 -i 0.2 -W 1 -I fd00:206:1::99 "$B_IP6" && die "spoofed ping got through"
show pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_metrics
pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_metrics | grep -q DROP_INVALID_SOURCE6 || die "no DROP_INVALID_SOURCE6 count"
pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_metrics | grep -q TRACE_NDP_REPLY || die "no TRACE_NDP_REPLY count"
pn_in "$N2_NS" "$N2_STATE" bpf map dump pn_metrics | grep -q "from-container.*TRACE_FIB_REDIRECT" || die "node 2 (IPv6 only) sent nothing by BPF host routing"

step "detach b: its IPv4 and IPv6 entries go; without BPF a cannot reach b; attach again and it can"
show pn_in "$N1_NS" "$N1_STATE" bpf unload --container-id "$B_NS"
pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_endpoints --json | grep -q "$B_IP6" && die "b's IPv6 entry left behind"
show ip netns exec "$A_NS" ping -6 -c 2 -i 0.2 -W 1 "$B_IP6" && die "a -> b still works without BPF"
show pn_in "$N1_NS" "$N1_STATE" bpf load --container-id "$B_NS"
show ip netns exec "$A_NS" ping -6 -c 2 -i 0.2 -W 1 "$B_IP6" || die "a -> b failed after re-attach"

echo
echo "lab 06: OK"
