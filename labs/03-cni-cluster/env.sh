# Names used by lab 03 (sourced by run.sh and teardown.sh). PN_LAB_ID makes parallel runs unique.
LAB_ID=${PN_LAB_ID:-lab3}
SW_NS=pn-$LAB_ID-sw
N1_NS=pn-$LAB_ID-n1
N2_NS=pn-$LAB_ID-n2
A_NS=pn-$LAB_ID-a
B_NS=pn-$LAB_ID-b
C_NS=pn-$LAB_ID-c
LAB_DIR=/run/pn/$LAB_ID
POOL=$LAB_DIR/cluster-pool.json
N1_STATE=$LAB_DIR/n1
N2_STATE=$LAB_DIR/n2
N1_UPLINK_IP=172.30.3.1
N2_UPLINK_IP=172.30.3.2
