# Names used by lab 08 (sourced by run.sh and teardown.sh). PN_LAB_ID makes parallel runs unique.
LAB_ID=${PN_LAB_ID:-lab8}
NODES=(1 2)
SW_NS=pn-$LAB_ID-sw        # the L2: a bridge
ETCD_NS=pn-$LAB_ID-etcd    # etcd, on the bridge like a node
LAB_DIR=/run/pn/$LAB_ID
WORK=$LAB_DIR/work
LAN=172.30.8              # node i is $LAN.i, etcd $LAN.254
ETCD_IP=$LAN.254
CLUSTER=etcd://$ETCD_IP:2379/$LAB_ID
node_ns() { echo "pn-$LAB_ID-n$1"; }
node_name() { echo "$LAB_ID-n$1"; }
node_state() { echo "$LAB_DIR/n$1"; }
node_ip() { echo "$LAN.$1"; }
node_cidr() { echo "10.208.$1.0/24"; }
# The pods: NAMESPACE/NAME, the node they run on, their labels and the port they serve.
PODS=(frontend/web frontend/test backend/api db/pg)
declare -A POD_NODE=([frontend/web]=1 [frontend/test]=2 [backend/api]=2 [db/pg]=1)
declare -A POD_LABELS=([frontend/web]=app=web [frontend/test]=app=test [backend/api]=app=api [db/pg]=app=pg)
declare -A POD_PORT=([frontend/web]=8080 [frontend/test]=8080 [backend/api]=8080 [db/pg]=5432)
declare -A POD_SHORT=([frontend/web]=fw [frontend/test]=ft [backend/api]=ba [db/pg]=dp)
pod_ns() { echo "pn-$LAB_ID-${POD_SHORT[$1]}"; }   # frontend/web → pn-lab8-fw
