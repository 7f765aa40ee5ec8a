#!/usr/bin/env bash
# Remove everything lab 04 made: the pod servers (by pid file), the agents and etcd (by their pid
# files), pn node reset inside each node, then namespaces and state dirs.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/cluster.sh"
source "$(dirname "$0")/env.sh"

for pidfile in "$WORK"/*.pid; do
  [ -f "$pidfile" ] || continue
  kill "$(cat "$pidfile")" 2>/dev/null || true
done
rm -rf "$WORK"
stop_pidfile "$N1_STATE/agent.pid" "agent start"
stop_pidfile "$N2_STATE/agent.pid" "agent start"
stop_pidfile "$ETCD_DIR/etcd.pid" "$ETCD_DIR/data"
rm -rf "$ETCD_DIR"
two_node_teardown 04 "$CLIENT_NS" "$B1_NS" "$B2_NS" "$ETCD_NS"
