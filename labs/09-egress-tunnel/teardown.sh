#!/usr/bin/env bash
# Remove everything lab 09 made, by name and pid: the servers (pid files), pn node reset inside each
# node, the pins, the namespaces, the state dirs. Safe to run twice.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"

for pidfile in "$WORK"/*.pid; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
done
for i in "${NODES[@]}"; do
  state=$(node_state "$i")
  if [ -e "/run/netns/$(node_ns "$i")" ] && [ -f "$state/node.json" ]; then
    pn_in "$(node_ns "$i")" "$state" node reset >/dev/null || echo "warning: pn node reset in $(node_ns "$i") failed" >&2
  fi
  rm -rf "${PN_BPFFS:?}/$(node_name "$i")"
  ns_del "$(pod_ns "$i")"
done
for i in "${NODES[@]}"; do ns_del "$(node_ns "$i")"; done
ns_del "$SW_NS"
ns_del "$INET_NS"
ns_del "$RTR_NS"
rm -rf "$LAB_DIR"
echo "lab 09 torn down"
