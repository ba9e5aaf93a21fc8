#!/bin/sh
# TierMesh container entrypoint: makes the node directory on first start, then runs the node as
# PID 1 (`exec`, so SIGTERM from `docker stop` / Kubernetes reaches it and it shuts down cleanly).
# Every message of this script goes to stderr; stdout is the node's own (`listening on ...`).
#
# Environment (the image sets the defaults marked *):
#   TIERMESH_DIR        * the node directory (/data/node, on the /data volume)
#   TIERMESH_REGION       the node's 12-digit region code; required on first start (init)
#   TIERMESH_NAME         a human name for the node (first start only; optional)
#   TIERMESH_LISTEN     * UDP address for QUIC (0.0.0.0:7400)
#   TIERMESH_ADMIN      * TCP address of the admin port, /metrics and /healthz (0.0.0.0:9464);
#                         empty: no admin port
#   TIERMESH_PEER         peers trusted before the registry arrives, KEY@HOST:PORT, space-separated
#   TIERMESH_PEER_KEY_FILE, TIERMESH_PEER_ADDR
#                         one more peer whose public key (hex) is in a file that may appear later
#                         (written by that node's TIERMESH_PUBLISH_KEY): waited for
#   TIERMESH_PUBLISH_KEY  write this node's public key (hex) to this file at every start
#   TIERMESH_CREATE_MESH  "yes": make this node the first voter of a new mesh (national node),
#                         once, before it first runs; needs TIERMESH_ADDR and the root officer's
#                         public key in TIERMESH_OFFICER (hex) or TIERMESH_OFFICER_FILE (waited for)
#   TIERMESH_ADDR         the address other nodes reach this one at, IP:PORT (with CREATE_MESH)
#   TIERMESH_WAIT         seconds to wait for the files above (default 300)
#   TIERMESH_BIN          the tiermesh binary (default: tiermesh on PATH)
#   TIERMESH_RUN_ARGS     more flags for `tiermesh run`, split on spaces (e.g. --tick-ms 200)
set -eu

tiermesh="${TIERMESH_BIN:-tiermesh}"
wait_secs="${TIERMESH_WAIT:-300}"

say() { echo "entrypoint: $*" >&2; }
die() { say "error: $*"; exit 2; }
need() {
  eval "value=\${$1:-}"
  [ -n "$value" ] || die "$1 is not set: $2"
}

# wait_for FILE WHAT: until FILE exists and is not empty, at most $wait_secs seconds.
wait_for() {
  waited=0
  until [ -s "$1" ]; do
    [ "$waited" -lt "$wait_secs" ] || die "$1 ($2) did not appear within ${wait_secs}s"
    [ "$waited" -gt 0 ] || say "waiting for $1 ($2)"
    sleep 1
    waited=$((waited + 1))
  done
}

need TIERMESH_DIR "the node directory, e.g. /data/node"
dir="$TIERMESH_DIR"
listen="${TIERMESH_LISTEN:-0.0.0.0:7400}"
admin="${TIERMESH_ADMIN:-}"

if [ ! -f "$dir/node.toml" ]; then
  need TIERMESH_REGION "the node's 12-digit region code (needed to create $dir/node.toml)"
  mkdir -p "$(dirname "$dir")"
  if [ -n "${TIERMESH_NAME:-}" ]; then
    "$tiermesh" init --dir "$dir" --region "$TIERMESH_REGION" --name "$TIERMESH_NAME" >&2
  else
    "$tiermesh" init --dir "$dir" --region "$TIERMESH_REGION" >&2
  fi
fi

public_key="$(sed -n 's/^public_key = "\(.*\)"$/\1/p' "$dir/node.toml")"
[ -n "$public_key" ] || die "$dir/node.toml has no public_key line"
if [ -n "${TIERMESH_PUBLISH_KEY:-}" ]; then
  mkdir -p "$(dirname "$TIERMESH_PUBLISH_KEY")"
  echo "$public_key" > "$TIERMESH_PUBLISH_KEY.tmp"
  mv "$TIERMESH_PUBLISH_KEY.tmp" "$TIERMESH_PUBLISH_KEY"
fi

if [ "${TIERMESH_CREATE_MESH:-no}" = yes ] && [ ! -e "$dir/mesh-created" ]; then
  need TIERMESH_ADDR "the address other nodes reach this node at, IP:PORT (for mesh create)"
  officer="${TIERMESH_OFFICER:-}"
  if [ -z "$officer" ]; then
    need TIERMESH_OFFICER_FILE "or TIERMESH_OFFICER: the root officer's public key (for mesh create)"
    wait_for "$TIERMESH_OFFICER_FILE" "the root officer's public key"
    officer="$(cat "$TIERMESH_OFFICER_FILE")"
  fi
  if out="$("$tiermesh" mesh create --dir "$dir" --officer "$officer" --addr "$TIERMESH_ADDR" 2>&1)"; then
    echo "$out" >&2
  else
    case "$out" in
      *"already part of a mesh"*) say "$dir is already part of a mesh" ;;
      *) echo "$out" >&2; die "mesh create failed" ;;
    esac
  fi
  : > "$dir/mesh-created"
fi

# The flags of `tiermesh run`, collected in "$@".
set --
if [ -n "$admin" ]; then
  set -- "$@" --admin "$admin"
fi
for peer in ${TIERMESH_PEER:-}; do
  set -- "$@" --peer "$peer"
done
if [ -n "${TIERMESH_PEER_KEY_FILE:-}" ]; then
  need TIERMESH_PEER_ADDR "the address of the peer whose key is in $TIERMESH_PEER_KEY_FILE"
  wait_for "$TIERMESH_PEER_KEY_FILE" "a peer's public key"
  set -- "$@" --peer "$(cat "$TIERMESH_PEER_KEY_FILE")@$TIERMESH_PEER_ADDR"
fi
# shellcheck disable=SC2086 # split on purpose
set -- "$@" ${TIERMESH_RUN_ARGS:-}

say "starting node $public_key in $dir"
exec "$tiermesh" run --dir "$dir" --listen "$listen" "$@"
