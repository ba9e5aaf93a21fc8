#!/bin/sh
# Sets up a new TierMesh mesh once its nodes run: the root officer's key, then registration of
# every node and promotion of the voters, signed by that officer. Safe to run again (what is
# done already is done again, which changes nothing). Used by the `bootstrap` service of
# compose.yaml; runs just as well outside a container, against any reachable nodes.
#
# The national node creates the mesh itself (`mesh create` needs its directory): its entrypoint,
# with TIERMESH_CREATE_MESH=yes, waits for OFFICER_PUB, which this script writes.
#
# Environment:
#   MESH_CONNECT   a node of the mesh to send to, HOST:PORT (the national node)      [required]
#   MESH_NODES     the nodes to register: space-separated NAME,REGION,ADDR,ROLE with ROLE
#                  voter or learner, e.g. "guizhou,520000000000,172.28.0.11:7400,voter"; a node's
#                  public key (hex) is read from KEYS_DIR/NAME.pub (its TIERMESH_PUBLISH_KEY)
#                                                                                    [required]
#   KEYS_DIR       where the nodes publish their public keys (default /shared)
#   OFFICER_KEY    the root officer's key file; made with `tiermesh keygen` if missing
#                  (default /data/officer.key; keep it off the nodes)
#   OFFICER_PUB    where to publish the officer's public key (default KEYS_DIR/officer.pub)
#   BOOTSTRAP_WAIT seconds to wait for each step (default 300)
#   TIERMESH_BIN   the tiermesh binary (default: tiermesh on PATH)
set -eu

tiermesh="${TIERMESH_BIN:-tiermesh}"
keys_dir="${KEYS_DIR:-/shared}"
officer_key="${OFFICER_KEY:-/data/officer.key}"
officer_pub="${OFFICER_PUB:-$keys_dir/officer.pub}"
wait_secs="${BOOTSTRAP_WAIT:-300}"

say() { echo "bootstrap: $*" >&2; }
die() { say "error: $*"; exit 2; }
[ -n "${MESH_CONNECT:-}" ] || die "MESH_CONNECT is not set: a node of the mesh, HOST:PORT"
[ -n "${MESH_NODES:-}" ] || die "MESH_NODES is not set: NAME,REGION,ADDR,ROLE ..."
connect="$MESH_CONNECT"
for node in $MESH_NODES; do
  case "$node" in
    *,*,*:*,voter | *,*,*:*,learner) ;;
    *) die "MESH_NODES: '$node' is not NAME,REGION,HOST:PORT,ROLE with ROLE voter or learner" ;;
  esac
done

out="$(mktemp)"
trap 'rm -f "$out"' EXIT

# retry WHAT COMMAND...: runs COMMAND until it succeeds, at most $wait_secs seconds.
retry() {
  what="$1"
  shift
  waited=0
  until "$@" > "$out" 2>&1; do
    if [ "$waited" -ge "$wait_secs" ]; then
      cat "$out" >&2
      die "$what: not within ${wait_secs}s"
    fi
    [ "$waited" -gt 0 ] || say "waiting: $what"
    sleep 1
    waited=$((waited + 1))
  done
  cat "$out" >&2
}

# The nodes in the mesh's status as KEY REACHABLE ROLE lines (from the JSON of `mesh status`).
nodes_seen() {
  "$tiermesh" mesh status --key "$officer_key" --connect "$connect" --format json |
    awk -F'"' '
      /"key":/ { key = $4 }
      /"reachable":/ { reachable = ($0 ~ /true/) ? "yes" : "no" }
      /"role":/ { role = $4 }
      /^ *}/ { if (key != "") print key, reachable, role; key = "" }'
}
# seen KEY [ROLE]: the mesh shows the node reachable (with ROLE).
seen() {
  nodes_seen | grep -q "^$1 yes ${2:-}"
}

mkdir -p "$keys_dir" "$(dirname "$officer_key")"
if [ ! -f "$officer_key" ]; then
  "$tiermesh" keygen --out "$officer_key" > "$officer_key.out"
  sed -n 's/^public key //p' "$officer_key.out" > "$officer_key.pub"
  rm -f "$officer_key.out"
fi
[ -s "$officer_key.pub" ] || die "$officer_key.pub is missing: remove $officer_key to start over"
cp "$officer_key.pub" "$officer_pub.tmp"
mv "$officer_pub.tmp" "$officer_pub"
say "root officer $(cat "$officer_pub")"

retry "the mesh answers at $connect" \
  "$tiermesh" mesh status --key "$officer_key" --connect "$connect"

for node in $MESH_NODES; do
  IFS=, read -r name region addr role <<NODE
$node
NODE
  retry "the public key of $name in $keys_dir/$name.pub" test -s "$keys_dir/$name.pub"
  key="$(cat "$keys_dir/$name.pub")"
  retry "registering $name" \
    "$tiermesh" node register --officer-key "$officer_key" --pubkey "$key" --region "$region" \
    --addr "$addr" --name "$name" --connect "$connect"
  if [ "$role" = voter ]; then
    # A voter that cannot be reached would hold back the quorum: promote once it answers.
    retry "$name reachable from the mesh" seen "$key"
    retry "promoting $name" \
      "$tiermesh" mesh promote "$key" --officer-key "$officer_key" --connect "$connect"
    retry "$name a voter" seen "$key" voter
  fi
done

"$tiermesh" mesh status --fresh --key "$officer_key" --connect "$connect"
say "done"
