# Names used by lab 04 (sourced by run.sh and teardown.sh). PN_LAB_ID makes parallel runs unique.
LAB_ID=${PN_LAB_ID:-lab4}
source "$(dirname "${BASH_SOURCE[0]}")/../lib/two-node.sh"
CLIENT_NS=pn-$LAB_ID-cl
B1_NS=pn-$LAB_ID-b1
B2_NS=pn-$LAB_ID-b2
WORK=/run/pn/$LAB_ID/work
N1_CIDR=${PN_LAB_N1_CIDR:-10.204.1.0/24}
N2_CIDR=${PN_LAB_N2_CIDR:-10.204.2.0/24}
N1_UPLINK_IP=172.30.4.1
N2_UPLINK_IP=172.30.4.2
CLIENT_IP=10.204.1.10
B1_IP=10.204.1.11   # backend on node 1 (same node as the client)
B2_IP=10.204.2.10   # backend on node 2
VIP=10.96.4.10
ETCD_NS=pn-$LAB_ID-etcd          # etcd, on the switch like a node
ETCD_IP=172.30.4.254
ETCD_DIR=/run/pn/$LAB_ID/etcd    # its data, log and pid file
CLUSTER=etcd://$ETCD_IP:2379/$LAB_ID
