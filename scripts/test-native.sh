#!/usr/bin/env bash
# The native helpers under AddressSanitizer and UndefinedBehaviorSanitizer: every native/*.c and
# every test harness test/native/*-test.c is built with -Wall -Wextra -Werror
# -fsanitize=address,undefined -fno-sanitize-recover=all into dist/native-asan/ (never over the
# release build in dist/native/), then each harness runs its cases and its deterministic fuzzing
# (FUZZ_ITERATIONS inputs per parser, default 10000; FUZZ_SEED to vary them), and the unit tests
# that run the built helpers run once more against these builds. A harness or helper that
# crashes, trips a sanitizer or fails a check fails. Ends with one line "N passed, N failed".
# Needs clang and the sanitizer runtime (Debian: libclang-rt-14-dev).
#
#   scripts/test-native.sh --explore SECONDS   coverage-guided fuzzing instead (libFuzzer: each
#     parser for SECONDS, corpus and crashes kept in dist/native-fuzz/); for a developer, not CI.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--explore" ]; then
  seconds=${2:-60}; dir=dist/native-fuzz; mkdir -p "$dir"; bad=0
  for harness in test/native/*-test.c; do
    name=$(basename "$harness" -test.c)
    helper=$(sed -n 's|^#include "../../native/\(.*\)"$|native/\1|p' "$harness" | head -n1)
    # shellcheck disable=SC2046
    clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -DPN_LIBFUZZER -Wall -Wextra -Werror -Wno-unused-function \
      -o "$dir/$name" "$harness" $(sed -n 's|^[[:space:]]*//[[:space:]]*ldflags:[[:space:]]*||p' "$helper" | head -n1) || exit 1
    n=$(grep -c '(struct fz_target){' "$harness")
    for ((k = 0; k < n; k++)); do
      corpus="$dir/corpus-$name-$k"; mkdir -p "$corpus"
      if FUZZ_TARGET=$k FUZZ_SEEDS_DIR="$corpus" "$dir/$name" -max_total_time="$seconds" -artifact_prefix="$dir/crash-$name-$k-" "$corpus" >"$dir/log-$name-$k.txt" 2>&1; then
        echo "ok   $name target $k: $(grep -Eo 'Done [0-9]+ runs' "$dir/log-$name-$k.txt")"
      else
        bad=$((bad + 1)); echo "FAIL $name target $k: see $dir/log-$name-$k.txt and $dir/crash-$name-$k-*"
      fi
    done
  done
  exit $((bad > 0))
fi
out=dist/native-asan
iterations=${FUZZ_ITERATIONS:-10000}
seed=${FUZZ_SEED:-0x9e3779b97f4a7c15}
flags=(-g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror -fsanitize=address,undefined -fno-sanitize-recover=all)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$out"
passed=0; failed=0
ldflags_of() { sed -n 's|^[[:space:]]*//[[:space:]]*ldflags:[[:space:]]*||p' "$1" | head -n1; }

echo "== build (sanitizers) into $out"
for src in native/*.c; do
  name=$(basename "$src" .c)
  if grep -q '^#include <node_api.h>' "$src"; then
    # A Node addon runs inside node, which has no sanitizer runtime: checked for warnings only.
    if clang -fsyntax-only -Wall -Wextra -Werror -I/usr/include/node "$src"; then passed=$((passed + 1)); echo "  ok  check $name (addon)"
    else failed=$((failed + 1)); echo "  FAIL check $name (addon)"; fi
    continue
  fi
  # shellcheck disable=SC2046 # ldflags is a list of words
  if clang "${flags[@]}" -o "$out/$name" "$src" $(ldflags_of "$src"); then passed=$((passed + 1)); echo "  ok  build $name"
  else failed=$((failed + 1)); echo "  FAIL build $name"; fi
done

for harness in test/native/*-test.c; do
  name=$(basename "$harness" .c)
  helper=$(sed -n 's|^#include "../../native/\(.*\)"$|native/\1|p' "$harness" | head -n1)
  echo "== $name (${helper:-no helper})"
  # The harness includes its helper's .c: the helper's link flags; the helper's main and the
  # functions only it calls are left out (-Wno-unused-function).
  # shellcheck disable=SC2046
  if ! clang "${flags[@]}" -Wno-unused-function -o "$out/$name" "$harness" $([ -n "$helper" ] && ldflags_of "$helper"); then
    failed=$((failed + 1)); echo "  FAIL build $name"; continue
  fi
  log=$("$out/$name" --seed "$seed" --iterations "$iterations" 2>&1); rc=$?
  printf '%s\n' "$log" | grep -v '^  ok ' | tail -n 40
  p=$(printf '%s\n' "$log" | sed -n 's/^.*: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' | tail -1)
  f=$(printf '%s\n' "$log" | sed -n 's/^.*: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' | tail -1)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  # A crash or a sanitizer report ends the harness before its summary: one failure more.
  if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then failed=$((failed + 1)); echo "  FAIL $name exited $rc"; fi
done

# The helpers' own main loops, end to end: the unit tests that run the built helpers (no root:
# nothing they do touches the kernel's state), pointed at the sanitizer build; and the addon's
# (dist/native/pn-sys.node, the release build: node has no sanitizer runtime) frame checks and
# locks. Needs the TypeScript build (npm run build).
tests=(dist/test/unit/netlink-worker.test.js dist/test/unit/native-client.test.js dist/test/unit/native-limits.test.js dist/test/unit/locks.test.js)
if [ -f "${tests[0]}" ]; then
  echo "== unit tests against $out"
  mlog=$(PN_TEST_NATIVE_DIR="$out" npx mocha --color=false "${tests[@]}" 2>&1); mrc=$?
  printf '%s\n' "$mlog" | grep -Ev '^ +✔ ' | sed '/^$/d' | tail -n 40
  p=$(printf '%s\n' "$mlog" | grep -Eo '^ +[0-9]+ passing' | grep -Eo '[0-9]+' | tail -1)
  f=$(printf '%s\n' "$mlog" | grep -Eo '^ +[0-9]+ failing' | grep -Eo '[0-9]+' | tail -1)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ "$mrc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then failed=$((failed + 1)); echo "  FAIL mocha exited $mrc"; fi
else
  failed=$((failed + 1)); echo "  FAIL ${tests[0]} is missing: run npm run build first"
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
