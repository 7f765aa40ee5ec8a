# Names used by lab 01 (sourced by run.sh and teardown.sh). PN_LAB_ID makes parallel runs unique.
LAB_ID=${PN_LAB_ID:-lab1}
NODE_NS=pn-$LAB_ID-node
NET_NS=pn-$LAB_ID-net
POD1_NS=pn-$LAB_ID-pod1
POD2_NS=pn-$LAB_ID-pod2
NODE_NAME=$LAB_ID-node1
STATE=/run/pn/$LAB_ID/node1
POD_CIDR=${PN_LAB_POD_CIDR:-10.201.1.0/24}
ROUTING=${PN_LAB_ROUTING:-host-routes}
