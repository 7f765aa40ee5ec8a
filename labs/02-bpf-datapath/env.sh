# Names used by lab 02 (sourced by run.sh and teardown.sh). PN_LAB_ID makes parallel runs unique.
LAB_ID=${PN_LAB_ID:-lab2}
source "$(dirname "${BASH_SOURCE[0]}")/../lib/two-node.sh"
N1_CIDR=${PN_LAB_N1_CIDR:-10.202.1.0/24}
N2_CIDR=${PN_LAB_N2_CIDR:-10.202.2.0/24}
N1_UPLINK_IP=172.30.2.1
N2_UPLINK_IP=172.30.2.2
A_IP=10.202.1.10
B_IP=10.202.1.11
C_IP=10.202.2.10
