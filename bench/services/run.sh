#!/usr/bin/env bash
# Service benchmark (root): pn's BPF service LB vs kube-proxy-style iptables (legacy) and
# nftables rules at 10 … 100,000 services, plus programming time. Everything runs in pn-
# namespaces it creates (iptables/nft only inside them) and removes; results in
# bench/results/services.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "bench/services: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it creates network namespaces)"
for t in ip tc bpftool clang cc python3 iptables-legacy-restore nft node; do command -v "$t" >/dev/null || die "missing $t (scripts/bootstrap.sh installs it)"; done
npm run --silent build >/dev/null
[ -f dist/bench/services/run.js ] || die "build failed: dist/bench/services/run.js missing"
exec node dist/bench/services/run.js "$@"
