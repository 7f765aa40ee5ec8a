#!/usr/bin/env bash
# Remove everything lab 01 made: pn node reset inside the node, then the namespaces and the state dir.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"

if ns_exists "$NODE_NS" && [ -f "$STATE/node.json" ]; then
  pn_in "$NODE_NS" "$STATE" node reset >/dev/null || echo "warning: pn node reset failed" >&2
fi
for ns in "$POD1_NS" "$POD2_NS" "$NODE_NS" "$NET_NS"; do ns_del "$ns"; done
rm -rf "$STATE"
rmdir "$(dirname "$STATE")" 2>/dev/null || true
rmdir "$PN_BPFFS/$NODE_NAME" 2>/dev/null || true
echo "lab 01 torn down"
