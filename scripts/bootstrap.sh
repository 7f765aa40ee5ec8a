#!/usr/bin/env bash
# Installs what pn needs on a fresh Debian machine (as root) and builds it. Idempotent and
# quick when everything is already there: apt runs only for missing tools, npm ci only when
# node_modules is missing or older than package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bootstrap: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (pn creates network namespaces, veths and BPF programs)"
command -v node >/dev/null || die "node (v20+) is required"

# Debian packages pn, its tests and labs use. podman/runc/busybox-static serve the CNI runtime
# tests (the image is the static busybox binary, so the dynamic `busybox` package will not do);
# containerd (1.6 on Debian 12) is the containerd `ctr run --cni` test; it never runs as a service there.
# libclang-rt-14-dev is the AddressSanitizer/UBSan runtime scripts/test-native.sh links the C helpers with.
# strace: the crash test checks fsync-before-return order with it; openssl: the etcd TLS tests make their certificates.
# ipset: bench/policy's iptables + ipset peer.
PACKAGES=(
  clang llvm libbpf-dev bpftool iproute2 iptables iputils-ping iperf3 jq util-linux procps
  containernetworking-plugins podman runc containerd busybox-static bird2 etcd-server nftables ipset python3 sockperf
  libclang-rt-14-dev strace openssl
)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
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
