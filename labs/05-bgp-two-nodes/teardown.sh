#!/usr/bin/env bash
# Undo lab 05: each node's agent (its pid file), pn's own reset on each node (stops its bird, so
# the ToR withdraws the pod CIDR; devices, programs, pins, state), then the ToR's bird, etcd and
# the TCP listener by their pids, the namespaces and the lab's state folder. Safe to run twice or on a half-built lab.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"
set +e

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# kill_pidfile FILE NEEDLE: SIGTERM the pid in FILE only if its command line contains NEEDLE
# (a pid file can outlive its process and the pid be reused), SIGKILL after 5 s.
kill_pidfile() {
  local file=$1 needle=$2 pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle" || return 0
  kill "$pid" 2>/dev/null
  for i in $(seq 50); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then kill -9 "$pid" 2>/dev/null; fi
  return 0
}

for pair in "$N1_NS:$N1_STATE" "$N2_NS:$N2_STATE"; do
  ns=${pair%%:*} state=${pair##*:}
  kill_pidfile "$state/agent.pid" "agent start"
  if ns_exists "$ns" && [ -d "$state" ]; then
    pn_in "$ns" "$state" node reset >/dev/null 2>&1
    pn_in "$ns" "$state" bgp down >/dev/null 2>&1   # in case node.json was never written
  fi
done
kill_pidfile "$LISTENER_PID" "pn-lab-listener"
kill_pidfile "$TOR_DIR/bird.pid" "$TOR_DIR/bird.ctl"
kill_pidfile "$ETCD_DIR/etcd.pid" "$ETCD_DIR/data"
for ns in "$A1_NS" "$A2_NS" "$B1_NS" "$B2_NS" "$N1_NS" "$N2_NS" "$KV_NS" "$TOR_NS"; do ns_del "$ns"; done
rm -rf "$LAB_DIR"
echo "lab 05 torn down"
