#!/usr/bin/env bash
# Compile every native/*.c to dist/native/<name> with `clang -O2 -Wall`. A line
# `// ldflags: …` in a source adds link flags for that file.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/native
shopt -s nullglob
for src in native/*.c; do
  name=$(basename "$src" .c)
  ldflags=$(sed -n 's|^// ldflags: *||p' "$src" | head -n 1)
  # shellcheck disable=SC2086  # ldflags is a list of words
  clang -O2 -Wall -o "dist/native/$name" "$src" $ldflags
done
