#!/usr/bin/env bash
# The whole test suite: unit (no root), integration (root: netns, veth, tc, eBPF) and the labs
# end to end. Sets itself up (scripts/bootstrap.sh). Ends with one line "N passed, N failed".
#
# Integration files and labs build separate `pn-…` namespaces, state dirs and bpffs folders, so
# they run as independent jobs, PN_TEST_JOBS at a time (default 2: the suite must stay under 25
# minutes on a 2-CPU machine). Each job's output goes to its own log, printed whole when it ends.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh || exit 1
export PN_SKIP_BUILD=1
JOBS=${PN_TEST_JOBS:-2}

passed=0; failed=0; pending=0
log=$(mktemp -d /tmp/pn-test-log.XXXXXX)

count() { # mocha spec output → counters
  local f=$1 p fl pe
  p=$(grep -Eo '^ +[0-9]+ passing' "$f" | grep -Eo '[0-9]+' | tail -1)
  fl=$(grep -Eo '^ +[0-9]+ failing' "$f" | grep -Eo '[0-9]+' | tail -1)
  pe=$(grep -Eo '^ +[0-9]+ pending' "$f" | grep -Eo '[0-9]+' | tail -1)
  passed=$((passed + ${p:-0})); failed=$((failed + ${fl:-0})); pending=$((pending + ${pe:-0}))
}

echo "== unit"
npx mocha --color=false 'dist/test/unit/**/*.test.js' 2>&1 | tee "$log/unit.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || grep -Eq '^ +[0-9]+ failing' "$log/unit.txt" || failed=$((failed + 1))  # crashed before reporting
count "$log/unit.txt"

# Native helpers under AddressSanitizer + UBSan: their unit tests and fuzzers (prints "N passed, N failed").
if [ -f scripts/test-native.sh ]; then
  echo "== native (asan, ubsan, fuzz)"
  bash scripts/test-native.sh 2>&1 | tee "$log/native.txt"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log/native.txt" | tail -1)
  if [ -n "$line" ]; then
    passed=$((passed + $(echo "$line" | grep -Eo '^[0-9]+'))); failed=$((failed + $(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')))
  fi
  [ "$rc" -eq 0 ] || [ -n "$line" ] || failed=$((failed + 1))
fi

# One bpffs for every job, mounted before any of them starts (two jobs mounting at once would
# stack two mounts, and the later one hides the earlier one's pins).
mkdir -p /run/pn/bpffs
[ "$(stat -f -c %T /run/pn/bpffs)" = bpf_fs ] || mount -t bpf bpf /run/pn/bpffs

# Jobs, longest first (seconds measured on a 2-CPU machine; unknown ones count 60).
declare -A WEIGHT=(
  [cni-conformance]=200 [crash]=150 [host-routing]=80 [etcd-pool]=70 [cni-parallel]=55 [services]=60
  [monitor]=60 [agent]=60 [podman-cni]=60 [bpf-ipv6]=30 [bgp]=30
  [policy-truth-table]=190 [policy-datapath]=60 [cluster-agents]=60 [masquerade]=60 [tunnel]=50
)
jobs_file="$log/jobs"
: > "$jobs_file"
for f in dist/test/integration/*.integration.js; do
  base=$(basename "$f" .integration.js)
  echo "${WEIGHT[$base]:-60} it $f" >> "$jobs_file"
done
for lab in labs/[0-9][0-9]-*/run.sh; do
  [ -f "$lab" ] && echo "90 lab $lab" >> "$jobs_file"
done

run_job() { # kind path → log file; exit status ignored (judged from the log)
  local kind=$1 f=$2 out
  out="$log/$(echo "$f" | tr '/' '_').txt"
  local start=$SECONDS
  if [ "$kind" = it ]; then
    npx mocha --color=false --timeout 180000 "$f" > "$out" 2>&1
    echo "exit $?" >> "$out"
  else
    if bash "$f" > "$out" 2>&1; then echo "lab $f: ok" >> "$out"; else echo "lab $f: FAILED" >> "$out"; fi
  fi
  { echo "== $kind $f ($((SECONDS - start)) s)"; cat "$out"; } > "$out.done"
  cat "$out.done"
}
export -f run_job
export log

sort -rn "$jobs_file" | cut -d' ' -f2- | xargs -P "$JOBS" -L 1 bash -c 'run_job "$0" "$1"'

for done in "$log"/*.done; do
  if grep -q '^== lab ' "$done"; then
    if grep -q ': ok$' "$done"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  else
    count "$done"
    if ! grep -q '^exit 0$' "$done" && ! grep -Eq '^ +[0-9]+ failing' "$done"; then
      failed=$((failed + 1)); echo "crashed before reporting: $(head -1 "$done")"
    fi
  fi
done

echo
if [ "$pending" -gt 0 ]; then echo "$passed passed, $failed failed, $pending skipped"; else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ] && [ "$pending" -eq 0 ]
