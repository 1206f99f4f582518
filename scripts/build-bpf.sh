#!/usr/bin/env bash
# Builds bpf/*.bpf.c into the prebuilt objects the agent loads. Output is byte-identical
# across runs and clone directories (relative paths, prefix maps), so CI can prove the
# committed objects match their sources with --check.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

build() {
  local out_dir=$1 src name
  mkdir -p "$out_dir"
  for src in bpf/*.bpf.c; do
    name=$(basename "$src" .c)
    # Relative source paths and the prefix maps keep the checkout directory out of the
    # DWARF and BTF line info.
    clang -O2 -g -target bpf -D__TARGET_ARCH_x86 \
      -I"/usr/include/$(uname -m)-linux-gnu" -Ibpf \
      -ffile-prefix-map="$repo_root"=. -fdebug-prefix-map="$repo_root"=. \
      -Wall -Werror \
      -c "$src" -o "$out_dir/$name.o"
  done
}

case "${1:-}" in
  --check)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    build "$tmp"
    status=0
    for fresh in "$tmp"/*.bpf.o; do
      committed=bpf/$(basename "$fresh")
      if [[ ! -f $committed ]]; then
        echo "build-bpf: $committed is missing: run scripts/build-bpf.sh and commit it" >&2
        status=1
      elif ! cmp -s "$fresh" "$committed"; then
        echo "build-bpf: $committed differs from a fresh build of its source: run scripts/build-bpf.sh and commit it" >&2
        status=1
      fi
    done
    for committed in bpf/*.bpf.o; do
      [[ -f $tmp/$(basename "$committed") ]] || { echo "build-bpf: $committed has no source bpf/$(basename "$committed" .o).c" >&2; status=1; }
    done
    [[ $status -eq 0 ]] && echo "build-bpf: committed objects match their sources"
    exit $status
    ;;
  "")
    build "${OUT_DIR:-bpf}"
    ;;
  *)
    echo "usage: scripts/build-bpf.sh [--check]   (OUT_DIR=dir to build elsewhere)" >&2
    exit 2
    ;;
esac
