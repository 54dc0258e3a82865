#!/usr/bin/env bash
# The routing lab: one edge router (backbone on net_af_packet, FRR beside it with the
# configuration `backbone frr-config` writes) and three client sites whose routers run real
# routing daemons inside their tunnels, an Internet between everyone for the native
# fallback, and a host behind each site.
#
#   host A ── router A (BIRD 2, GRE key 100, AS 65001) ──┐
#   host B ── router B (FRR, GRE, AS 65002) ──────────────┼── edge: backbone + FRR (AS 65000)
#   host C ── router C (Linux, IP-in-IP, no BGP) ─────────┤          │ inet0
#   host D ── router D (BIRD 2, GRE key 400, AS 65004) ───┘          │
#        └──────────── each router's ISP link ─────────── Internet ──┘
#
# Site D's router is ready from the start but the edge has no tunnel for it: adding one at
# run time (`backbone ctl tunnel-add $LAB_DIR/site-d.toml`) is how a new client arrives.
#
# Each router's tunnel is a TUN device and scripts/tunnel-endpoint.py (the kernel here has no
# gre or ipip module); the router's side of the tunnel's link is 169.254.X.0/31, the edge's
# 169.254.X.1 (bb-site-X in the edge namespace). Sites A and B speak eBGP with BFD to the
# edge inside their tunnels, announce their own 10.X.0.0/16 and learn the others'; site C
# routes 10.0.0.0/8 into its tunnel and is probed by the edge. The edge's zebra hands the
# routes it selects to the appliance over FPM ([fpm] in its configuration): `backbone ctl
# routes` shows them beside the tunnels' own. Nothing in a site's configuration names
# another site. Each router's default route goes to the Internet
# namespace, which routes 10.X.0.0/16 to site X's ISP link: the best-effort path.
#
# The sites are dual-stack inside the tunnels: site X is also fd00:X::/48 (its LAN
# fd00:X::/64, router ::1, host ::10), and each tunnel has an IPv6 link, fd00:ff:X::/127
# (the edge's link6 ::1 on bb-site-X, the router's ::0 on tun0). The BGP sessions (over
# IPv4) carry IPv6 unicast too, with those addresses as next hops; site C routes fd00::/16
# into its tunnel. IPv6 has no Internet path here (no native IPv6 forwarding).
#
# Usage: scripts/routing-lab.sh up|down|check|status
#   up      build the lab and start everything (leaves it running)
#   check   sessions, routes (IPv4, IPv6) at every site, pings (IPv4, IPv6) between every pair of hosts
#   down    stop what `up` started (by the PIDs it recorded) and delete the namespaces
#   status  namespaces, processes, sessions and the appliance's tunnels
# Environment: LAB_DIR (state, logs; default out/routing-lab), LAB_PREFIX (namespace name
# prefix; default bbr), BACKBONE (the binary; default: build the release one). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
P=${LAB_PREFIX:-bbr}
D=${LAB_DIR:-$root/out/routing-lab}
case "$D" in /*) ;; *) D=$root/$D ;; esac
SITES=(a b c)
NSES=(edge inet ra rb rc rd ha hb hc hd)

LAB_NAME=routing-lab
FRR_NSES=(edge rb)
# shellcheck source=scripts/lab-lib.sh
. "$root/scripts/lab-lib.sh"
idx() { case $1 in a) echo 1 ;; b) echo 2 ;; c) echo 3 ;; d) echo 4 ;; esac; }

down() { lab_down; }

preflight() { lab_preflight; }

v6on() { # NS IFACE: IPv6 on one interface (the lab's namespaces have it off), without
  # router solicitations or duplicate address detection
  ns "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=0" "net.ipv6.conf.$2.accept_ra=0" \
    "net.ipv6.conf.$2.accept_dad=0"
}

site_router() { # SITE: the namespace's kernel routes; the tunnel is a TUN + tunnel-endpoint.py
  local s=$1 x; x=$(idx "$s")
  ns "r$s" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  ns "r$s" ip addr add "172.16.$x.2/24" dev wan
  ns "r$s" ip addr add "100.64.$x.2/24" dev isp
  ns "r$s" ip addr add "10.$x.0.1/24" dev lan
  ns "r$s" ip route add default via "100.64.$x.1"
  v6on "r$s" lan
  ns "r$s" ip addr add "fd00:$x::1/64" dev lan
  # The kernel forwards IPv6 (all.forwarding), but the tunnel interface, created after this,
  # takes default.forwarding=0: it joins no all-routers group, so no MLD report goes into
  # the tunnel (the edge would drop it).
  ns "r$s" sysctl -qw net.ipv6.conf.all.forwarding=1
  ns "r$s" sysctl -qw net.ipv6.conf.default.forwarding=0
  # The tunnel's inner MTU: the underlay's 1500 less the outer IPv4 and GRE headers.
  local mode=gre key=() mtu=1476
  case $s in a) key=(100) mtu=1472 ;; d) key=(400) mtu=1472 ;; c) mode=ipip mtu=1480 ;; esac
  ip netns exec "$P-r$s" /usr/bin/python3 -u "$root/scripts/tunnel-endpoint.py" tun0 "$mode" \
    "172.16.$x.2" "172.16.$x.1" "${key[@]}" >"$D/tunnel-$s.log" 2>&1 &
  record "tunnel-$s" $! "tunnel-endpoint.py tun0"
  wait_for 30 "router $s's tunnel endpoint" grep -q ready "$D/tunnel-$s.log"
  v6on "r$s" tun0
  # No link-local address on the tunnel: nothing but what it is given.
  ns "r$s" sysctl -qw net.ipv6.conf.tun0.addr_gen_mode=1
  ns "r$s" ip link set tun0 mtu "$mtu" up
  ns "r$s" ip addr add "169.254.$x.0/31" dev tun0
  ns "r$s" ip addr add "fd00:ff:$x::/127" dev tun0
}

host() {
  local s=$1 x; x=$(idx "$s")
  ns "h$s" ip addr add "10.$x.0.10/24" dev eth0
  ns "h$s" ip route add default via "10.$x.0.1"
  v6on "h$s" eth0
  ns "h$s" ip addr add "fd00:$x::10/64" dev eth0
  ns "h$s" ip -6 route add default via "fd00:$x::1"
}

# Sites A and D: BIRD 2. Announce their own 10.X.0.0/16 and fd00:X::/48, take everything
# the edge says into the kernel. The IPv6 channel of the IPv4 session names its next hop
# (the router's side of the tunnel's IPv6 link): BIRD has no IPv6 session address to use.
bird_site() { # SITE ASN
  local s=$1 asn=$2 x; x=$(idx "$s")
  cat >"$D/bird-$s.conf" <<EOF
router id 172.16.$x.2;
log "$D/bird-$s.log" all;
protocol device { scan time 1; }
# Its own network, announced (not installed: the LAN is connected).
protocol static own { ipv4; route 10.$x.0.0/16 unreachable; }
protocol static own6 { ipv6; route fd00:$x::/48 unreachable; }
protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }
protocol kernel { ipv6 { import none; export where source = RTS_BGP; }; }
protocol bfd { interface "tun0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol bgp edge {
  local 169.254.$x.0 as $asn;
  neighbor 169.254.$x.1 as 65000;
  bfd on;
  connect retry time 2;
  error wait time 1, 1;
  connect delay time 1;
  ipv4 { import all; export where proto = "own"; };
  ipv6 { import all; export where proto = "own6"; next hop address fd00:ff:$x::; };
}
EOF
  start_bird "$s"
}

# Site B: FRR. Announces 10.2.0.0/16 and fd00:2::/48, takes everything the edge says into
# the kernel. FRR takes the IPv6 next hop of the IPv4 session from tun0's IPv6 address.
frr_b() {
  { frr_head router-b; cat <<'EOF'
router bgp 65002
 bgp router-id 172.16.2.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 169.254.2.1 remote-as 65000
 neighbor 169.254.2.1 bfd profile fast
 neighbor 169.254.2.1 timers connect 2
 address-family ipv4 unicast
  network 10.2.0.0/16
 exit-address-family
 address-family ipv6 unicast
  network fd00:2::/48
  neighbor 169.254.2.1 activate
 exit-address-family
exit
EOF
  } >"$D/frr-b.conf"
  start_frr rb "$D/frr-b.conf"
}

appliance_config() {
  echo "# The routing lab's edge (written by scripts/routing-lab.sh)."
  appliance_eal "$P-backbone" to-a to-b to-c to-d inet0
  local r x
  for r in a b c d; do
    x=$(idx "$r")
    appliance_port "to-$r" $((x - 1)) client "172.16.$x.1"
  done
  appliance_port inet0 4 internet 100.64.0.2
  cat <<EOF

[bgp]
asn = 65000
router_id = "100.64.0.2"
frr_config = "$D/frr-edge.conf"
frr_reload = ["/usr/lib/frr/frr-reload.py", "--reload", "--pathspace", "$P-edge", "{file}"]

[fpm]                            # the routes the edge's zebra selects (frr-config tells it here)
listen = "127.0.0.1:2620"

[[tunnel]]                       # router A: BIRD, GRE with a key
name = "site-a"
mode = "gre"
local = "172.16.1.1"
remote = "172.16.1.2"
key = 100
port = "to-a"
prefixes = ["10.1.0.0/16", "fd00:1::/48"]
link = "169.254.1.1/31"
link6 = "fd00:ff:1::1/127"
asn = 65001

[[tunnel]]                       # router B: FRR, GRE
name = "site-b"
mode = "gre"
local = "172.16.2.1"
remote = "172.16.2.2"
port = "to-b"
prefixes = ["10.2.0.0/16", "fd00:2::/48"]
link = "169.254.2.1/31"
link6 = "fd00:ff:2::1/127"
asn = 65002

[[tunnel]]                       # router C: IP-in-IP, no BGP: probed
name = "site-c"
mode = "ipip"
local = "172.16.3.1"
remote = "172.16.3.2"
port = "to-c"
prefixes = ["10.3.0.0/16", "fd00:3::/48"]
link6 = "fd00:ff:3::1/127"       # the source of its ICMPv6 errors (no host interface: no link)
probe = true

[[route]]                        # the Internet
prefix = "0.0.0.0/0"
port = "inet0"
next_hop = "100.64.0.1"
EOF
}

up() {
  preflight
  backbone_bin
  lab_fresh
  # The edge's kernel sees the af_packet veths' frames too (see interop-lab.sh): strict
  # reverse-path filtering keeps it from answering what is the appliance's.
  ns edge sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1
  local s x
  for s in "${SITES[@]}" d; do
    x=$(idx "$s")
    veth edge "to-$s" "r$s" wan
    veth inet "isp-$s" "r$s" isp
    veth "r$s" lan "h$s" eth0
    ns inet ip addr add "100.64.$x.1/24" dev "isp-$s"
    ns inet ip route add "10.$x.0.0/16" via "100.64.$x.2"
    host "$s"
  done
  veth edge inet0 inet wan-edge
  ns inet ip addr add 100.64.0.1/24 dev wan-edge
  ns inet sysctl -qw net.ipv4.ip_forward=1
  for s in "${SITES[@]}" d; do site_router "$s"; done
  ns rc ip route add 10.0.0.0/8 dev tun0
  ns rc ip -6 route add fd00::/16 dev tun0

  appliance_config >"$D/backbone.toml"
  cat >"$D/site-d.toml" <<'EOF'
[[tunnel]]                       # router D: BIRD, GRE with a key: a new client
name = "site-d"
mode = "gre"
local = "172.16.4.1"
remote = "172.16.4.2"
key = 400
port = "to-d"
prefixes = ["10.4.0.0/16", "fd00:4::/48"]
link = "169.254.4.1/31"
link6 = "fd00:ff:4::1/127"
asn = 65004
EOF
  "$BACKBONE" frr-config --config "$D/backbone.toml" --output "$D/frr-edge.conf"
  start_backbone backbone edge "$D/backbone.toml" "$D/ctl"
  wait_for 30 "the edge's host interfaces" ns edge ip link show dev bb-site-b
  # The edge's FRR: zebra hands its routes to the appliance over FPM.
  start_frr edge "$D/frr-edge.conf" -M dplane_fpm_nl
  bird_site a 65001
  bird_site d 65004
  frr_b
  touch "$D/up"
  say "up: hosts 10.1.0.10 (A), 10.2.0.10 (B), 10.3.0.10 (C); fd00:1::10, fd00:2::10, fd00:3::10"
}

birdc_a() { ns ra birdc -s "$D/bird-a.ctl" "$@"; }
vtysh_in() { local n=$1; shift; ns "$n" vtysh -N "$P-$n" "$@"; }

check() {
  [ -f "$D/up" ] || die "the lab is not up (scripts/routing-lab.sh up)"
  say "sessions"
  birdc_a show protocols edge | tail -n +2
  vtysh_in rb -c "show bgp summary" | grep -E "^(Neighbor|169)" || true
  vtysh_in edge -c "show bgp summary" | grep -E "^(Neighbor|169)" || true
  vtysh_in edge -c "show bfd peers brief" || true
  say "routes at each site"
  for s in a b c; do
    printf '  router %s:\n' "$s"
    ns "r$s" ip route | sed 's/^/    /'
    ns "r$s" ip -6 route show root fd00::/16 | sed 's/^/    /'
  done
  say "pings between every pair of hosts"
  local fails=0
  ping_pairs "${SITES[@]}"
  say "ping6 between every pair of hosts"
  local a b out
  for a in "${SITES[@]}"; do
    for b in "${SITES[@]}"; do
      [ "$a" != "$b" ] || continue
      out=$(ns "h$a" ping -n -c 3 -i 0.2 -W 2 "fd00:$(idx "$b")::10" 2>&1) || fails=$((fails + 1))
      printf '  host %s -> host %s: %s\n' "${a^^}" "${b^^}" "$(grep -o '[0-9]* received' <<<"$out" || echo 'no replies')"
    done
  done
  ns edge "${BACKBONE:-$RELEASE_BIN}" ctl --socket="$D/ctl/control.sock" tunnels || true
  [ "$fails" -eq 0 ] || die "$fails of the pings between hosts failed"
}

case "${1:-}" in
  up) trap lab_on_exit_up EXIT; up ;;
  down) down; say "down" ;;
  check) BACKBONE=${BACKBONE:-$RELEASE_BIN}; check ;;
  status) BACKBONE=${BACKBONE:-$RELEASE_BIN}; lab_status ;;
  *) sed -n '2,38p' "$0"; exit 2 ;;
esac
