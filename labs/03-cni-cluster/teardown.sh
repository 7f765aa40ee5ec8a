#!/usr/bin/env bash
# Undo lab 03: pn's own reset on each node (devices, programs, pins, state), then the namespaces
# and the lab's state folder. Safe to run twice or on a half-built lab.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"
rm -f "$POOL" "$POOL.lock"
two_node_teardown 03 "$A_NS" "$B_NS" "$C_NS"
