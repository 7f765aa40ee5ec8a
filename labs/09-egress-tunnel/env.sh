# Names used by lab 09 (sourced by run.sh and teardown.sh). PN_LAB_ID makes parallel runs unique.
LAB_ID=${PN_LAB_ID:-lab9}
NODES=(1 2 3)
RTR_NS=pn-$LAB_ID-rtr      # the router: two node subnets and the internet; knows no pod CIDR, no BGP
INET_NS=pn-$LAB_ID-inet    # "the internet": one host, routes only to the router
SW_NS=pn-$LAB_ID-sw        # subnet A's switch (nodes 1 and 2); node 3 sits alone on subnet B
LAB_DIR=/run/pn/$LAB_ID
WORK=$LAB_DIR/work
INET_IP=203.0.113.10
CLUSTER_CIDR=10.209.0.0/16
NODE_NET=172.30.0.0/16     # the nodes' own addresses: never masqueraded (a NodePort backend's reply to another node)
node_ns() { echo "pn-$LAB_ID-n$1"; }
node_name() { echo "$LAB_ID-n$1"; }
node_state() { echo "$LAB_DIR/n$1"; }
node_ip() { case $1 in 1) echo 172.30.91.1 ;; 2) echo 172.30.91.2 ;; 3) echo 172.30.92.3 ;; esac; }
node_gw() { case $1 in 3) echo 172.30.92.254 ;; *) echo 172.30.91.254 ;; esac; }
node_cidr() { echo "10.209.$1.0/24"; }
pod_ns() { echo "pn-$LAB_ID-p$1"; }   # one pod (a backend) on node i
