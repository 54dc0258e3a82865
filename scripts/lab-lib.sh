# What the labs share (scripts/routing-lab.sh, edges-lab.sh, cpe-lab.sh, interop-lab.sh):
# namespaces, veths, the processes they start (recorded, and stopped only while they still
# run what was recorded), FRR instances, waits with a deadline, pings between hosts, status.
# Sourced, not run. The lab sets before sourcing: LAB_NAME (its messages' prefix), P
# (namespace name prefix), D (state directory), and for lab_down and lab_preflight_base
# NSES (its namespaces) and FRR_NSES (the namespaces that run FRR).
FRR=/usr/lib/frr
RELEASE_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/backbone

say() { printf '%s: %s\n' "$LAB_NAME" "$*"; }
die() { printf '%s: %s\n' "$LAB_NAME" "$*" >&2; exit 1; }
ns() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }

# Processes: every PID we start is recorded in $D/pids/NAME.pid with the command it must be
# running; down kills only those, and only while they still run that command.
record() { mkdir -p "$D/pids"; printf '%s\n%s\n' "$2" "$3" >"$D/pids/$1.pid"; }
alive() {
  local pid cmd running
  pid=$(sed -n 1p "$1"); cmd=$(sed -n 2p "$1")
  [ -n "$pid" ] || return 1
  running=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ "$running" == *"$cmd"* ]]
}
stop_one() { # NAME SIGNAL WAIT-SECONDS
  local f=$D/pids/$1.pid pid i
  [ -f "$f" ] || return 0
  pid=$(sed -n 1p "$f")
  if alive "$f"; then
    kill -CONT "$pid" 2>/dev/null || true
    kill "-$2" "$pid" 2>/dev/null || true
    for ((i = 0; i < $3 * 10; i++)); do alive "$f" || break; sleep 0.1; done
    if alive "$f"; then
      say "$1 (pid $pid) did not stop on SIG$2: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      # SIGKILL is not refused, but the process is gone only once the kernel has reaped it.
      for ((i = 0; i < 20; i++)); do alive "$f" || break; sleep 0.1; done
    fi
  fi
  rm -f "$f"
}
wait_for() { # SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2 i; shift 2
  for ((i = 0; i < secs * 10; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "timed out after ${secs}s waiting for $what"
}

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: run scripts/setup.sh (it installs $2)"; }

mkns() {
  ip netns add "$P-$1"
  ns "$1" ip link set lo up
  ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

veth() { # NS1 IF1 NS2 IF2
  ip link add "$2" netns "$P-$1" type veth peer name "$4" netns "$P-$3"
  ns "$1" ethtool -K "$2" tx off >/dev/null 2>&1 || true
  ns "$3" ethtool -K "$4" tx off >/dev/null 2>&1 || true
  ns "$1" ip link set "$2" up
  ns "$3" ip link set "$4" up
}

# FRR in namespace NS as instance $P-NS (its own sockets under /var/run/frr/$P-NS),
# configured from FILE through vtysh. Extra zebra arguments after FILE.
start_frr() { # NS FILE [ZEBRA-ARGS...]
  local n=$1 file=$2 inst=$P-$1; shift 2
  mkdir -p "/var/run/frr/$inst" "/etc/frr/$inst" "$D/frr-$n"
  touch "/etc/frr/$inst/vtysh.conf"
  chown -R frr:frr "/var/run/frr/$inst" "/etc/frr/$inst" "$D/frr-$n"
  local d
  for d in zebra bgpd bfdd; do
    local extra=()
    [ "$d" != zebra ] || extra=("$@")
    ns "$n" "$FRR/$d" -N "$inst" -d -f /dev/null -i "$D/frr-$n/$d.pid" \
      --log "file:$D/frr-$n/$d.log" "${extra[@]}" \
      || die "FRR $d in $n did not start: see $D/frr-$n/$d.log"
    wait_for 10 "FRR $d in $n" test -s "$D/frr-$n/$d.pid"
    record "frr-$n-$d" "$(cat "$D/frr-$n/$d.pid")" "$FRR/$d -N $inst"
  done
  wait_for 10 "FRR's vty in $n" ns "$n" vtysh -N "$inst" -c "show version"
  ns "$n" vtysh -N "$inst" -f "$file" >"$D/frr-$n/vtysh.log" 2>&1 \
    || die "FRR in $n refused its configuration: see $D/frr-$n/vtysh.log"
}

# A new state directory $D (with DIRS under it besides pids) and the lab's namespaces.
lab_fresh() { # [DIRS...]
  rm -rf "$D"; mkdir -p "$D/pids"
  local d n
  for d in "$@"; do mkdir -p "$D/$d"; done
  say "namespaces $P-{${NSES[*]}}, state in $D"
  for n in "${NSES[@]}"; do mkns "$n"; done
}

# Stop everything recorded (the appliances first: they remove their host interfaces),
# delete the namespaces and FRR's instance directories.
lab_down() {
  local f
  for f in "$D"/pids/backbone*.pid; do
    if [ -e "$f" ]; then stop_one "$(basename "$f" .pid)" TERM 10; fi
  done
  for f in "$D"/pids/*.pid; do
    if [ -e "$f" ]; then stop_one "$(basename "$f" .pid)" TERM 3; fi
  done
  local n
  for n in "${NSES[@]}"; do
    if ip netns list | grep -qw "^$P-$n"; then
      ip netns del "$P-$n" 2>/dev/null || say "cannot delete namespace $P-$n"
    fi
  done
  for n in "${FRR_NSES[@]}"; do rm -rf "/var/run/frr/$P-$n" "/etc/frr/$P-$n"; done
  rm -f "$D/up"
}

# Root, ip, ping, /dev/net/tun, and no lab of this prefix up already.
lab_preflight_base() {
  [ "$(id -u)" -eq 0 ] || die "needs root (namespaces, veths, TUN, routing daemons)"
  need ip iproute2; need ping iputils-ping
  [ -c /dev/net/tun ] || die "/dev/net/tun missing: the routers' tunnels are TUN devices"
  local n
  for n in "${NSES[@]}"; do
    ! ip netns list | grep -qw "^$P-$n" || die "namespace $P-$n exists: a lab is up already ($0 down)"
  done
}

need_frr() {
  need vtysh frr
  [ -x $FRR/zebra ] && [ -x $FRR/bgpd ] && [ -x $FRR/bfdd ] || die "FRR's daemons missing in $FRR (package frr)"
}

# The base, BIRD, FRR and socat.
lab_preflight() {
  lab_preflight_base
  need bird bird2; need birdc bird2; need socat socat
  need_frr
}

backbone_bin() {
  if [ -n "${BACKBONE:-}" ]; then
    [ -x "$BACKBONE" ] || die "BACKBONE=$BACKBONE is not an executable"
  else
    say "building the appliance (cargo build --release -p dataplane --bin backbone)"
    cargo build --release --locked --quiet -p dataplane --bin backbone
    BACKBONE=$RELEASE_BIN
  fi
}

# The head of an FRR configuration: HOSTNAME and the BFD profile "fast" (100 ms x 3) the
# labs' sessions use.
frr_head() { # HOSTNAME
  cat <<EOF
frr defaults traditional
hostname $1
bfd
 profile fast
  detect-multiplier 3
  receive-interval 100
  transmit-interval 100
 exit
exit
EOF
}

# Start BIRD in router SITE's namespace (r<SITE>) on $D/bird-<SITE>.conf, and record it.
start_bird() { # SITE
  local s=$1
  ns "r$s" bird -c "$D/bird-$s.conf" -s "$D/bird-$s.ctl" -P "$D/bird-$s.pid" \
    || die "BIRD in router $s did not start"
  wait_for 10 "BIRD's pid file" test -s "$D/bird-$s.pid"
  record "bird-$s" "$(cat "$D/bird-$s.pid")" "bird -c $D/bird-$s.conf"
}

# Start the appliance NAME in namespace NS on FILE (its control socket CTL-DIR/control.sock,
# its log $D/NAME.log) and wait until it forwards.
start_backbone() { # NAME NS FILE CTL-DIR
  local name=$1 n=$2 file=$3 ctl=$4 i
  ip netns exec "$P-$n" env RUST_LOG="${RUST_LOG:-info}" "$BACKBONE" run --config "$file" \
    --stats "$D/$name-stats.json" --control-socket "$ctl/control.sock" >"$D/$name.log" 2>&1 &
  record "$name" $! "run --config $file"
  for ((i = 0; i < 600; i++)); do
    grep -q "forwarding" "$D/$name.log" && break
    alive "$D/pids/$name.pid" || { cat "$D/$name.log" >&2; die "appliance $name exited"; }
    sleep 0.1
  done
  grep -q "forwarding" "$D/$name.log" || die "appliance $name did not start forwarding: see $D/$name.log"
}

# An appliance's [eal] and [workers] blocks: one net_af_packet port per interface IFACE,
# numbered in order (net_af_packet0 first); one worker, on lcore 1. qpairs=2: a second TX
# queue lets the control thread send ARP requests, and both RX queues (the fanout group)
# are polled. qdisc_bypass=0: tcpdump on the veth sees what backbone sends.
appliance_eal() { # FILE-PREFIX IFACE...
  local prefix=$1 i=0 dev
  shift
  printf '[eal]\nargs = [\n'
  printf '  "--no-huge", "--no-pci", "--no-shconf", "-m", "256", "-l", "0-1",\n'
  printf '  "--file-prefix=%s", "--log-level=lib.eal:error",\n' "$prefix"
  for dev in "$@"; do
    printf '  "--vdev=net_af_packet%d,iface=%s,qpairs=2,qdisc_bypass=0",\n' "$i" "$dev"
    i=$((i + 1))
  done
  printf ']\n\n[workers]\nlcores = [1]\n'
}

# An appliance's [[port]] NAME on its INDEX-th net_af_packet device (appliance_eal's
# order), with the role ROLE and the address ADDRESS; each LINE (host_interface, transit)
# is written into the block as it is.
appliance_port() { # NAME INDEX ROLE ADDRESS [LINE...]
  printf '\n[[port]]\nname = "%s"\ndevice = "net_af_packet%d"\nroles = ["%s"]\n' "$1" "$2" "$3"
  printf 'addresses = ["%s"]\n' "$4"
  shift 4
  [ $# -eq 0 ] || printf '%s\n' "$@"
  printf 'rx_queues = 2\n'
}

# Pings between every pair of hosts h<S> of SITES (10.<idx S>.0.10), each pair's count
# printed; adds the failures to the caller's `fails`.
ping_pairs() { # SITES...
  local a b out
  for a in "$@"; do
    for b in "$@"; do
      [ "$a" != "$b" ] || continue
      out=$(ns "h$a" ping -n -c 3 -i 0.2 -W 2 "10.$(idx "$b").0.10" 2>&1) || fails=$((fails + 1))
      printf '  host %s -> host %s: %s\n' "${a^^}" "${b^^}" "$(grep -o '[0-9]* received' <<<"$out" || echo 'no replies')"
    done
  done
}

# The lab's namespaces and recorded processes.
lab_status() {
  ip netns list | grep "^$P-" || say "no namespaces with prefix $P-"
  local f
  for f in "$D"/pids/*.pid; do
    [ -e "$f" ] || continue
    printf '  %-22s pid %-8s %s\n' "$(basename "$f" .pid)" "$(sed -n 1p "$f")" \
      "$(alive "$f" && echo running || echo gone)"
  done
}

# The EXIT trap of `up`: a lab that failed half-built is torn down (the lab's `down`).
lab_on_exit_up() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ ! -f "$D/up" ]; then say "up failed: tearing down"; down; fi
  return "$rc"
}
