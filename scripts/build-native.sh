#!/usr/bin/env bash
# Compile every native/*.c to dist/native/<name> with `clang -O2 -Wall`, plus the link flags a
# file names on a line `// ldflags: …` (e.g. `// ldflags: -lbpf`). Run by `npm run build`.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
mkdir -p dist/native
for src in native/*.c; do
  name=$(basename "$src" .c)
  ldflags=$(sed -n 's|^[[:space:]]*//[[:space:]]*ldflags:[[:space:]]*||p' "$src" | head -n1)
  # shellcheck disable=SC2086 # ldflags is a list of words
  clang -O2 -Wall -o "dist/native/$name" "$src" $ldflags
done
