#!/usr/bin/env bash
# Installs what nodemesh needs on a Debian 12 machine (run as root): libbpf to load the
# programs, iproute2 for the testbed, clang and bpftool to rebuild and inspect the eBPF
# objects, curl, wrk and h2load (nghttp2-client) as real peers for the tests, the demo and the
# benchmark, HAProxy as the benchmark's anchor.
set -euo pipefail
packages=(libbpf1 libbpf-dev clang llvm bpftool iproute2 util-linux curl wrk nghttp2-proxy nghttp2-client openssl tcpdump tshark prometheus haproxy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
