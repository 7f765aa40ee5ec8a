#!/usr/bin/env bash
# Remove everything lab 08 made, by name and pid: the pod servers, the agents (their pid files),
# etcd (its pid file), pn node reset inside each node, the pins, the namespaces, the state dirs.
# Safe to run twice.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/env.sh"

for p in "${PODS[@]}"; do stop_pidfile "$WORK/${POD_SHORT[$p]}.pid" server.py; done
stop_pidfile "$WORK/etcd/etcd.pid" "$WORK/etcd/data"
for i in "${NODES[@]}"; do
  state=$(node_state "$i")
  stop_pidfile "$state/agent.pid" "agent start"
  if [ -e "/run/netns/$(node_ns "$i")" ] && [ -f "$state/node.json" ]; then
    pn_in "$(node_ns "$i")" "$state" node reset >/dev/null || echo "warning: pn node reset in $(node_ns "$i") failed" >&2
  fi
  rm -rf "${PN_BPFFS:?}/$(node_name "$i")"
done
for p in "${PODS[@]}"; do ns_del "$(pod_ns "$p")"; done
for i in "${NODES[@]}"; do ns_del "$(node_ns "$i")"; done
ns_del "$ETCD_NS"
ns_del "$SW_NS"
rm -rf "$LAB_DIR"
echo "lab 08 torn down"
