# The namespaces, node names and state dirs of the two-node labs (02 to 06, BGP's 05 aside), and their teardown.
# Sourced by their env.sh once LAB_ID is set; common.sh must be sourced first for the teardown.
# A_NS/B_NS/C_NS are the pods of labs 02, 03 and 06 (lab 04 names its own).
SW_NS=pn-$LAB_ID-sw
N1_NS=pn-$LAB_ID-n1
N2_NS=pn-$LAB_ID-n2
A_NS=pn-$LAB_ID-a
B_NS=pn-$LAB_ID-b
C_NS=pn-$LAB_ID-c
N1_NAME=$LAB_ID-n1
N2_NAME=$LAB_ID-n2
N1_STATE=/run/pn/$LAB_ID/n1
N2_STATE=/run/pn/$LAB_ID/n2

# Remove everything such a lab made: pn node reset inside each node, then the pods' namespaces
# (the arguments after the lab's number), the nodes', the switch's and the state dirs.
# $1: the lab's number, for the last line.
two_node_teardown() {
  local lab=$1 spec ns state name
  shift
  for spec in "$N1_NS:$N1_STATE:$N1_NAME" "$N2_NS:$N2_STATE:$N2_NAME"; do
    IFS=: read -r ns state name <<<"$spec"
    if ns_exists "$ns" && [ -f "$state/node.json" ]; then
      pn_in "$ns" "$state" node reset >/dev/null || echo "warning: pn node reset in $ns failed" >&2
    fi
    rm -rf "${PN_BPFFS:?}/$name"
  done
  for ns in "$@" "$N1_NS" "$N2_NS" "$SW_NS"; do ns_del "$ns"; done
  rm -rf "$N1_STATE" "$N2_STATE"
  rmdir "/run/pn/$LAB_ID" 2>/dev/null || true
  echo "lab $lab torn down"
}
