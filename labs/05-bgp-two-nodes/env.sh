# Names used by lab 05 (sourced by run.sh and teardown.sh). PN_LAB_ID makes parallel runs unique.
LAB_ID=${PN_LAB_ID:-lab5}
TOR_NS=pn-$LAB_ID-tor   # the top-of-rack router: bird2, default gateway of both nodes
KV_NS=pn-$LAB_ID-kv     # etcd, on the underlay like in a data centre (the operator runs here)
N1_NS=pn-$LAB_ID-n1
N2_NS=pn-$LAB_ID-n2
A1_NS=pn-$LAB_ID-a1     # pods a1, a2 on node 1
A2_NS=pn-$LAB_ID-a2
B1_NS=pn-$LAB_ID-b1     # pods b1, b2 on node 2
B2_NS=pn-$LAB_ID-b2
LAB_DIR=/run/pn/$LAB_ID
N1_STATE=$LAB_DIR/n1
N2_STATE=$LAB_DIR/n2
TOR_DIR=$LAB_DIR/tor    # the ToR's bird.conf, control socket, pid file, log
ETCD_DIR=$LAB_DIR/etcd  # etcd's data dir, pid and log
LISTENER_PID=$LAB_DIR/listener.pid

# Underlay: one small subnet on the ToR's bridge; the ToR is every node's default gateway.
TOR_IP=172.30.5.1
KV_IP=172.30.5.100
N1_UPLINK_IP=172.30.5.11
N2_UPLINK_IP=172.30.5.12
TOR_AS=65000
N1_AS=65001
N2_AS=65002

# The cluster store: etcd (default) or a directory on this machine (PN_LAB_POOL=file). Its pool is
# the cluster pool: on etcd the same URL (the pool's keys sit beside the cluster's), in a
# directory <dir>/cluster-pool.json.
POOL_KIND=${PN_LAB_POOL:-etcd}
if [ "$POOL_KIND" = file ]; then
  CLUSTER=$LAB_DIR/cluster
  POOL=$CLUSTER/cluster-pool.json
else
  CLUSTER=etcd://$KV_IP:2379/pn-$LAB_ID
  POOL=$CLUSTER
fi
