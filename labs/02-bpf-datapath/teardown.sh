#!/usr/bin/env bash
# Remove everything lab 02 made: pn node reset inside each node, then namespaces and state dirs.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"

two_node_teardown 02 "$A_NS" "$B_NS" "$C_NS"
