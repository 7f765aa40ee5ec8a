#!/usr/bin/env bash
# Policy benchmark (root): pod↔pod latency with pn policy (none, 1, 1,000, 10,000 map entries) vs
# iptables + ipset and nftables sets on a host-routes node, and 1,000 policies programmed
# (bench/policy/run.ts); then through the cluster on 8 real nodes: one policy change to every
# node's maps, 1,000 pods relabelled (bench/policy/cluster.ts). Runs in pn- namespaces it creates
# (iptables/ipset/nft only inside them) and removes; results in policy.json and
# policy-cluster.json in the git-ignored bench/results folder. PN_BENCH_QUICK=1: a quick run (fewer rounds, 20 changes, 200 pods);
# PN_BENCH_CLUSTER=0: the one-node part only.
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "bench/policy: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces)"
for t in ip tc bpftool clang cc python3 sockperf taskset ipset iptables-legacy-restore nft node; do command -v "$t" >/dev/null || die "missing $t (scripts/bootstrap.sh installs it; ipset: apt-get install ipset)"; done
npm run --silent build >/dev/null
[ -f dist/bench/policy/run.js ] || die "build failed: dist/bench/policy/run.js missing"
node dist/bench/policy/run.js
[ "${PN_BENCH_CLUSTER:-1}" = 0 ] && exit 0
if [ "${PN_BENCH_QUICK:-}" = 1 ]; then
  exec node dist/bench/policy/cluster.js --changes 20 --pods 200 --per-pod 50 "$@"
fi
exec node dist/bench/policy/cluster.js "$@"
