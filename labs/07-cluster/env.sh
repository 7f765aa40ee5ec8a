# Names used by lab 07 (sourced by run.sh and teardown.sh). PN_LAB_ID makes parallel runs unique.
LAB_ID=${PN_LAB_ID:-lab7}
NODES=(1 2 3 4)
SW_NS=pn-$LAB_ID-sw        # the L2: a bridge
ETCD_NS=pn-$LAB_ID-etcd    # etcd, on the bridge like a node
LAB_DIR=/run/pn/$LAB_ID
WORK=$LAB_DIR/work
LAN=172.30.7              # node i is $LAN.i, etcd $LAN.254
ETCD_IP=$LAN.254
CLUSTER=etcd://$ETCD_IP:2379/$LAB_ID
TTL=3                     # lease TTL (s) of every agent
VIP=10.96.7.10            # backends: one pod on every node
VIP2=10.96.7.20           # added once etcd is back
node_ns() { echo "pn-$LAB_ID-n$1"; }
node_name() { echo "$LAB_ID-n$1"; }
node_state() { echo "$LAB_DIR/n$1"; }
node_ip() { echo "$LAN.$1"; }
node_cidr() { echo "10.207.$1.0/24"; }
client_ns() { echo "pn-$LAB_ID-c$1"; }   # a client pod on node i
backend_ns() { echo "pn-$LAB_ID-b$1"; }  # a backend pod on node i
NEW_NS=pn-$LAB_ID-new     # the pod added while etcd is down (node 2)
