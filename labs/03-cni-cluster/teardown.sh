#!/usr/bin/env bash
# Undo lab 03: pn's own reset on each node (devices, programs, pins, state), then the namespaces
# and the lab's state folder. Safe to run twice or on a half-built lab.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"
set +e
for pair in "$N1_NS:$N1_STATE" "$N2_NS:$N2_STATE"; do
  ns=${pair%%:*} state=${pair##*:}
  ns_exists "$ns" && [ -d "$state" ] && pn_in "$ns" "$state" node reset >/dev/null 2>&1
done
for ns in "$A_NS" "$B_NS" "$C_NS" "$N1_NS" "$N2_NS" "$SW_NS"; do ns_del "$ns"; done
rm -rf "$LAB_DIR"
echo "lab 03 torn down"
