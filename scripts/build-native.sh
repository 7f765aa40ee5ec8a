#!/usr/bin/env bash
# Compile every native/*.c to dist/native/<name> with `clang -O2 -Wall -Wextra -Werror`, plus the
# link flags a file names on a line `// ldflags: …` (e.g. `// ldflags: -lbpf`). Run by `npm run build`.
# The sanitizer build and the helpers' tests and fuzzers: scripts/test-native.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
mkdir -p dist/native
for src in native/*.c; do
  name=$(basename "$src" .c)
  grep -q '^#include <node_api.h>' "$src" && continue # a Node addon: built below
  ldflags=$(sed -n 's|^[[:space:]]*//[[:space:]]*ldflags:[[:space:]]*||p' "$src" | head -n1)
  # shellcheck disable=SC2086 # ldflags is a list of words
  clang -O2 -Wall -Wextra -Werror -o "dist/native/$name" "$src" $ldflags
done

# Node-API addons (a native/*.c that includes node_api.h) → dist/native/<name>.node, loaded with
# require(); node's own symbols resolve at load time. Headers: the nodejs package (/usr/include/node).
for src in native/*.c; do
  grep -q '^#include <node_api.h>' "$src" || continue
  clang -O2 -Wall -Wextra -Werror -shared -fPIC -I/usr/include/node -o "dist/native/$(basename "$src" .c).node" "$src"
done
