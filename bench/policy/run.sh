#!/usr/bin/env bash
# Policy benchmark (root): pod↔pod latency with pn policy (none, 1, 1,000, 10,000 map entries) vs
# iptables + ipset and nftables sets on a host-routes node, and 1,000 policies programmed. Runs in pn-
# namespaces it creates (iptables/ipset/nft only inside them) and removes; results in
# bench/results/policy.json (PN_BENCH_QUICK=1 for a quick run).
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "bench/policy: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces)"
for t in ip tc bpftool clang cc python3 sockperf taskset ipset iptables-legacy-restore nft node; do command -v "$t" >/dev/null || die "missing $t (scripts/bootstrap.sh installs it; ipset: apt-get install ipset)"; done
npm run --silent build >/dev/null
[ -f dist/bench/policy/run.js ] || die "build failed: dist/bench/policy/run.js missing"
exec node dist/bench/policy/run.js "$@"
