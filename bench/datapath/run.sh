#!/usr/bin/env bash
# Datapath benchmark (root): pod↔pod latency (sockperf) and throughput (iperf3), BPF vs host routes
# vs a bare veth pair, on one node and across two; tunnel vs native routing; pod → outside through
# BPF vs iptables masquerade, and new connections per second until the NAT map fills.
# Builds everything in pn- namespaces and removes them; results in bench/results/datapath.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "bench/datapath: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces)"
for t in ip tc bpftool clang cc iptables iperf3 sockperf taskset node; do command -v "$t" >/dev/null || die "missing $t"; done
npm run --silent build >/dev/null
[ -f dist/bench/datapath/run.js ] || die "build failed: dist/bench/datapath/run.js missing"
exec node dist/bench/datapath/run.js "$@"
