#!/usr/bin/env bash
# Lab 02: the BPF datapath. Two nodes (netns) joined by a bridge "switch" netns; node 1 has pods
# a and b, node 2 has pod c. Routing mode bpf: the nodes have NO per-pod routes, so every local
# delivery is a BPF redirect (from-container / from-netdev / from-host). The lab shows the tc
# attachments, pings and TCP, a spoofed source dropped and counted, detach breaking delivery,
# and cross-node traffic. Tears everything down unless PN_LAB_KEEP=1.
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

step "the world: switch $SW_NS (bridge), nodes $N1_NS and $N2_NS with uplink eth0 on it"
for ns in "$SW_NS" "$N1_NS" "$N2_NS" "$A_NS" "$B_NS" "$C_NS"; do ns_add "$ns"; done
switch_nodes "$SW_NS" "$N1_NS:$N1_UPLINK_IP" "$N2_NS:$N2_UPLINK_IP"

step "pn node init --routing bpf on both nodes (compiles once, loads + pins once, attaches host programs)"
show pn_in "$N1_NS" "$N1_STATE" node init --name "$N1_NAME" --device eth0 --pod-cidr "$N1_CIDR" --routing bpf
show pn_in "$N2_NS" "$N2_STATE" node init --name "$N2_NAME" --device eth0 --pod-cidr "$N2_CIDR" --routing bpf
# Static routes to the other node's pod CIDR: this lab is about the datapath. Lab 05
# (labs/05-bgp-two-nodes) replaces them with BGP: pn bgp up announces each pod CIDR to a ToR router.
ip -n "$N1_NS" route add "$N2_CIDR" via "$N2_UPLINK_IP"
ip -n "$N2_NS" route add "$N1_CIDR" via "$N1_UPLINK_IP"

step "pods: pn veth create + pn bpf load --container-id (a tc attachment and map entries, no clang)"
for spec in "$N1_NS:$N1_STATE:$A_NS:$A_IP" "$N1_NS:$N1_STATE:$B_NS:$B_IP" "$N2_NS:$N2_STATE:$C_NS:$C_IP"; do
  IFS=: read -r node state pod ip <<<"$spec"
  show pn_in "$node" "$state" veth create --container-id "$pod" --netns "/run/netns/$pod" --ip "$ip"
  show pn_in "$node" "$state" bpf load --container-id "$pod"
done

step "node 1: no per-pod routes — only the pod CIDR via pn_host and the remote CIDR"
show ip -n "$N1_NS" route
ip -n "$N1_NS" route | grep -q "^$A_IP " && die "unexpected host route for $A_IP"

step "node 1: what tc shows on every hook"
LXC_A=$(pn_in "$N1_NS" "$N1_STATE" endpoint show --container-id "$A_NS" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).result.hostIfname))')
show ip netns exec "$N1_NS" tc filter show dev "$LXC_A" ingress
show ip netns exec "$N1_NS" tc filter show dev pn_host ingress
show ip netns exec "$N1_NS" tc filter show dev pn_host egress
show ip netns exec "$N1_NS" tc filter show dev eth0 ingress
show ip netns exec "$N1_NS" tc filter show dev eth0 egress
show pn_in "$N1_NS" "$N1_STATE" bpf status
show pn_in "$N1_NS" "$N1_STATE" bpf map list
show pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_endpoints

step "same node: a <-> b in BPF (bpf_redirect_peer), ping and TCP"
show ip netns exec "$A_NS" ping -c 3 -i 0.2 -W 1 "$B_IP" || die "a -> b failed"
ip netns exec "$B_NS" iperf3 -s -1 -p 5202 >/dev/null &
IPERF_PID=$!
sleep 0.5
show ip netns exec "$A_NS" iperf3 -c "$B_IP" -p 5202 -t 1 || die "TCP a -> b failed"
wait "$IPERF_PID" 2>/dev/null || true

step "the node talks to its pod through from-host"
show ip netns exec "$N1_NS" ping -c 2 -i 0.2 -W 1 "$A_IP" || die "node1 -> a failed"

step "cross node: a -> c and c -> b (from-container -> uplink by BPF host routing -> from-netdev -> pod)"
show ip netns exec "$A_NS" ping -c 3 -i 0.2 -W 1 "$C_IP" || die "a -> c failed"
show ip netns exec "$C_NS" ping -c 3 -i 0.2 -W 1 "$B_IP" || die "c -> b failed"
pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_metrics | grep -q "TRACE_FIB_REDIRECT" || die "node 1 did not host-route (no TRACE_FIB_REDIRECT count)"
show pn_in "$N1_NS" "$N1_STATE" status

step "pn monitor: one ping a -> b (same node) and a -> c (across nodes), each packet at every observation point"
monitor_around "$N1_NS" "$N1_STATE" 3 "--from-ip $A_IP" ip netns exec "$A_NS" ping -c 1 -W 1 "$B_IP"
monitor_around "$N1_NS" "$N1_STATE" 3 "--ip $C_IP" ip netns exec "$A_NS" ping -c 1 -W 1 "$C_IP"
monitor_around "$N2_NS" "$N2_STATE" 3 "--ip $A_IP" ip netns exec "$A_NS" ping -c 1 -W 1 "$C_IP"

step "anti-spoofing: pod a pings from an address that is not its own"
ip -n "$A_NS" addr add 10.202.1.99/32 dev eth0
monitor_around "$N1_NS" "$N1_STATE" 3 "--type drop" ip netns exec "$A_NS" ping -c 1 -W 1 -I 10.202.1.99 "$B_IP"
show ip netns exec "$A_NS" ping -c 3 -i 0.2 -W 1 -I 10.202.1.99 "$B_IP" && die "spoofed ping got through"
show pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_metrics
pn_in "$N1_NS" "$N1_STATE" bpf map dump pn_metrics | grep -q DROP_INVALID_SOURCE || die "no DROP_INVALID_SOURCE count"

step "detach b: without BPF (and without host routes) a cannot reach b; attach again and it can"
show pn_in "$N1_NS" "$N1_STATE" bpf unload --container-id "$B_NS"
show ip netns exec "$A_NS" ping -c 2 -i 0.2 -W 1 "$B_IP" && die "a -> b still works without BPF"
show pn_in "$N1_NS" "$N1_STATE" bpf load --container-id "$B_NS"
show ip netns exec "$A_NS" ping -c 2 -i 0.2 -W 1 "$B_IP" || die "a -> b failed after re-attach"

step "pn status: the node as a tree"
show pn_in "$N1_NS" "$N1_STATE" status
pn_in "$N1_NS" "$N1_STATE" status --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.exit(JSON.parse(s).result.state==="ok"?0:1))' || die "node 1 is not ok"

echo
echo "lab 02: OK"
