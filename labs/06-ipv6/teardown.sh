#!/usr/bin/env bash
# Remove everything lab 06 made: pn node reset inside each node, then namespaces and state dirs.
source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/env.sh"

for spec in "$N1_NS:$N1_STATE:$N1_NAME" "$N2_NS:$N2_STATE:$N2_NAME"; do
  IFS=: read -r ns state name <<<"$spec"
  if ns_exists "$ns" && [ -f "$state/node.json" ]; then
    pn_in "$ns" "$state" node reset >/dev/null || echo "warning: pn node reset in $ns failed" >&2
  fi
  rm -rf "${PN_BPFFS:?}/$name"
done
for ns in "$A_NS" "$B_NS" "$C_NS" "$N1_NS" "$N2_NS" "$SW_NS"; do ns_del "$ns"; done
rm -rf "$N1_STATE" "$N2_STATE"
rmdir "/run/pn/$LAB_ID" 2>/dev/null || true
echo "lab 06 torn down"
