#!/usr/bin/env bash
# The client-site lab: backbone as a client site's router (CPE), with two tunnels to the
# carrier's edges (a primary and a backup) and the Internet beside them.
#
#   host S ── lan0 [CPE: backbone] wan0 ── Internet ── carrier ── host A (another site)
#   10.5.0.10       10.5.0.1   203.0.113.5   (inet)      edge 1: GRE key 5, 198.51.100.1
#   10.5.1.10                                192.0.2.80  edge 2: IP in IP,  198.51.100.2
#                                            (a host of the Internet)
#
# The CPE routes the carrier's 10.1.0.0/16 into tunnel edge1 (probed), or into edge2 (its
# backup, probed) while edge1 is down, or natively through the Internet while both are;
# everything else goes natively out of wan0. Only sources of the site's 10.5.0.0/16 may
# leave its LAN. The site's host sits directly on the LAN's connected subnet 10.5.0.0/16
# (a route with a port and no next hop): the CPE resolves each address by ARP on demand,
# with no route per host. The carrier's side of each tunnel is a TUN device and
# scripts/tunnel-endpoint.py (the kernel here has no gre or ipip module), both in one
# namespace; SIGSTOP of an endpoint freezes that edge's tunnel side. The carrier routes
# 10.5.0.0/24 back into edge 1's tunnel, and 10.5.1.0/24 natively through the Internet (so
# that replies to 10.5.1.10 show where the CPE sends the requests, whatever the tunnels'
# state). The CPE probes in the form of a GRE keepalive (inner packet from the edge's
# address to ours), which the carrier's kernel routes back natively (accept_local on the
# tunnel devices, as the packet comes from one of its own addresses).
#
# With LAB_BGP=1 the tunnels are found down by BGP instead of probes: FRR on the CPE (the
# configuration `backbone frr-config` writes, zebra handing its routes to the appliance over
# FPM) holds an eBGP session with BFD with each edge inside its tunnel (the CPE's side of
# each link 169.254.5.0 and 169.254.6.0, the carrier's .1), announces 10.5.0.0/16 and
# learns 10.1.0.0/16 from both; FRR on the carrier announces 10.1.0.0/16 on both sessions.
#
# Usage: scripts/cpe-lab.sh up|down|status|wan ADDRESS
#   wan ADDRESS   the CPE's WAN address changed (after `backbone ctl wan-address`): the
#                 carrier's tunnel endpoints and the Internet's route follow it
# Environment: LAB_DIR (state, logs; default out/cpe-lab), LAB_PREFIX (namespace name
# prefix; default bbc), BACKBONE (the binary; default: build the release one), LAB_BGP.
# Needs root (and FRR with LAB_BGP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
P=${LAB_PREFIX:-bbc}
D=${LAB_DIR:-$root/out/cpe-lab}
case "$D" in /*) ;; *) D=$root/$D ;; esac
NSES=(cpe hs inet carrier ha)
BGP=${LAB_BGP:-0}
WAN=203.0.113.5                  # the CPE's WAN address (`wan` gives it another)

LAB_NAME=cpe-lab
FRR_NSES=(cpe carrier)
# shellcheck source=scripts/lab-lib.sh
. "$root/scripts/lab-lib.sh"

down() { lab_down; }

preflight() {
  lab_preflight_base
  if [ "$BGP" = 1 ]; then need_frr; fi
}

# The carrier's FRR: eBGP with BFD with the CPE inside each tunnel, 10.1.0.0/16 announced.
carrier_frr() {
  { frr_head carrier; cat <<'EOF'
router bgp 65000
 bgp router-id 198.51.100.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 169.254.5.0 remote-as 65005
 neighbor 169.254.5.0 bfd profile fast
 neighbor 169.254.5.0 timers connect 1
 neighbor 169.254.6.0 remote-as 65005
 neighbor 169.254.6.0 bfd profile fast
 neighbor 169.254.6.0 timers connect 1
 address-family ipv4 unicast
  network 10.1.0.0/16
 exit-address-family
exit
EOF
  } >"$D/frr-carrier.conf"
  start_frr carrier "$D/frr-carrier.conf"
}

# The carrier's side of both tunnels, toward the CPE's WAN address $WAN.
carrier_tunnels() {
  endpoint edge1 tun1 gre 198.51.100.1 5
  endpoint edge2 tun2 ipip 198.51.100.2
  ns carrier ip route add 10.5.0.0/24 dev tun1
  if [ "$BGP" = 1 ]; then
    ns carrier ip addr add 169.254.5.1/31 dev tun1
    ns carrier ip addr add 169.254.6.1/31 dev tun2
    ns carrier ip link set tun1 mtu 1472
    ns carrier ip link set tun2 mtu 1480
  fi
}

# The CPE's WAN address changed (given it with `backbone ctl wan-address`): the carrier's
# endpoints and the Internet's route to the site follow.
new_wan() { # ADDRESS
  [ -f "$D/up" ] || die "the lab is not up (scripts/cpe-lab.sh up)"
  WAN=$1
  stop_one edge1 TERM 3
  stop_one edge2 TERM 3
  carrier_tunnels
  ns inet ip route replace 10.5.0.0/16 via "$WAN"
  say "the carrier's tunnels and the Internet's route now go to $WAN"
}

endpoint() { # NAME TUN MODE LOCAL [KEY]
  local name=$1 tun=$2 mode=$3 local=$4; shift 4
  ip netns exec "$P-carrier" /usr/bin/python3 -u "$root/scripts/tunnel-endpoint.py" "$tun" "$mode" \
    "$local" "$WAN" "$@" >>"$D/$name.log" 2>&1 &
  record "$name" $! "tunnel-endpoint.py $tun"
  wait_for 30 "the carrier's $name endpoint" grep -q "$WAN key .* ready" "$D/$name.log"
  ns carrier ip link set "$tun" up
  ns carrier sysctl -qw "net.ipv4.conf.$tun.accept_local=1" "net.ipv4.conf.$tun.rp_filter=0"
}

health_of() { # X: how tunnel 169.254.X.0/31 is found down
  if [ "$BGP" = 1 ]; then
    printf 'link = "169.254.%s.0/31"\nasn = 65000                      # the edge, inside the tunnel' "$1"
  else
    printf 'probe = true'
  fi
}

appliance_config() {
  echo "# The client-site lab's CPE (written by scripts/cpe-lab.sh)."
  appliance_eal "$P-backbone" lan0 wan0
  appliance_port lan0 0 lan 10.5.0.1
  appliance_port wan0 1 internet 203.0.113.5
  cat <<EOF

$(if [ "$BGP" = 1 ]; then cat <<'BGP'
[bgp]                            # the site's AS; FRR beside the appliance (frr-config)
asn = 65005

[fpm]                            # zebra's routes into the tables
listen = "127.0.0.1:2620"
BGP
else cat <<'PROBES'
[health]
probe_interval_ms = 200          # 3 missed: down in 0.6 s, inside the second asked for
PROBES
fi)

[site]
prefixes = ["10.5.0.0/16"]

[[tunnel]]                       # primary: GRE with a key to edge 1
name = "edge1"
mode = "gre"
local = "203.0.113.5"
remote = "198.51.100.1"
key = 5
port = "wan0"
next_hop = "203.0.113.254"
$(health_of 5)
prefixes = ["10.1.0.0/16"]

[[tunnel]]                       # backup: IP in IP to edge 2
name = "edge2"
mode = "ipip"
local = "203.0.113.5"
remote = "198.51.100.2"
port = "wan0"
next_hop = "203.0.113.254"
$(health_of 6)
backup = "edge1"

[[route]]                        # the LAN: a connected subnet, each host its own next
prefix = "10.5.0.0/16"           # hop, resolved by ARP on demand (asked from 10.5.0.1)
port = "lan0"

[[route]]                        # the Internet
prefix = "0.0.0.0/0"
port = "wan0"
next_hop = "203.0.113.254"
EOF
}

up() {
  preflight
  backbone_bin
  lab_fresh
  # The CPE's kernel sees the af_packet veths' frames too: it has no address on them and
  # must not answer for the appliance.
  ns cpe sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1
  veth cpe lan0 hs eth0
  veth cpe wan0 inet to-cpe
  veth inet to-carrier carrier to-inet
  veth carrier to-ha ha eth0

  ns hs ip addr add 10.5.0.10/24 dev eth0
  ns hs ip addr add 10.5.1.10/24 dev eth0
  ns hs ip route add default via 10.5.0.1

  ns inet sysctl -qw net.ipv4.ip_forward=1
  ns inet ip addr add 203.0.113.254/24 dev to-cpe
  ns inet ip addr add 198.51.100.254/24 dev to-carrier
  ns inet ip addr add 192.0.2.80/32 dev lo
  ns inet ip route add 10.5.0.0/16 via 203.0.113.5
  ns inet ip route add 10.1.0.0/16 via 198.51.100.1

  ns carrier sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.all.accept_local=1
  ns carrier ip addr add 198.51.100.1/24 dev to-inet
  ns carrier ip addr add 198.51.100.2/24 dev to-inet
  ns carrier ip addr add 10.1.0.1/24 dev to-ha
  ns carrier ip route add default via 198.51.100.254
  carrier_tunnels
  # Replies to 10.5.1.0/24 go natively, whatever BGP says of 10.5.0.0/16.
  ns carrier ip route add 10.5.1.0/24 via 198.51.100.254

  ns ha ip addr add 10.1.0.10/24 dev eth0
  ns ha ip route add default via 10.1.0.1

  appliance_config >"$D/cpe.toml"
  start_backbone backbone cpe "$D/cpe.toml" "$D/ctl"
  if [ "$BGP" = 1 ]; then
    "$BACKBONE" frr-config --config "$D/cpe.toml" --output "$D/frr-cpe.conf"
    wait_for 30 "the CPE's host interfaces" ns cpe ip link show dev bb-edge2
    start_frr cpe "$D/frr-cpe.conf" -M dplane_fpm_nl
    carrier_frr
  fi
  touch "$D/up"
  say "up: site host 10.5.0.10 and 10.5.1.10, site A's host 10.1.0.10, Internet host 192.0.2.80"
}

case "${1:-}" in
  up) trap lab_on_exit_up EXIT; up ;;
  down) down; say "down" ;;
  status) lab_status ;;
  wan) [ -n "${2:-}" ] || die "usage: scripts/cpe-lab.sh wan ADDRESS"; new_wan "$2" ;;
  *) sed -n '2,34p' "$0"; exit 2 ;;
esac
