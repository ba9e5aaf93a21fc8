#!/usr/bin/env bash
# Installs what building and testing TierMesh needs on a Debian machine and is not there yet:
# RocksDB 7.8 from Debian (linked instead of compiling 25 minutes of C++), libclang for
# rocksdb's bindgen, and iproute2 (ip, tc) for the network-namespace test. Run as root (or with
# sudo available); does nothing when everything is installed.
set -euo pipefail
need=()
for package in librocksdb-dev libclang-dev iproute2; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
