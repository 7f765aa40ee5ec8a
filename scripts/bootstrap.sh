#!/usr/bin/env bash
# Installs what pn needs on a fresh Debian machine (as root) and builds it. Idempotent and
# quick when everything is already there: apt runs only for missing tools, npm ci only when
# node_modules is missing or older than package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bootstrap: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (pn creates network namespaces, veths and BPF programs)"
command -v node >/dev/null || die "node (v20+) is required"

# tool → Debian package. podman/runc/busybox-static serve the CNI runtime test.
declare -A PKG=(
  [clang]=clang [llc]=llvm [bpftool]=bpftool [ip]=iproute2 [tc]=iproute2 [iptables]=iptables
  [ping]=iputils-ping [iperf3]=iperf3 [jq]=jq [flock]=util-linux [nsenter]=util-linux
  [sysctl]=procps [podman]=podman [runc]=runc [busybox]=busybox-static
)
missing=()
for tool in "${!PKG[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${PKG[$tool]}")
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
[ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "bootstrap: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
echo "bootstrap: ready"
