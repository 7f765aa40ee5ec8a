#!/usr/bin/env bash
# Lab 01: one node, two pods. The node is a netns with an uplink (a veth into a "network" netns);
# `pn node init` turns it into a Cilium-style node, `pn ipam alloc` + `pn veth create` plug two
# pods in, and the pods ping each other and the router. Tears everything down unless PN_LAB_KEEP=1.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"

need_root
need_cmds ip node npx ping nsenter stat sysctl
for ns in "$NODE_NS" "$NET_NS" "$POD1_NS" "$POD2_NS"; do
  ! ns_exists "$ns" || die "$ns already exists (a previous run kept? run $(dirname "$0")/teardown.sh)"
done
ensure_built
ensure_bpffs
on_exit "bash $(dirname "$0")/teardown.sh"

step "the world: node $NODE_NS with uplink eth0 <-> $NET_NS, two empty pod namespaces"
for ns in "$NODE_NS" "$NET_NS" "$POD1_NS" "$POD2_NS"; do ns_add "$ns"; done
ip -n "$NODE_NS" link add eth0 type veth peer name node1 netns "$NET_NS"
ip -n "$NODE_NS" link set eth0 up
ip -n "$NET_NS" link set node1 up
show ip -n "$NODE_NS" -br link

step "pn node init (pod CIDR $POD_CIDR, routing $ROUTING)"
show pn_in "$NODE_NS" "$STATE" node init --name "$NODE_NAME" --device eth0 --pod-cidr "$POD_CIDR" --routing "$ROUTING"
show ip -n "$NODE_NS" -d link show pn_host
show ip -n "$NODE_NS" addr show dev pn_host
show ip -n "$NODE_NS" route
pn_in "$NODE_NS" "$STATE" node show --json | grep -q '"ok": true' || die "pn node show reports drift"

declare -A IPS
for i in 1 2; do
  ns_var=POD${i}_NS
  ns=${!ns_var}
  step "pod $i: pn ipam alloc + pn veth create into $ns"
  ip=$(pn_in "$NODE_NS" "$STATE" ipam alloc --owner "pod$i:eth0" --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).result.allocations[0].ip))')
  [ -n "$ip" ] || die "ipam alloc returned no address"
  IPS[$i]=$ip
  show pn_in "$NODE_NS" "$STATE" veth create --container-id "pod$i" --netns "/run/netns/$ns" --ip "$ip" --pod-name "web-$i" --pod-namespace default
  show ip -n "$ns" addr show dev eth0
  show ip -n "$ns" route
done

step "what the node looks like now"
show ip -n "$NODE_NS" -br link
show ip -n "$NODE_NS" route
show pn_in "$NODE_NS" "$STATE" endpoint list

step "connectivity"
show ip netns exec "$POD1_NS" ping -c 3 -i 0.2 -W 1 "${IPS[2]}" || die "pod1 -> pod2 failed"
show ip netns exec "$POD2_NS" ping -c 3 -i 0.2 -W 1 "${IPS[1]}" || die "pod2 -> pod1 failed"
router=$(pn_in "$NODE_NS" "$STATE" node show --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).result.node.routerIps[0]))')
show ip netns exec "$POD1_NS" ping -c 2 -i 0.2 -W 1 "$router" || die "pod1 -> router failed"

step "pn status: the node as a tree (ok / DRIFTED / MISSING against node.json and endpoint records)"
show pn_in "$NODE_NS" "$STATE" status
if [ "$ROUTING" = bpf ]; then
  step "pn monitor: one ping pod1 -> pod2 at each observation point"
  monitor_around "$NODE_NS" "$STATE" 3 "--ip ${IPS[2]}" ip netns exec "$POD1_NS" ping -c 1 -W 1 "${IPS[2]}"
fi

step "pn veth delete is idempotent"
show pn_in "$NODE_NS" "$STATE" veth delete --container-id pod2 --netns "/run/netns/$POD2_NS"
show pn_in "$NODE_NS" "$STATE" veth delete --container-id pod2 --netns "/run/netns/$POD2_NS"

echo
echo "lab 01: OK"
