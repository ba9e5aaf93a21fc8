#!/usr/bin/env bash
# A five-node TierMesh mesh on this machine (127.0.0.1 only): national, two provinces (the three
# Raft voters), a prefecture and a county (learners). Nodes run in the background; their logs and
# data go under the folder given (default /tmp/tiermesh-local-mesh). Stop them with
#   kill $(cat FOLDER/*.pid)
# Uses the [mesh] sections of configs/local-mesh/*.toml (listen address, tick).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="${1:-/tmp/tiermesh-local-mesh}"
tiermesh="${TIERMESH:-$here/target/release/tiermesh}"
[ -x "$tiermesh" ] || { echo "build first: cargo build --release (or set TIERMESH=path)" >&2; exit 2; }
[ -e "$root" ] && { echo "$root exists; remove it or name another folder" >&2; exit 2; }
mkdir -p "$root"

listen_of() { sed -n 's/^listen = "\(.*\)"/\1/p' "$here/configs/local-mesh/$1.toml"; }
key_of() { sed -n 's/^public_key = "\(.*\)"/\1/p' "$root/$1/node.toml"; }

"$tiermesh" keygen --out "$root/officer.key" >/dev/null
declare -A regions=([national]=000000000000 [guizhou]=520000000000 [yunnan]=530000000000 \
                    [guiyang]=520100000000 [nanming]=520102000000)
for name in national guizhou yunnan guiyang nanming; do
  "$tiermesh" init --dir "$root/$name" --region "${regions[$name]}" --name "$name" >/dev/null
done
national_addr="$(listen_of national)"
national_key="$(key_of national)"
for name in national guizhou yunnan guiyang nanming; do
  {
    echo
    echo "[mesh]"
    echo "listen = \"$(listen_of "$name")\""
    [ "$name" = national ] || echo "peers = [\"$national_key@$national_addr\"]"
    echo "tick_ms = 100"
  } >> "$root/$name/node.toml"
done
"$tiermesh" mesh create --dir "$root/national" --officer "$root/officer.key" --addr "$national_addr" >/dev/null

start() {
  "$tiermesh" run --dir "$root/$1" > "$root/$1.log" 2>&1 &
  echo $! > "$root/$1.pid"
}
start national
for name in guizhou yunnan guiyang nanming; do
  "$tiermesh" node register --officer-key "$root/officer.key" --pubkey "$(key_of "$name")" \
    --region "${regions[$name]}" --addr "$(listen_of "$name")" --name "$name" --connect "$national_addr"
  start "$name"
done
for name in guizhou yunnan; do
  "$tiermesh" mesh promote "$(key_of "$name")" --officer-key "$root/officer.key" --connect "$national_addr"
done
"$tiermesh" mesh status --fresh --key "$root/officer.key" --connect "$national_addr"
echo "officer key: $root/officer.key; stop with: kill \$(cat $root/*.pid)"
