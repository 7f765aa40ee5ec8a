#!/usr/bin/env bash
# The whole test suite: unit (no root), integration (root: netns, veth, tc, eBPF) and the labs
# end to end. Sets itself up (scripts/bootstrap.sh). Ends with one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh || exit 1
export PN_SKIP_BUILD=1

passed=0; failed=0; pending=0
log=$(mktemp -d /tmp/pn-test-log.XXXXXX)

count() { # mocha spec output → counters
  local f=$1 p fl pe
  p=$(grep -Eo '^ +[0-9]+ passing' "$f" | grep -Eo '[0-9]+' | tail -1)
  fl=$(grep -Eo '^ +[0-9]+ failing' "$f" | grep -Eo '[0-9]+' | tail -1)
  pe=$(grep -Eo '^ +[0-9]+ pending' "$f" | grep -Eo '[0-9]+' | tail -1)
  passed=$((passed + ${p:-0})); failed=$((failed + ${fl:-0})); pending=$((pending + ${pe:-0}))
}

run_mocha() { # name, mocha args…
  local name=$1; shift
  echo "== $name"
  if npx mocha --color=false "$@" 2>&1 | tee "$log/$name.txt"; then :; else
    grep -Eq '^ +[0-9]+ failing' "$log/$name.txt" || failed=$((failed + 1))  # crashed before reporting
  fi
  count "$log/$name.txt"
}

run_mocha unit 'dist/test/unit/**/*.test.js'
run_mocha integration --timeout 180000 'dist/test/integration/**/*.integration.js'

for lab in labs/[0-9][0-9]-*/run.sh; do
  [ -f "$lab" ] || continue
  echo "== lab $lab"
  if bash "$lab"; then passed=$((passed + 1)); echo "lab $lab: ok"; else failed=$((failed + 1)); echo "lab $lab: FAILED"; fi
done

echo
if [ "$pending" -gt 0 ]; then echo "$passed passed, $failed failed, $pending skipped"; else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ] && [ "$pending" -eq 0 ]
