# Shared helpers for pn labs (source this file). Every lab builds its world in `pn-` network
# namespaces, runs pn inside them with `ip netns exec`, and never touches the root netns.
set -euo pipefail

PN_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PN_BPFFS=/run/pn/bpffs

die() { echo "error: $*" >&2; exit 1; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (network namespaces, veths, bpffs)"; }

need_cmds() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || die "missing command: $c"; done
}

# Build pn once: npm ci only when node_modules is missing, then tsc.
ensure_built() {
  [ "${PN_SKIP_BUILD:-0}" = 1 ] && return 0  # scripts/test.sh and labs/main.sh built already
  (cd "$PN_REPO" && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run --silent build) >/dev/null ||
    die "build failed (cd $PN_REPO && npm run build)"
}

# The bpffs must be mounted here, before `ip netns exec` copies the mount table.
ensure_bpffs() {
  mkdir -p "$PN_BPFFS"
  [ "$(stat -f -c %T "$PN_BPFFS")" = bpf_fs ] || mount -t bpf bpf "$PN_BPFFS"
}

# pn inside a node namespace: pn_in NS STATE_DIR args…
pn_in() {
  local ns=$1 state=$2
  shift 2
  ip netns exec "$ns" node "$PN_REPO/bin/run.js" "$@" --state-dir "$state"
}

# A name must be a `pn-` name of at most 15 chars.
check_ns_name() {
  [[ $1 == pn-* && ${#1} -le 15 ]] || die "bad namespace name $1 (need pn- prefix, ≤ 15 chars)"
}

ns_add() {
  check_ns_name "$1"
  ip netns add "$1"
  ip -n "$1" link set lo up
}

ns_del() { ip netns del "$1" 2>/dev/null || true; }

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

# Register a cleanup function run on exit (skipped when PN_LAB_KEEP=1).
on_exit() {
  local fn=$1
  # shellcheck disable=SC2064
  trap "rc=\$?; if [ \"\${PN_LAB_KEEP:-0}\" = 1 ]; then echo 'PN_LAB_KEEP=1: leaving the lab up (run teardown.sh)'; else $fn || true; fi; exit \$rc" EXIT
}

# A bridge "switch" in namespace SW and, for each NODE_NS:IP, an uplink eth0 (IP/24) plugged
# into it: switch_nodes SW NODE_NS:IP …  (the namespaces must exist)
switch_nodes() {
  local sw=$1 pair ns ip i=0
  shift
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  for pair in "$@"; do
    i=$((i + 1))
    ns=${pair%%:*} ip=${pair##*:}
    ip -n "$ns" link add eth0 type veth peer name "port$i" netns "$sw"
    ip -n "$sw" link set "port$i" master br0 up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
}

# Watch one command (a ping) with `pn monitor`, bounded by --duration so nothing is left running:
#   monitor_around NODE_NS STATE SECONDS "MONITOR FLAGS" CMD…
monitor_around() {
  local ns=$1 state=$2 secs=$3 flags=$4
  shift 4
  local out
  out=$(mktemp)
  printf '$ pn monitor --duration %ss %s   # while: %s\n' "$secs" "$flags" "$*"
  # shellcheck disable=SC2086 # flags are words on purpose
  pn_in "$ns" "$state" monitor --duration "${secs}s" $flags >"$out" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening" "$out" && break; sleep 0.1; done
  "$@" >/dev/null || true
  if ! wait "$pid"; then cat "$out"; rm -f "$out"; die "pn monitor failed"; fi
  cat "$out"
  rm -f "$out"
}
