#!/usr/bin/env bash
# A nine-node TierMesh mesh over emulated WAN links, one network namespace per node (root only).
#
#   deploy/netns/wan-mesh.sh up ROOT           build the network, start the nodes, make the mesh
#   deploy/netns/wan-mesh.sh down ROOT         stop the nodes, delete the namespaces (idempotent)
#   deploy/netns/wan-mesh.sh cut ROOT NODE     drop every packet on NODE's uplink, both ways
#   deploy/netns/wan-mesh.sh heal ROOT NODE    undo `cut`
#   deploy/netns/wan-mesh.sh exec ROOT NODE CMD...   run CMD in NODE's namespace
#   deploy/netns/wan-mesh.sh query ROOT [SQL]  a national query from the national namespace
#   deploy/netns/wan-mesh.sh rtt ROOT FROM TO  median UDP round trip FROM -> TO (the network alone)
#
# Topology (the tier tree; NODE names as used above):
#
#   national 000000000000 ─┬─ guizhou 520000000000 ── guiyang 520100000000 ─┬─ nanming 520102000000
#      (Raft voter)        │     (Raft voter)                              └─ yunyan  520103000000
#                          └─ yunnan  530000000000 ── kunming 530100000000 ─┬─ wuhua   530102000000
#                                (Raft voter)                              └─ panlong 530103000000
#
# One namespace per node, tmw<ID>-<NODE> (ID: $TMW_ID, default this shell's pid; kept in
# ROOT/net/id). Each tier link is one L2 segment: national+provinces (10.0.0.0/24), province+
# prefecture (10.5x.0.0/24), prefecture+counties (10.5x.1.0/24); a node at two tiers has two
# interfaces (TAP devices tmw<ID>p<N>) and forwards between them (ip_forward=1). Routes follow the
# tree: a node reaches everything above and beside it through its parent, the provinces reach each
# other directly on their shared segment, and a parent reaches its subtree through its child; so
# every packet between two nodes crosses the links of the tree path and the delays add up. Nothing
# routes outside 10.0.0.0/8, and no namespace has a default route.
#
# Delays: the segments are switched by one small userspace switch (python3, below), because this
# kernel has no sch_netem (tc netem) to delay packets with; every frame is held for half the link's
# round trip as it leaves a node's port (half the RTT on each direction's egress), so that
# RTT national<->province = 30 ms, province<->prefecture = 20 ms, prefecture<->county = 10 ms
# (override with TMW_RTT_MS="30 20 10"); national<->county = 60 ms. `cut` makes the switch drop
# every frame from and to the node's uplink port, silently, like a cut line; `heal` restores it.
#
# `up` also: makes an officer key (ROOT/officer.key) and a staff key (ROOT/staff.key), inits the
# nodes under ROOT/<NODE>, generates $TMW_HOUSEHOLDS (2000) households per county (seed = county
# number) and imports them before the county starts, saves each county's local answer to the check
# query in ROOT/expected/<NODE>.json, creates the mesh on the national node, registers every node
# through it, starts each in its namespace (`tiermesh run --listen IP:7400 --peer NATIONAL`),
# promotes the two provinces to voters, records a national grant for the staff key
# (ROOT/national.grant) and waits until a national query answers with full coverage.
# ROOT/nodes.tsv lists name, namespace, region, address, key, parent; node logs are ROOT/<NODE>.log.
# The client commands run in the national namespace, e.g.
#
#   deploy/netns/wan-mesh.sh exec ROOT national tiermesh query --connect 10.0.0.1:7400 \
#       --key ROOT/staff.key --grant ROOT/national.grant "SELECT COUNT(*) FROM households"
#
# The binary is $TIERMESH, else target/release/tiermesh; needs root, iproute2, python3, /dev/net/tun.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
tiermesh="${TIERMESH:-$here/target/release/tiermesh}"
as_of="${TMW_AS_OF:-2026-06-30}"
households="${TMW_HOUSEHOLDS:-2000}"
read -r rtt_national rtt_province rtt_prefecture <<<"${TMW_RTT_MS:-30 20 10}"
port=7400
check_sql="SELECT county(region_code), COUNT(*), SUM(members) FROM households GROUP BY 1"

# name region parent
nodes=(
  "national 000000000000 -"
  "guizhou 520000000000 national"
  "yunnan 530000000000 national"
  "guiyang 520100000000 guizhou"
  "kunming 530100000000 yunnan"
  "nanming 520102000000 guiyang"
  "yunyan 520103000000 guiyang"
  "wuhua 530102000000 kunming"
  "panlong 530103000000 kunming"
)
# Ports: node segment address/24 one-way-delay-ms; a node's first port is its uplink (its listen
# address), its second (if any) the segment of its children.
ports=(
  "national nat 10.0.0.1 $((rtt_national))"
  "guizhou nat 10.0.0.52 $((rtt_national))"
  "yunnan nat 10.0.0.53 $((rtt_national))"
  "guizhou gz 10.52.0.1 $((rtt_province))"
  "guiyang gz 10.52.0.2 $((rtt_province))"
  "yunnan yn 10.53.0.1 $((rtt_province))"
  "kunming yn 10.53.0.2 $((rtt_province))"
  "guiyang gy 10.52.1.1 $((rtt_prefecture))"
  "nanming gy 10.52.1.2 $((rtt_prefecture))"
  "yunyan gy 10.52.1.3 $((rtt_prefecture))"
  "kunming km 10.53.1.1 $((rtt_prefecture))"
  "wuhua km 10.53.1.2 $((rtt_prefecture))"
  "panlong km 10.53.1.3 $((rtt_prefecture))"
)
# Routes beyond the connected segments: node destination via.
routes=(
  "national 10.52.0.0/16 10.0.0.52"
  "national 10.53.0.0/16 10.0.0.53"
  "guizhou 10.52.1.0/24 10.52.0.2"
  "guizhou 10.53.0.0/16 10.0.0.53"
  "guizhou 10.0.0.0/8 10.0.0.1"
  "yunnan 10.53.1.0/24 10.53.0.2"
  "yunnan 10.52.0.0/16 10.0.0.52"
  "yunnan 10.0.0.0/8 10.0.0.1"
  "guiyang 10.0.0.0/8 10.52.0.1"
  "kunming 10.0.0.0/8 10.53.0.1"
  "nanming 10.0.0.0/8 10.52.1.1"
  "yunyan 10.0.0.0/8 10.52.1.1"
  "wuhua 10.0.0.0/8 10.53.1.1"
  "panlong 10.0.0.0/8 10.53.1.1"
)

# The switch: creates one TAP device per port inside its node's namespace (setns, then open
# /dev/net/tun), then forwards frames between the ports of each segment (learning MACs, flooding
# broadcasts), delivering each frame `delay` ms after it left its port. A control socket takes
# `cut PORT`, `heal PORT` and `ping`; a cut port's frames are dropped both ways.
# Usage: python3 -c "$switch_py" tmw-switch CONFIG SOCKET; CONFIG lines: PORT NETNS IFNAME SEGMENT DELAY_MS
# shellcheck disable=SC2016
switch_py='
import collections, ctypes, fcntl, os, select, socket, struct, sys, time
config_path, socket_path = sys.argv[2], sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
def setns(fd):
    if libc.setns(fd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), "setns")
home = os.open("/proc/self/ns/net", os.O_RDONLY)
ports, by_fd, segments = [], {}, collections.defaultdict(list)
for line in open(config_path):
    name, netns, ifname, segment, delay = line.split()
    ns = os.open("/run/netns/" + netns, os.O_RDONLY)
    setns(ns)
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", ifname.encode(), 0x0002 | 0x1000))
    finally:
        setns(home)
        os.close(ns)
    port = {"name": name, "fd": fd, "segment": segment, "delay": float(delay) / 1000.0,
            "queue": collections.deque(), "index": len(ports)}
    ports.append(port)
    by_fd[fd] = port
    segments[segment].append(port)
try:
    os.nice(-10)
except OSError:
    pass
libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK: wake at the deadline, not up to 50 us later
macs, cut = {}, set()
stats = collections.Counter()
control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
control.bind(socket_path + ".new")
os.rename(socket_path + ".new", socket_path)
control.listen(8)
def handle_control():
    connection, _ = control.accept()
    connection.settimeout(2)
    try:
        words = connection.recv(256).decode().split()
        names = {port["name"] for port in ports}
        if words[:1] == ["ping"]:
            reply = "ok"
        elif words[:1] == ["stats"]:
            reply = "ok " + " ".join(f"{key}={value}" for key, value in sorted(stats.items()))
        elif len(words) == 2 and words[0] in ("cut", "heal") and words[1] in names:
            (cut.add if words[0] == "cut" else cut.discard)(words[1])
            reply = "ok " + " ".join(sorted(cut))
        else:
            reply = "error: unknown command " + " ".join(words)
        connection.sendall((reply + "\n").encode())
    except OSError:
        pass
    finally:
        connection.close()
readers = [port["fd"] for port in ports] + [control.fileno()]
while True:
    now = time.monotonic()
    due = None
    for port in ports:
        queue = port["queue"]
        while queue and queue[0][0] <= now:
            _, frame, targets = queue.popleft()
            if port["name"] in cut:
                stats["dropped"] += 1
                continue
            for target in targets:
                if target["name"] in cut:
                    stats["dropped"] += 1
                    continue
                try:
                    os.write(target["fd"], frame)
                    stats["delivered"] += 1
                except OSError:
                    stats["write_errors"] += 1
        if queue and (due is None or queue[0][0] < due):
            due = queue[0][0]
    timeout = None if due is None else max(0.0, due - time.monotonic())
    ready, _, _ = select.select(readers, [], [], timeout)
    for fd in ready:
        if fd == control.fileno():
            handle_control()
            continue
        port = by_fd[fd]
        while True:
            try:
                frame = os.read(fd, 65536)
            except BlockingIOError:
                break
            if len(frame) < 14:
                continue
            arrived = time.monotonic()
            if port["name"] in cut:
                stats["dropped"] += 1
                continue
            segment = port["segment"]
            macs[(segment, frame[6:12])] = port
            known = None if frame[0] & 1 else macs.get((segment, frame[0:6]))
            if known is not None:
                targets = [] if known is port else [known]
            else:
                targets = [other for other in segments[segment] if other is not port]
            if targets:
                port["queue"].append((arrived + port["delay"], frame, targets))
'
# shellcheck disable=SC2016
control_py='
import socket, sys
connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
connection.settimeout(5)
connection.connect(sys.argv[1])
connection.sendall(" ".join(sys.argv[2:]).encode())
reply = connection.recv(4096).decode().strip()
print(reply)
sys.exit(0 if reply.startswith("ok") else 1)
'

# UDP echo: `server ADDRESS` answers for 10 s; `client ADDRESS` prints the median round trip in ms
# of 20 datagrams of 1200 bytes (the size of a full QUIC packet).
# shellcheck disable=SC2016
echo_py='
import socket, sys, time
where = (sys.argv[2], 7499)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if sys.argv[1] == "server":
    udp.bind(where)
    udp.settimeout(10)
    try:
        while True:
            data, sender = udp.recvfrom(2048)
            udp.sendto(data, sender)
    except socket.timeout:
        pass
else:
    udp.settimeout(1)
    times = []
    deadline = time.monotonic() + 10
    while len(times) < 20 and time.monotonic() < deadline:
        started = time.monotonic()
        udp.sendto(b"x" * 1200, where)
        try:
            udp.recvfrom(2048)
        except socket.timeout:
            continue
        times.append((time.monotonic() - started) * 1000)
        time.sleep(0.02)
    if not times:
        sys.exit("no echo from %s" % sys.argv[2])
    times.sort()
    print("%.2f" % times[len(times) // 2])
'

die() { echo "wan-mesh: $*" >&2; exit 2; }
field() { echo "$1" | cut -d' ' -f"$2"; }
region_of() { for n in "${nodes[@]}"; do [ "$(field "$n" 1)" = "$1" ] && field "$n" 2; done; }
# A node's uplink address (its first port's).
addr_of() {
  for p in "${ports[@]}"; do
    if [ "$(field "$p" 1)" = "$1" ]; then echo "$(field "$p" 3):$port"; return; fi
  done
}
uplink_port_of() {
  for p in "${ports[@]}"; do
    if [ "$(field "$p" 1)" = "$1" ]; then echo "$1:$(field "$p" 2)"; return; fi
  done
}
key_of() { sed -n 's/^public_key = "\(.*\)"/\1/p' "$root/$1/node.toml"; }
ns_of() { echo "tmw$id-$1"; }
in_ns() { local ns; ns="$(ns_of "$1")"; shift; ip netns exec "$ns" "$@"; }
control() { python3 -c "$control_py" "$root/net/switch.sock" "$@"; }

# Waits up to $2 seconds for command $3... to succeed; $1 says what for.
wait_for() {
  local what="$1" seconds="$2"
  shift 2
  local until=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$until" ] || die "$what: not within $seconds s"
    sleep 0.2
  done
}

load_root() {
  root="${1:?ROOT}"
  root="$(cd "$root" 2>/dev/null && pwd)" || die "$1: no such folder"
  [ -f "$root/net/id" ] || die "$root was not made by 'wan-mesh.sh up'"
  id="$(cat "$root/net/id")"
}

# Pids from the files given that still run a command line mentioning the file's node folder
# (not some other process that reused the pid).
live_pids() {
  local file pid marker
  for file in "$@"; do
    [ -f "$file" ] || continue
    pid="$(cat "$file")"
    marker="$(basename "$file" .pid)"
    [ "$marker" = switch ] && marker=tmw-switch || marker="$root/$marker"
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"; then
      echo "$pid"
    fi
  done
}

# Stops the processes of the pid files given: SIGTERM, then SIGKILL after 5 s.
stop_pids() {
  local pids
  pids="$(live_pids "$@")"
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 50); do
      [ -n "$(live_pids "$@")" ] || break
      sleep 0.1
    done
    pids="$(live_pids "$@")"
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  fi
  rm -f "$@"
}

down() {
  local ns pid files=()
  for n in "${nodes[@]}"; do files+=("$root/$(field "$n" 1).pid"); done
  stop_pids "${files[@]}"
  # Anything else still running inside our namespaces was started by this script.
  for n in "${nodes[@]}"; do
    ns="$(ns_of "$(field "$n" 1)")"
    if [ -e "/run/netns/$ns" ]; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    fi
  done
  stop_pids "$root/net/switch.pid"
  for n in "${nodes[@]}"; do
    ns="$(ns_of "$(field "$n" 1)")"
    if [ -e "/run/netns/$ns" ]; then ip netns del "$ns"; fi
  done
  rm -f "$root/net/switch.sock"
}

up() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
  command -v ip >/dev/null || die "needs iproute2 (ip)"
  command -v python3 >/dev/null || die "needs python3 (the WAN switch)"
  [ -c /dev/net/tun ] || die "needs /dev/net/tun"
  [ -x "$tiermesh" ] || die "no binary at $tiermesh: build it, or set TIERMESH=path"
  root="${1:?ROOT}"
  mkdir -p "$root"
  root="$(cd "$root" && pwd)"
  [ -z "$(ls -A "$root")" ] || die "$root is not empty; remove it or name another folder"
  id="${TMW_ID:-$$}"
  [[ "$id" =~ ^[0-9a-z]{1,8}$ ]] || die "TMW_ID must be 1-8 digits or lower-case letters"
  for n in "${nodes[@]}"; do
    [ ! -e "/run/netns/$(ns_of "$(field "$n" 1)")" ] || die "namespace $(ns_of "$(field "$n" 1)") exists already"
  done
  mkdir -p "$root/net" "$root/expected" "$root/data"
  echo "$id" >"$root/net/id"
  trap 'status=$?; if [ $status -ne 0 ]; then echo "wan-mesh: up failed; cleaning up" >&2; down; fi' EXIT

  # The network.
  local name ns index=0 line
  for n in "${nodes[@]}"; do
    name="$(field "$n" 1)"
    ns="$(ns_of "$name")"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    in_ns "$name" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    in_ns "$name" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  done
  : >"$root/net/ports"
  for p in "${ports[@]}"; do
    read -r name segment _ delay <<<"$p"
    # One-way delay: half the round trip.
    line="$name:$segment $(ns_of "$name") tmw${id}p$index $segment $(python3 -c "print($delay / 2)")"
    echo "$line" >>"$root/net/ports"
    index=$((index + 1))
  done
  python3 -c "$switch_py" tmw-switch "$root/net/ports" "$root/net/switch.sock" \
    </dev/null >"$root/net/switch.log" 2>&1 &
  echo $! >"$root/net/switch.pid"
  wait_for "the WAN switch" 10 control ping
  index=0
  for p in "${ports[@]}"; do
    read -r name segment address _ <<<"$p"
    ns="$(ns_of "$name")"
    ip -n "$ns" addr add "$address/24" dev "tmw${id}p$index"
    ip -n "$ns" link set "tmw${id}p$index" up
    index=$((index + 1))
  done
  for r in "${routes[@]}"; do
    read -r name destination via <<<"$r"
    ip -n "$(ns_of "$name")" route add "$destination" via "$via"
  done

  # The nodes, with the counties' data imported before they start.
  "$tiermesh" keygen --out "$root/officer.key" >/dev/null
  "$tiermesh" keygen --out "$root/staff.key" >/dev/null
  local region seed=0
  for n in "${nodes[@]}"; do
    read -r name region _ <<<"$n"
    "$tiermesh" init --dir "$root/$name" --region "$region" --name "$name" >/dev/null
    if [ "${region:6}" = 000000 ] && [ "${region:4:2}" != 00 ]; then
      seed=$((seed + 1))
      "$tiermesh" gen --region "$region" --households "$households" --seed "$seed" \
        --out "$root/data" --as-of "$as_of" >/dev/null
      "$tiermesh" import --dir "$root/$name" --quiet --as-of "$as_of" \
        "$root/data/${region:0:6}/households.csv" "$root/data/${region:0:6}/persons.csv" \
        >>"$root/import.log" 2>&1
      "$tiermesh" query --dir "$root/$name" --format json --as-of "$as_of" "$check_sql" \
        >"$root/expected/$name.json"
    fi
  done
  local national_addr national_key
  national_addr="$(addr_of national)"
  national_key="$(key_of national)"
  "$tiermesh" mesh create --dir "$root/national" --officer "$root/officer.key" --addr "$national_addr" >/dev/null

  start() {
    local name="$1" peer=()
    [ "$name" = national ] || peer=(--peer "$national_key@$national_addr")
    # `ip netns exec` execs the binary: the pid is the node's.
    in_ns "$name" env RUST_LOG="${RUST_LOG:-info}" "$tiermesh" run --dir "$root/$name" \
      --listen "$(addr_of "$name")" "${peer[@]}" </dev/null >"$root/$name.out" 2>"$root/$name.log" &
    echo $! >"$root/$name.pid"
    wait_for "$name listening" 30 grep -q "^listening on" "$root/$name.out"
  }
  start national
  : >"$root/nodes.tsv"
  for n in "${nodes[@]}"; do
    read -r name region parent <<<"$n"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$(ns_of "$name")" "$region" "$(addr_of "$name")" \
      "$(key_of "$name")" "$parent" >>"$root/nodes.tsv"
    [ "$name" = national ] && continue
    in_ns national "$tiermesh" node register --officer-key "$root/officer.key" --pubkey "$(key_of "$name")" \
      --region "$region" --addr "$(addr_of "$name")" --name "$name" --connect "$national_addr" >/dev/null
    start "$name"
  done
  for name in guizhou yunnan; do
    in_ns national "$tiermesh" mesh promote "$(key_of "$name")" --officer-key "$root/officer.key" \
      --connect "$national_addr" >/dev/null
  done
  in_ns national "$tiermesh" grant issue --officer-key "$root/officer.key" --audience "$root/staff.key" \
    --scope 000000000000 --min-cell 5 --out "$root/national.grant" --connect "$national_addr" >/dev/null
  # Every learner has caught up once a national query answers with no region missing.
  wait_for "a national answer with full coverage" 120 in_ns national "$tiermesh" query \
    --connect "$national_addr" --key "$root/staff.key" --grant "$root/national.grant" \
    --as-of "$as_of" --deadline 5s --strict "SELECT COUNT(*) FROM households"
  trap - EXIT
  in_ns national "$tiermesh" mesh status --key "$root/officer.key" --connect "$national_addr"
  echo "mesh up under $root (namespaces tmw$id-*); national at $national_addr"
  echo "query:  $0 query $root"
  echo "stop:   $0 down $root"
}

query() {
  local sql="${1:-$check_sql}"
  in_ns national "$tiermesh" query --connect "$(addr_of national)" --key "$root/staff.key" \
    --grant "$root/national.grant" --as-of "$as_of" "$sql"
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
  up) up "$@" ;;
  down) load_root "$@"; down ;;
  cut | heal)
    load_root "${1:-}"
    [ -n "$(region_of "${2:-}")" ] || die "$command: name a node (national, guizhou, ...)"
    control "$command" "$(uplink_port_of "$2")" >/dev/null
    ;;
  exec)
    load_root "${1:-}"
    [ -n "$(region_of "${2:-}")" ] || die "exec: name a node (national, guizhou, ...)"
    name="$2"
    shift 2
    if [ "${1:-}" = tiermesh ]; then shift; set -- "$tiermesh" "$@"; fi
    in_ns "$name" "$@"
    ;;
  query) load_root "${1:-}"; shift; query "$@" ;;
  rtt)
    load_root "${1:-}"
    [ -n "$(region_of "${2:-}")" ] && [ -n "$(region_of "${3:-}")" ] || die "rtt: name two nodes"
    target="$(addr_of "$3")"
    target="${target%:*}"
    in_ns "$3" python3 -c "$echo_py" server "$target" </dev/null >/dev/null 2>&1 &
    server=$!
    sleep 0.3
    in_ns "$2" python3 -c "$echo_py" client "$target"
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
