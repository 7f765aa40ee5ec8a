# Names used by lab 06 (sourced by run.sh and teardown.sh). PN_LAB_ID makes parallel runs unique.
LAB_ID=${PN_LAB_ID:-v6lab}
source "$(dirname "${BASH_SOURCE[0]}")/../lib/two-node.sh"
# Dual stack: one IPv4 and one IPv6 pod CIDR per node; node 2's pods are IPv6 only.
N1_CIDR=10.206.1.0/24
N1_CIDR6=fd00:206:1::/112
N2_CIDR6=fd00:206:2::/112
N1_UPLINK_IP=172.30.6.1
N2_UPLINK_IP=172.30.6.2
N1_UPLINK_IP6=fd00:172:30:6::1
N2_UPLINK_IP6=fd00:172:30:6::2
A_IP=10.206.1.10
A_IP6=fd00:206:1::10
B_IP=10.206.1.11
B_IP6=fd00:206:1::11
C_IP6=fd00:206:2::10
