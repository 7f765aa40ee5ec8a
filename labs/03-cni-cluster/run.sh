#!/usr/bin/env bash
# Lab 03: the whole Cilium flow through the CNI plugin. An "operator" carves two node pod CIDRs
# out of the seed article's cluster CIDRs (pn pool), two nodes take theirs (pn node init --pool),
# and pods are plugged in by the CNI plugin: pod a by hand (`pn cni add`), pods b and c the way a
# runtime does it (exec bin/pn-cni with CNI_* variables and a netconf on stdin). Then local (BPF
# redirect) and cross-node traffic, CHECK, DEL (twice), and everything returned: IPs, endpoints,
# pod CIDRs. Tears everything down unless PN_LAB_KEEP=1.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"

need_root
need_cmds ip tc bpftool clang node ping stat
for ns in "$SW_NS" "$N1_NS" "$N2_NS" "$A_NS" "$B_NS" "$C_NS"; do
  ! ns_exists "$ns" || die "$ns already exists (a previous run kept? run $(dirname "$0")/teardown.sh)"
done
ensure_built
ensure_bpffs
on_exit "bash $(dirname "$0")/teardown.sh"
mkdir -p "$LAB_DIR"

json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(eval("v"+process.argv[1]))})' "$1"; }

# What a runtime does: exec the plugin in the node's netns with CNI_* set and the netconf on stdin.
cni() { # cni NODE_NS STATE COMMAND CONTAINER_ID NETNS [prevResult-json]
  local ns=$1 state=$2 cmd=$3 cid=$4 netns=$5 prev=${6:-}
  local conf="{\"cniVersion\":\"1.0.0\",\"name\":\"pn-lab\",\"type\":\"pn\",\"stateDir\":\"$state\"${prev:+,\"prevResult\":$prev}}"
  printf '$ CNI_COMMAND=%s CNI_CONTAINERID=%s CNI_NETNS=%s CNI_IFNAME=eth0 pn-cni <<< %s\n' "$cmd" "$cid" "$netns" "$conf" >&2
  ip netns exec "$ns" env CNI_COMMAND="$cmd" CNI_CONTAINERID="$cid" CNI_NETNS="$netns" CNI_IFNAME=eth0 \
    CNI_PATH=/opt/cni/bin CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=$cid" \
    node "$PN_REPO/bin/pn-cni" <<<"$conf"
}

step "the world: switch $SW_NS (bridge), nodes $N1_NS and $N2_NS with uplink eth0 on it, three empty pods"
for ns in "$SW_NS" "$N1_NS" "$N2_NS" "$A_NS" "$B_NS" "$C_NS"; do ns_add "$ns"; done
switch_nodes "$SW_NS" "$N1_NS:$N1_UPLINK_IP" "$N2_NS:$N2_UPLINK_IP"

step "operator: cluster pool from the seed's CIDRs (host bits set on purpose), mask 26"
show node "$PN_REPO/bin/run.js" pool init --cidr 10.20.30.40/24 --cidr 50.60.70.80/24 --mask-size 26 --pool "$POOL"

step "agents: pn node init --pool on both nodes (pod CIDR from the pool, BPF compiled once, host programs attached)"
show pn_in "$N1_NS" "$N1_STATE" node init --name "$N1_NAME" --device eth0 --pool "$POOL"
show pn_in "$N2_NS" "$N2_STATE" node init --name "$N2_NAME" --device eth0 --pool "$POOL"
show node "$PN_REPO/bin/run.js" pool show --pool "$POOL"
N1_CIDR=$(pn_in "$N1_NS" "$N1_STATE" node show --json | json '.result.node.podCidrs[0]')
N2_CIDR=$(pn_in "$N2_NS" "$N2_STATE" node show --json | json '.result.node.podCidrs[0]')
[ "$N1_CIDR" = 10.20.30.0/26 ] && [ "$N2_CIDR" = 10.20.30.64/26 ] || die "unexpected pod CIDRs $N1_CIDR $N2_CIDR"
# Static routes to the other node's pod CIDR. Lab 05 (labs/05-bgp-two-nodes) has no static routes:
# each node announces its pod CIDR with pn bgp up and a ToR router learns them.
ip -n "$N1_NS" route add "$N2_CIDR" via "$N2_UPLINK_IP"
ip -n "$N2_NS" route add "$N1_CIDR" via "$N1_UPLINK_IP"
show ip -n "$N1_NS" route

step "pod a on node 1 by hand: pn cni add (ipam -> veth -> endpoint -> bpf -> confirm)"
show pn_in "$N1_NS" "$N1_STATE" cni add --container-id "$LAB_ID-a" --netns "/run/netns/$A_NS" --args "K8S_POD_NAMESPACE=default;K8S_POD_NAME=a"
A_IP=$(ip -n "$A_NS" -j addr show dev eth0 | json '[0].addr_info.find(a=>a.family==="inet").local')

step "pods b (node 1) and c (node 2) the way a runtime does it: exec pn-cni"
B_RESULT=$(cni "$N1_NS" "$N1_STATE" ADD "$LAB_ID-b" "/run/netns/$B_NS")
echo "$B_RESULT"
C_RESULT=$(cni "$N2_NS" "$N2_STATE" ADD "$LAB_ID-c" "/run/netns/$C_NS")
echo "$C_RESULT"
B_IP=$(echo "$B_RESULT" | json '.ips[0].address.split("/")[0]')
C_IP=$(echo "$C_RESULT" | json '.ips[0].address.split("/")[0]')
GW=$(echo "$B_RESULT" | json '.ips[0].gateway')

step "what the pods and nodes look like (the seed's listings)"
show ip -n "$B_NS" addr show dev eth0
show ip -n "$B_NS" route
show ip -n "$N1_NS" route
HOST_B=$(echo "$B_RESULT" | json '.interfaces[0].name')
show ip netns exec "$N1_NS" tc filter show dev "$HOST_B" ingress
show pn_in "$N1_NS" "$N1_STATE" endpoint list
show pn_in "$N1_NS" "$N1_STATE" ipam list

step "connectivity: local (BPF redirect, no per-pod routes), to the gateway, across nodes"
show ip netns exec "$A_NS" ping -c 3 -i 0.2 -W 1 "$B_IP" || die "a -> b failed"
show ip netns exec "$B_NS" ping -c 2 -i 0.2 -W 1 "$GW" || die "b -> gateway failed"
show ip netns exec "$A_NS" ping -c 3 -i 0.2 -W 1 "$C_IP" || die "a -> c (cross node) failed"
show ip netns exec "$C_NS" ping -c 3 -i 0.2 -W 1 "$A_IP" || die "c -> a (cross node) failed"

step "pn monitor: one ping a -> c, leaving node 1"
monitor_around "$N1_NS" "$N1_STATE" 3 "--ip $C_IP" ip netns exec "$A_NS" ping -c 1 -W 1 "$C_IP"

step "pn status: node 1 after the build-up"
show pn_in "$N1_NS" "$N1_STATE" status

step "CHECK b against its ADD result, then break it and CHECK again"
cni "$N1_NS" "$N1_STATE" CHECK "$LAB_ID-b" "/run/netns/$B_NS" "$B_RESULT" && echo "CHECK ok" || die "CHECK failed on a healthy pod"
ip -n "$B_NS" route del default
if out=$(cni "$N1_NS" "$N1_STATE" CHECK "$LAB_ID-b" "/run/netns/$B_NS" "$B_RESULT"); then die "CHECK passed with the default route gone"; fi
echo "$out"

step "DEL: b twice (idempotent), c after its netns vanished, a by hand"
cni "$N1_NS" "$N1_STATE" DEL "$LAB_ID-b" "/run/netns/$B_NS" "$B_RESULT" && echo "DEL ok"
cni "$N1_NS" "$N1_STATE" DEL "$LAB_ID-b" "/run/netns/$B_NS" "$B_RESULT" && echo "DEL again ok"
ns_del "$C_NS"
cni "$N2_NS" "$N2_STATE" DEL "$LAB_ID-c" "/run/netns/$C_NS" && echo "DEL with vanished netns ok"
show pn_in "$N1_NS" "$N1_STATE" cni del --container-id "$LAB_ID-a" --netns "/run/netns/$A_NS"

step "nothing left: no lxc devices, no endpoints, only the router IPs reserved"
for pair in "$N1_NS:$N1_STATE" "$N2_NS:$N2_STATE"; do
  ns=${pair%%:*} state=${pair##*:}
  ! ip -n "$ns" -br link | grep -q '^lxc' || die "lxc device left on $ns"
  [ "$(pn_in "$ns" "$state" endpoint list --json | json '.result.length')" = 0 ] || die "endpoint left on $ns"
  [ "$(pn_in "$ns" "$state" ipam list --json | json '.result.filter(a=>a.owner!=="router").length')" = 0 ] || die "IP left on $ns"
done
show pn_in "$N1_NS" "$N1_STATE" ipam show

step "node reset returns the pod CIDRs to the pool"
show pn_in "$N1_NS" "$N1_STATE" node reset
show pn_in "$N2_NS" "$N2_STATE" node reset
show node "$PN_REPO/bin/run.js" pool show --pool "$POOL"

echo
echo "lab 03: OK"
