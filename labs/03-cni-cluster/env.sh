# Names used by lab 03 (sourced by run.sh and teardown.sh). PN_LAB_ID makes parallel runs unique.
LAB_ID=${PN_LAB_ID:-lab3}
source "$(dirname "${BASH_SOURCE[0]}")/../lib/two-node.sh"
LAB_DIR=/run/pn/$LAB_ID
POOL=$LAB_DIR/cluster-pool.json
N1_UPLINK_IP=172.30.3.1
N2_UPLINK_IP=172.30.3.2
