#!/usr/bin/env bash
# The interop lab: backbone between client routers that we did not write, in network
# namespaces on one machine.
#
#   host A ── router A (Open vSwitch, GRE key 100) ──┐
#   host B ── router B (Open vSwitch, GRE, no key) ──┼── backbone (net_af_packet on 3 veths)
#   host C ── router C (Linux + IP-in-IP over TUN) ──┘
#
# The sites are dual-stack: each tunnel carries IPv4 and IPv6 (GRE protocol type 0x86DD;
# IPv6-in-IPv4, protocol 41, for router C). The underlay is IPv4 only.
#
# Routers A and B are Open vSwitch with the userspace datapath (datapath_type=netdev, no
# kernel module), a private database and run directory each. Router A also has a second GRE
# port (key 101) with csum=true and seq=true: Open vSwitch 3.1 computes that checksum before
# it writes the sequence number, so backbone must drop those packets as bad_gre_checksum
# (host A sends through it from its second address, 10.11.0.10). Router C is the namespace's
# kernel with scripts/tunnel-endpoint.py: the kernel here has no ipip or sit module and Open
# vSwitch has no IPIP port.
#
# Usage: scripts/interop-lab.sh up|down|check|test|status
#   up      build the lab and start everything (leaves it running)
#   check   pings (IPv4, IPv6) between hosts, a traceroute and a TCP transfer, on a running lab
#   down    stop what `up` started (by the PIDs it recorded) and delete the namespaces
#   test    up, check, down (down also when a step fails)
#   status  namespaces, processes and the appliance's live counters
# Environment: LAB_DIR (state, logs, captures; default out/interop-lab), LAB_PREFIX
# (namespace name prefix; default bbl), BACKBONE (the binary; default: build the release
# one), TRANSFER_MB (check's TCP transfer size, default 16), LAB_POLL (the workers' [workers]
# poll: adaptive, the default, or busy). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
P=${LAB_PREFIX:-bbl}
D=${LAB_DIR:-$root/out/interop-lab}
case "$D" in /*) ;; *) D=$root/$D ;; esac
NS_BB=$P-bb
ROUTERS=(a b c)
SCHEMA=/usr/share/openvswitch/vswitch.ovsschema

LAB_NAME=interop-lab
# shellcheck source=scripts/lab-lib.sh
. "$root/scripts/lab-lib.sh"
# This lab names its namespaces in full ("$P-bb", "$NS_BB"): its ns, mkns and veth (below)
# take full names and replace the library's.
ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

# The addressing plan: underlay link X (1 = A, 2 = B, 3 = C) is 172.16.X.0/24, backbone .1,
# router .2; site X is 10.X.0.0/24 behind its router, router .1, host .10; in IPv6, site X is
# fd00:X::/48 (the appliance's prefix for it), its LAN fd00:X::/64, router ::1, host ::10,
# and tunnel X's link fd00:ff:X::/127: the appliance's link6 ::1, the router's ::0.
idx() { case $1 in a) echo 1 ;; b) echo 2 ;; c) echo 3 ;; esac; }

# MTUs: the hosts' links carry 1500 bytes, the underlay links more, and the appliance's
# tunnels are configured for outer packets of TUNNEL_MTU. A host's full-size packet reaches
# the appliance inside its router's tunnel, and the appliance answers it with Fragmentation
# Needed carrying the egress tunnel's inner MTU (1472 into site-a, GRE with a key; 1476 into
# site-b, plain GRE; 1480 into site-c, IPIP): path MTU discovery through the tunnels.
# DPDK 22.11's net_af_packet takes at most MTU 1500 and sets its interface's MTU when it
# starts: the appliance's ports send at most 1500 bytes (their default mtu), and once it
# runs the veths on its side get UNDERLAY_MTU back, to receive the routers' larger packets.
UNDERLAY_MTU=1600
TUNNEL_MTU=1500

# Processes (record, alive, stop_one: scripts/lab-lib.sh). Background processes start as
# `ip netns exec ... &` (never through a shell function): ip execs the command, so $! is the
# process itself.

# ---------------------------------------------------------------------------------------
# down

down() {
  # The appliance first: on SIGTERM it prints its counters and writes stats.json.
  stop_one backbone TERM 10
  for r in "${ROUTERS[@]}"; do stop_one "ipip-$r" TERM 3; done
  # tcpdump reads its kernel ring a block at a time; a block is handed over when full or
  # after 1 s. Wait that long, or SIGINT ends the capture without the last frames. (Immediate
  # mode would not wait, but its fixed frame slots overflow the buffer under load.)
  if compgen -G "$D/pids/tcpdump-*.pid" >/dev/null; then sleep 1.5; fi
  for f in "$D"/pids/tcpdump-*.pid; do
    if [ -e "$f" ]; then stop_one "$(basename "$f" .pid)" INT 5; fi
  done
  for r in "${ROUTERS[@]}"; do
    stop_one "ovs-vswitchd-$r" TERM 5
    stop_one "ovsdb-server-$r" TERM 5
  done
  for f in "$D"/pids/*.pid; do
    if [ -e "$f" ]; then stop_one "$(basename "$f" .pid)" TERM 3; fi
  done
  for n in bb ra rb rc ha hb hc; do
    if ip netns list | grep -qw "^$P-$n"; then
      local left
      left=$(ip netns pids "$P-$n" 2>/dev/null | tr '\n' ' ')
      [ -z "$left" ] || say "namespace $P-$n still holds processes we did not start: $left (left alone)"
      ip netns del "$P-$n" 2>/dev/null || say "cannot delete namespace $P-$n"
    fi
  done
  rm -f "$D/up"
}

# ---------------------------------------------------------------------------------------
# up

preflight() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, veths, TUN, Open vSwitch); run it with sudo"
  need ip iproute2; need ovs-vswitchd openvswitch-switch; need ovsdb-server openvswitch-switch
  need tcpdump tcpdump; need socat socat; need ethtool ethtool; need ping iputils-ping
  need traceroute traceroute
  [ -f "$SCHEMA" ] || die "$SCHEMA missing: run scripts/setup.sh (openvswitch-switch)"
  [ -c /dev/net/tun ] || die "/dev/net/tun missing: router C and Open vSwitch's internal ports need TUN"
  ip netns add "$P-probe" 2>/dev/null || die "cannot create network namespaces here (ip netns add failed)"
  ip netns del "$P-probe"
  for n in bb ra rb rc ha hb hc; do
    ! ip netns list | grep -qw "^$P-$n" || die "namespace $P-$n exists: a lab is up already (scripts/interop-lab.sh down)"
  done
}

mkns() { # NAME
  ip netns add "$1"
  ns "$1" ip link set lo up
  # IPv6 is off but where a host or router C turns it on (v6on): no IPv6 router
  # solicitations or neighbour discovery on the underlay links or in the captures.
  ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

v6on() { # NS IFACE: IPv6 on one interface, without router solicitations or duplicate
  # address detection (the lab's addresses are its own: nothing to wait for)
  ns "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=0" "net.ipv6.conf.$2.accept_ra=0" \
    "net.ipv6.conf.$2.accept_dad=0"
}

veth() { # NS1 IF1 NS2 IF2 [MTU]: a veth pair, transmit checksum offload off on both ends
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
  local mtu=${5:-1500} end n i
  for end in "$1/$2" "$3/$4"; do
    n=${end%%/*} i=${end#*/}
    ns "$n" ip link set "$i" mtu "$mtu"
    ns "$n" ethtool -K "$i" tx off >/dev/null
    ns "$n" ip link set "$i" up
  done
}

ovs() { # ROUTER COMMAND...: run an OVS tool in the router's namespace, on its private instance
  local r=$1 d=$D/ovs-$1; shift
  ns "$P-r$r" env "OVS_RUNDIR=$d" "OVS_DBDIR=$d" "OVS_LOGDIR=$d" "$@"
}
vsctl() { local r=$1; shift; ovs "$r" ovs-vsctl --db="unix:$D/ovs-$r/db.sock" --timeout=10 "$@"; }

start_ovs() { # ROUTER
  local r=$1 d=$D/ovs-$1
  mkdir -p "$d"
  ovsdb-tool create "$d/conf.db" "$SCHEMA"
  ovs "$r" ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" --unixctl="$d/ovsdb-server.ctl" \
    --pidfile="$d/ovsdb-server.pid" --detach --no-chdir --log-file="$d/ovsdb-server.log" -vconsole:off 2>>"$d/console.log" \
    || die "ovsdb-server for router $r did not start: see $d/console.log and $d/ovsdb-server.log"
  record "ovsdb-server-$r" "$(cat "$d/ovsdb-server.pid")" "ovsdb-server $d/conf.db"
  vsctl "$r" --no-wait init
  ovs "$r" ovs-vswitchd "unix:$d/db.sock" --unixctl="$d/ovs-vswitchd.ctl" \
    --pidfile="$d/ovs-vswitchd.pid" --detach --no-chdir --log-file="$d/ovs-vswitchd.log" -vconsole:off 2>>"$d/console.log" \
    || die "ovs-vswitchd for router $r did not start: see $d/console.log and $d/ovs-vswitchd.log"
  record "ovs-vswitchd-$r" "$(cat "$d/ovs-vswitchd.pid")" "ovs-vswitchd unix:$d/db.sock"
}

# Router R (a or b): Open vSwitch, userspace datapath. br-phy is the underlay bridge: the
# veth toward the backbone is its port and the router's underlay address sits on br-phy's
# internal port, so Open vSwitch's native tunnelling routes and ARPs through it. br-int holds
# the LAN port and the GRE port(s); OpenFlow rules make it a router: answer ARP for the
# gateway address, decrement the TTL (IPv6: the hop limit), rewrite the MACs toward the
# host. Its GRE ports carry IPv6 with protocol type 0x86DD (packet_type=legacy_l3 takes the
# Ethernet type for it). The flows answer no neighbour solicitations: the host has a static
# neighbour entry for its IPv6 gateway, and the router sends to the host's MAC.
ovs_router() { # ROUTER GRE-OPTIONS... (for gre0)
  local r=$1; shift
  local x; x=$(idx "$r")
  local rmac=02:0$x:00:00:00:01 hmac=02:0$x:00:00:00:10 pmac=02:0$x:00:00:01:02
  start_ovs "$r"
  vsctl "$r" add-br br-phy -- set bridge br-phy datapath_type=netdev other-config:hwaddr="$pmac" \
    -- add-port br-phy wan
  ns "$P-r$r" ip addr add "172.16.$x.2/24" dev br-phy
  ns "$P-r$r" ip link set br-phy up
  vsctl "$r" add-br br-int -- set bridge br-int datapath_type=netdev fail-mode=secure \
    -- add-port br-int lan -- set interface lan ofport_request=1 \
    -- add-port br-int gre0 -- set interface gre0 type=gre ofport_request=2 \
    options:remote_ip="172.16.$x.1" options:packet_type=legacy_l3 "$@"
  local flows="priority=100,arp,in_port=1,arp_op=1,arp_tpa=10.$x.0.1,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],mod_dl_src:$rmac,load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:$rmac->arp_sha,set_field:10.$x.0.1->arp_spa,in_port
priority=40,ip,in_port=1,nw_dst=10.0.0.0/8,actions=dec_ttl,output:2
priority=40,ip,in_port=2,nw_dst=10.$x.0.0/24,actions=dec_ttl,mod_dl_src:$rmac,mod_dl_dst:$hmac,output:1
priority=40,ipv6,in_port=1,ipv6_dst=fd00::/16,actions=dec_ttl,output:2
priority=40,ipv6,in_port=2,ipv6_dst=fd00:$x::/64,actions=dec_ttl,mod_dl_src:$rmac,mod_dl_dst:$hmac,output:1"
  if [ "$r" = a ]; then
    # The second tunnel: checksum and sequence numbers, for host A's second address.
    vsctl "$r" add-port br-int gre1 -- set interface gre1 type=gre ofport_request=3 \
      options:remote_ip=172.16.1.1 options:packet_type=legacy_l3 options:key=101 \
      options:csum=true options:seq=true
    flows+="
priority=50,ip,in_port=1,nw_src=10.11.0.0/16,nw_dst=10.0.0.0/8,actions=dec_ttl,output:3
priority=40,ip,in_port=3,nw_dst=10.11.0.0/16,actions=dec_ttl,mod_dl_src:$rmac,mod_dl_dst:$hmac,output:1"
  fi
  printf '%s\n' "$flows" >"$D/ovs-$r/flows.txt"
  ovs "$r" ovs-ofctl del-flows br-int
  ovs "$r" ovs-ofctl add-flows br-int "$D/ovs-$r/flows.txt"
}

# Router C: the namespace's kernel routes; the IP-in-IP tunnel is a TUN device bridged to
# raw sockets of protocols 4 (IPv4) and 41 (IPv6) by scripts/tunnel-endpoint.py. Its kernel
# forwards IPv6 between the LAN and the tunnel; the underlay (wan) stays IPv4 only, and the
# tunnel gets no link-local address: nothing but the sites' traffic goes into it.
ipip_router() {
  ns "$P-rc" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  ns "$P-rc" ip addr add 172.16.3.2/24 dev wan
  ns "$P-rc" ip addr add 10.3.0.1/24 dev lan
  v6on "$P-rc" lan
  ns "$P-rc" ip addr add fd00:3::1/64 dev lan
  # The kernel forwards IPv6 (all.forwarding), but the tunnel interface, created after this,
  # takes default.forwarding=0: it joins no all-routers group, so no MLD report (from ::,
  # without a link-local address) goes into the tunnel, where the appliance would drop it.
  ns "$P-rc" sysctl -qw net.ipv6.conf.all.forwarding=1
  ns "$P-rc" sysctl -qw net.ipv6.conf.default.forwarding=0
  ip netns exec "$P-rc" /usr/bin/python3 -u "$root/scripts/tunnel-endpoint.py" ipip0 ipip 172.16.3.2 172.16.3.1 \
    >"$D/ipip-c.log" 2>&1 &
  record ipip-c $! "tunnel-endpoint.py ipip0"
  wait_for 30 "router C's IP-in-IP bridge" grep -q ready "$D/ipip-c.log"
  v6on "$P-rc" ipip0
  ns "$P-rc" sysctl -qw net.ipv6.conf.ipip0.addr_gen_mode=1
  ns "$P-rc" ip link set ipip0 mtu $((UNDERLAY_MTU - 20)) txqueuelen 10000 up
  ns "$P-rc" ip route add 10.0.0.0/8 dev ipip0
  ns "$P-rc" ip addr add fd00:ff:3::/127 dev ipip0
  ns "$P-rc" ip -6 route add fd00::/16 dev ipip0
  # Router C's side of the tunnel's link: its kernel talks to the appliance's kernel
  # (bb-site-c, 169.254.3.1) through the tunnel.
  ns "$P-rc" ip addr add 169.254.3.0/31 dev ipip0
}

host() { # ROUTER: the host behind it
  local r=$1; local x; x=$(idx "$r")
  ns "$P-h$r" ip link set eth0 address "02:0$x:00:00:00:10"
  ns "$P-h$r" ip addr add "10.$x.0.10/24" dev eth0
  [ "$r" != a ] || ns "$P-h$r" ip addr add 10.11.0.10/32 dev eth0
  ns "$P-h$r" ip route add default via "10.$x.0.1"
  v6on "$P-h$r" eth0
  ns "$P-h$r" ip addr add "fd00:$x::10/64" dev eth0
  # Open vSwitch's flows answer ARP but not neighbour solicitations: routers A and B are
  # static neighbours of their hosts (router C's kernel answers for itself).
  [ "$r" = c ] || ns "$P-h$r" ip -6 neigh add "fd00:$x::1" lladdr "02:0$x:00:00:00:01" dev eth0 nud permanent
  ns "$P-h$r" ip -6 route add default via "fd00:$x::1"
}

appliance_config() {
  cat <<EOF
# The interop lab's appliance (written by scripts/interop-lab.sh): one client port per
# client router, each a veth in the backbone namespace driven by DPDK's net_af_packet.
# No "mac": the port uses the veth's own MAC. No static neighbours: ARP finds the routers.

EOF
  local r x extra
  appliance_eal "$P-backbone" "${ROUTERS[@]/#/to-}"
  echo "poll = \"${LAB_POLL:-adaptive}\""
  for r in "${ROUTERS[@]}"; do
    x=$(idx "$r")
    # Port C's host interface: TCP to 172.16.3.1 from router C reaches this namespace's
    # kernel (the exception path).
    extra=()
    [ "$r" != c ] || extra=("host_interface = true")
    appliance_port "to-$r" $((x - 1)) client "172.16.$x.1" "${extra[@]}"
  done
  cat <<EOF

[[tunnel]]                       # router A: Open vSwitch GRE with a key
name = "site-a"
mode = "gre"
local = "172.16.1.1"
remote = "172.16.1.2"
key = 100
port = "to-a"
mtu = $TUNNEL_MTU
prefixes = ["10.1.0.0/16", "fd00:1::/48"]
link6 = "fd00:ff:1::1/127"       # the source of its ICMPv6 errors (Packet Too Big)

[[tunnel]]                       # router A's csum+seq port: Open vSwitch 3.1's checksums are wrong
name = "site-a-csum"
mode = "gre"
local = "172.16.1.1"
remote = "172.16.1.2"
key = 101
sequence = true
checksum = true
port = "to-a"
mtu = $TUNNEL_MTU
prefixes = ["10.11.0.0/16"]

[[tunnel]]                       # router B: Open vSwitch GRE without a key
name = "site-b"
mode = "gre"
local = "172.16.2.1"
remote = "172.16.2.2"
port = "to-b"
mtu = $TUNNEL_MTU
prefixes = ["10.2.0.0/16", "fd00:2::/48"]
link6 = "fd00:ff:2::1/127"

[[tunnel]]                       # router C: IP-in-IP
name = "site-c"
mode = "ipip"
local = "172.16.3.1"
remote = "172.16.3.2"
port = "to-c"
mtu = $TUNNEL_MTU
prefixes = ["10.3.0.0/16", "fd00:3::/48"]
link = "169.254.3.1/31"
link6 = "fd00:ff:3::1/127"          # bb-site-c in the appliance's namespace; router C is .0
probe = true                     # no BGP: the appliance probes the tunnel itself
EOF
}

start_capture() { # IFACE
  ip netns exec "$NS_BB" tcpdump -i "$1" -n -s 0 -B 32768 -U -Z root -w "$D/capture-$1.pcap" \
    >"$D/tcpdump-$1.log" 2>&1 &
  record "tcpdump-$1" $! "tcpdump -i $1"
  wait_for 30 "tcpdump on $1" grep -q "listening on" "$D/tcpdump-$1.log"
}

up() {
  preflight
  backbone_bin
  rm -rf "$D"; mkdir -p "$D/pids"
  say "namespaces $P-{bb,ra,rb,rc,ha,hb,hc}, state in $D"
  for n in bb ra rb rc ha hb hc; do mkns "$P-$n"; done
  # net_af_packet reads the veths without taking them from the kernel (as a NIC bound to
  # DPDK would be): the namespace's kernel sees every frame too. Once a host interface gives
  # it one of the appliance's addresses (bb-to-c has 172.16.3.1) it would answer what
  # arrives on the veth as well. Strict reverse-path filtering makes it drop those: their
  # sources route through the host interfaces, not the veths.
  ns "$NS_BB" sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1
  for r in "${ROUTERS[@]}"; do
    local x; x=$(idx "$r")
    veth "$NS_BB" "to-$r" "$P-r$r" wan "$UNDERLAY_MTU"
    ns "$NS_BB" ip link set "to-$r" address "02:bb:00:00:00:0$x"
    ns "$P-r$r" ip link set wan address "02:0$x:00:00:01:01"
    # On routers A and B, wan belongs to Open vSwitch: the namespace's kernel must not
    # answer ARP on it for br-phy's address (weak host model) with wan's MAC.
    [ "$r" = c ] || ns "$P-r$r" ip link set wan arp off
    veth "$P-r$r" lan "$P-h$r" eth0
    host "$r"
  done
  ovs_router a options:key=100
  ovs_router b
  ipip_router

  for r in "${ROUTERS[@]}"; do start_capture "to-$r"; done
  appliance_config >"$D/backbone.toml"
  ip netns exec "$NS_BB" env RUST_LOG="${RUST_LOG:-info}" "$BACKBONE" run --config "$D/backbone.toml" \
    --stats "$D/stats.json" --control-socket "$D/ctl/control.sock" >"$D/backbone.log" 2>&1 &
  record backbone $! "run --config $D/backbone.toml"
  local i
  for ((i = 0; i < 600; i++)); do
    grep -q "forwarding" "$D/backbone.log" && break
    alive "$D/pids/backbone.pid" || { cat "$D/backbone.log" >&2; die "the appliance exited"; }
    sleep 0.1
  done
  grep -q "forwarding" "$D/backbone.log" || die "the appliance did not start forwarding in 60 s: see $D/backbone.log"
  for r in "${ROUTERS[@]}"; do ns "$NS_BB" ip link set "to-$r" mtu "$UNDERLAY_MTU"; done
  # Port to-c's host interface: the appliance's kernel reaches router C's underlay address
  # through it (the appliance resolves the MAC).
  wait_for 30 "the host interface bb-to-c" ns "$NS_BB" ip link show dev bb-to-c
  ns "$NS_BB" ip route add 172.16.3.2/32 dev bb-to-c

  # Underlay neighbours: each router's kernel pings the appliance once (backbone answers
  # ARP and learns the router's MAC, and answers the echo). Then one ping from every
  # host to every other primes Open vSwitch's tunnel neighbour tables and backbone's.
  for r in "${ROUTERS[@]}"; do
    local x; x=$(idx "$r")
    ns "$P-r$r" ping -c 1 -W 1 "172.16.$x.1" >/dev/null 2>&1 || true
  done
  local a b
  for a in "${ROUTERS[@]}"; do
    for b in "${ROUTERS[@]}"; do
      [ "$a" != "$b" ] || continue
      wait_for 30 "a first ping from host $a to host $b" \
        ns "$P-h$a" ping -c 1 -W 1 "10.$(idx "$b").0.10"
    done
  done
  touch "$D/up"
  say "up: hosts 10.1.0.10 (A), 10.2.0.10 (B), 10.3.0.10 (C); e.g. ip netns exec $P-ha ping 10.2.0.10"
}

# ---------------------------------------------------------------------------------------
# check, status

check() {
  [ -f "$D/up" ] || die "the lab is not up (scripts/interop-lab.sh up)"
  local a b out fails=0
  say "ping between every pair of hosts (expect ttl=61: router, backbone, router)"
  for a in "${ROUTERS[@]}"; do
    for b in "${ROUTERS[@]}"; do
      [ "$a" != "$b" ] || continue
      out=$(ns "$P-h$a" ping -n -c 3 -i 0.2 -W 2 "10.$(idx "$b").0.10" 2>&1) || fails=$((fails + 1))
      printf '  host %s -> host %s: %s, %s, %s\n' "${a^^}" "${b^^}" \
        "$(grep -o '[0-9]* received' <<<"$out" || echo 'no replies')" \
        "$(grep -o 'ttl=[0-9]*' <<<"$out" | sort -u | tr '\n' ' ' | sed 's/ $//')" \
        "$(grep -o 'rtt .*' <<<"$out" || true)"
    done
  done
  say "ping6 between every pair of hosts (IPv6 inside the tunnels: GRE 0x86DD, protocol 41)"
  for a in "${ROUTERS[@]}"; do
    for b in "${ROUTERS[@]}"; do
      [ "$a" != "$b" ] || continue
      out=$(ns "$P-h$a" ping -n -c 3 -i 0.2 -W 2 "fd00:$(idx "$b")::10" 2>&1) || fails=$((fails + 1))
      printf '  host %s -> host %s: %s, %s\n' "${a^^}" "${b^^}" \
        "$(grep -o '[0-9]* received' <<<"$out" || echo 'no replies')" \
        "$(grep -o 'ttl=[0-9]*' <<<"$out" | sort -u | tr '\n' ' ' | sed 's/ $//')"
    done
  done
  say "traceroute from host A to host B (the appliance's hop: site-a's endpoint; Open vSwitch's hops are silent)"
  ns "$P-ha" traceroute -n -q 1 -w 1 -m 6 10.2.0.10 | sed 's/^/  /' || fails=$((fails + 1))
  local mb=${TRANSFER_MB:-16}
  say "TCP: ${mb} MiB from host B to host A (socat; MTU 1500: path MTU discovery through the tunnels), compared by sha256"
  head -c "$((mb << 20))" /dev/urandom >"$D/transfer-src.bin"
  rm -f "$D/transfer-dst.bin"
  ip netns exec "$P-ha" socat -u TCP-LISTEN:5001,reuseaddr OPEN:"$D/transfer-dst.bin",creat,trunc &
  local rx=$!
  record socat-receiver "$rx" "socat -u TCP-LISTEN:5001"
  wait_for 30 "socat listening in host A" sh -c "ip netns exec $P-ha ss -Hltn | grep -q ':5001 '"
  local t0 t1
  t0=$(date +%s.%N)
  ns "$P-hb" timeout 120 socat -u OPEN:"$D/transfer-src.bin" TCP:10.1.0.10:5001
  wait "$rx"
  rm -f "$D/pids/socat-receiver.pid"
  t1=$(date +%s.%N)
  local s d
  s=$(sha256sum <"$D/transfer-src.bin" | cut -d' ' -f1)
  d=$(sha256sum <"$D/transfer-dst.bin" | cut -d' ' -f1)
  awk -v n="$(stat -c %s "$D/transfer-dst.bin")" -v t0="$t0" -v t1="$t1" -v h="$d" \
    -v same="$([ "$s" = "$d" ] && echo identical || echo "DIFFERENT from the source's $s")" \
    'BEGIN { printf "  %d bytes in %.2f s (%.1f Mbit/s), sha256 %s (%s)\n", n, t1 - t0, n * 8 / (t1 - t0) / 1e6, h, same }'
  [ "$s" = "$d" ] || die "the transfer arrived altered"
  say "host A from 10.11.0.10, through router A's csum+seq GRE port (Open vSwitch 3.1's bad checksums):"
  out=$(ns "$P-ha" ping -n -c 5 -i 0.2 -W 1 -I 10.11.0.10 10.2.0.10 2>&1 || true)
  printf '  %s (the others are dropped as bad_gre_checksum)\n' "$(grep -o '[0-9]* packets transmitted, [0-9]* received' <<<"$out")"
  status_counters
  [ "$fails" -eq 0 ] || die "$fails of the pings between hosts failed"
}

status_counters() {
  local sock=$D/ctl/control.sock
  [ -S "$sock" ] || return 0
  say "the appliance's counters (backbone ctl counters)"
  ns "$NS_BB" "${BACKBONE:-$RELEASE_BIN}" ctl --socket="$sock" counters || true
}

status() {
  lab_status
  if [ -f "$D/up" ]; then status_counters; fi
}

cmd=${1:-}

case "$cmd" in
  up) trap lab_on_exit_up EXIT; up ;;
  down) down; say "down" ;;
  check) BACKBONE=${BACKBONE:-$RELEASE_BIN}; check ;;
  status) BACKBONE=${BACKBONE:-$RELEASE_BIN}; status ;;
  test)
    preflight
    trap 'down' EXIT
    up
    check
    trap - EXIT
    down
    say "stats: $D/stats.json; captures: $D/capture-to-{a,b,c}.pcap"
    sed -n '/^port /,$p' "$D/backbone.log"
    ;;
  *) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
