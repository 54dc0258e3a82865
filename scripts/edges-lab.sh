#!/usr/bin/env bash
# The edges lab: one policy, two edge routers, the backbone between them by iBGP through a
# route reflector. etcd (one member) holds the policy; each edge runs the appliance (on
# net_af_packet, adaptive polling: the appliances share the machine's cores), FRR beside it
# (zebra's routes into the appliance over FPM) and the policy's edge agent. Client sites
# run real routing daemons inside their tunnels; site C is hosted by both edges, and its
# router is a backbone appliance in the client-site role (a CPE).
#
#   host A ── router A (BIRD 2, GRE key 100, AS 65001) ─┐         ┌─ edge e1 ─┐
#   host B ── router B (FRR, GRE, AS 65002) ────────────┤ underlay│ backbone  │ core
#   host C ── CPE C (backbone + FRR, GRE key 300, ──────┤ (ul)    │ + FRR     ├─(rr)── route reflector
#             AS 65003): to-e2 primary, to-e1 backup    │         ├─ edge e2 ─┤        (FRR, AS 65000)
#   host D ── router D (BIRD 2, GRE key 400, AS 65004) ─┤         │ + agents  │
#   the Internet (192.0.2.80, gateway 172.16.0.254) ────┘         └───────────┘
#   placement: A at e1; B at e2; C at e2 (primary) and e1 (backup); D (ready, in no policy
#   yet) at e1: adding it to the policy is how a new client arrives ($LAB_DIR/policy-d.toml).
#
# Every edge's FRR runs what its appliance writes (`backbone frr-config`): eBGP with BFD to
# its clients inside their tunnels, and iBGP to the route reflector from its core address
# (`[bgp] ibgp_peers`, `ibgp_source`), announcing the clients it hosts with its core address
# as next hop and the local preference of the placement (primary 200, backup 100). So e1
# routes C's prefix across the core to e2 while C's session at e2 is up, and into its own
# tunnel to C when it is not. Across the core packets travel natively: the core ports have
# `transit = true`. Routers A, B and D's tunnels are TUN devices and
# scripts/tunnel-endpoint.py; the router's side of a tunnel's link is 169.254.L.0/31, the
# edge's 169.254.L.1 (L: A 1, B 2, C at e2 3, C at e1 4, D 5). Nothing in a site's
# configuration names another site.
#
# Site C's router is the same binary as the edges, as a client site's router: its LAN
# port (lan, 10.3.0.1, `[site] prefixes` 10.3.0.0/16), its WAN port (wan, 172.16.0.13, the
# `internet` role, the default route to the Internet's gateway 172.16.0.254), a GRE tunnel
# to each edge (to-e2 the primary, to-e1 with `backup = "to-e2"`), and FRR beside it with
# the configuration `backbone frr-config` writes for it (eBGP with BFD with each edge inside
# its tunnel, zebra's routes into the appliance over FPM). The Internet is one namespace on
# the underlay (inet): what the CPE sends there goes natively, through no tunnel.
# A new WAN address for the CPE is two steps (README, "A client site's router"): `backbone
# ctl wan-address` on the CPE, then `backbone-policy set-remote site-c ADDRESS`.
#
# The management namespace (mgmt) holds etcd on its loopback and the two agents, which
# reach the appliances by their control sockets.
#
# Usage: scripts/edges-lab.sh up|down|check|status
#   up      build the lab, apply the policy, start everything (leaves it running)
#   check   sessions, each router's routes, pings between every pair of hosts, the audit
#   down    stop what `up` started (by the PIDs it recorded) and delete the namespaces
#   status  namespaces and processes
#   etcd-stop, etcd-start   stop etcd, start it again on its data (a fault the test makes)
# Environment: LAB_DIR (state, logs; default out/edges-lab), LAB_PREFIX (namespace name
# prefix; default bbe), BACKBONE (the appliance; default: build the release one),
# BACKBONE_POLICY (default: backbone-policy beside BACKBONE). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
P=${LAB_PREFIX:-bbe}
D=${LAB_DIR:-$root/out/edges-lab}
case "$D" in /*) ;; *) D=$root/$D ;; esac
LAB_NAME=edges-lab
NSES=(mgmt rr ul inet e1 e2 ra rb rc rd ha hb hc hd)
FRR_NSES=(rr e1 e2 rb rc)
# shellcheck source=scripts/lab-lib.sh
. "$root/scripts/lab-lib.sh"
ETCD=http://127.0.0.1:2379

idx() { case $1 in a) echo 1 ;; b) echo 2 ;; c) echo 3 ;; d) echo 4 ;; esac; }

# The policy tools: BACKBONE_POLICY, else the one beside BACKBONE (built in release mode
# when BACKBONE was not given either and the script builds the appliance).
policy_bin() { # [build]
  if [ -z "${BACKBONE_POLICY:-}" ] && [ "${1:-}" = build ]; then
    say "building the policy tools (cargo build --release -p backbone-policy)"
    cargo build --release --locked --quiet -p backbone-policy
  fi
  BACKBONE_POLICY=${BACKBONE_POLICY:-$(dirname "$BACKBONE")/backbone-policy}
  [ -x "$BACKBONE_POLICY" ] || die "BACKBONE_POLICY=$BACKBONE_POLICY is not an executable (cargo build -p backbone-policy)"
}

down() { lab_down; }

bridge() { # NS: a bridge br0 in it, up
  ns "$1" ip link add br0 type bridge
  ns "$1" ip link set br0 up
}

# An edge's appliance: its client port on the underlay, its core port (with the host
# interface FRR's iBGP runs through), iBGP to the route reflector, FPM from its zebra.
appliance_config() { # EDGE-NUMBER
  local e=$1
  echo "# Edge e$e of the edges lab (written by scripts/edges-lab.sh); its tunnels come from the policy."
  appliance_eal "$P-e$e" ul0 core0
  appliance_port ul0 0 client "172.16.0.$e"
  appliance_port core0 1 core "10.255.0.$e" \
    "host_interface = true          # bb-core0: FRR's iBGP session with the route reflector" \
    'transit = true                 # what the other edge sends across the core is routed'
  cat <<EOF

[[route]]                      # the route reflector, across the core (the iBGP session's way)
prefix = "10.255.0.254/32"
port = "core0"
next_hop = "10.255.0.254"

[bgp]
asn = 65000
router_id = "10.255.0.$e"
frr_config = "$D/frr-e$e.conf"
frr_reload = ["/usr/lib/frr/frr-reload.py", "--reload", "--pathspace", "$P-e$e", "{file}"]
ibgp_peers = ["10.255.0.254"]
ibgp_source = "10.255.0.$e"
ibgp_bfd = true                # a stopped edge is down at the reflector in 0.3 s

[fpm]
listen = "127.0.0.1:2620"
EOF
}

# The policy: A at e1, B at e2, C at e2 and (backup) e1. With `d`, site D at e1 too.
policy() { # [d]
  cat <<EOF
# The edges lab's policy (written by scripts/edges-lab.sh).
[backbone]
asn = 65000
core_routing = "bgp"

[preferences]
make_before_announce_s = 20
withdraw_before_remove_s = 20

[[edge]]
name = "e1"
core_address = "10.255.0.1"
core_port = "core0"
tunnel_endpoint = "172.16.0.1"
client_port = "ul0"
control_socket = "$D/e1/control.sock"

[[edge]]
name = "e2"
core_address = "10.255.0.2"
core_port = "core0"
tunnel_endpoint = "172.16.0.2"
client_port = "ul0"
control_socket = "$D/e2/control.sock"

[[client]]
name = "site-a"
mode = "gre"
remote = "172.16.0.11"
key = 100
asn = 65001
prefixes = ["10.1.0.0/16"]
placement = [{ edge = "e1", role = "primary", link = "169.254.1.1/31" }]

[[client]]
name = "site-b"
mode = "gre"
remote = "172.16.0.12"
asn = 65002
prefixes = ["10.2.0.0/16"]
placement = [{ edge = "e2", role = "primary", link = "169.254.2.1/31" }]

[[client]]
name = "site-c"
mode = "gre"
remote = "172.16.0.13"
key = 300
asn = 65003
prefixes = ["10.3.0.0/16"]
placement = [
  { edge = "e2", role = "primary", link = "169.254.3.1/31" },
  { edge = "e1", role = "backup", link = "169.254.4.1/31" },
]
EOF
  if [ "${1:-}" = d ]; then
    cat <<EOF

[[client]]
name = "site-d"
mode = "gre"
remote = "172.16.0.14"
key = 400
asn = 65004
prefixes = ["10.4.0.0/16"]
placement = [{ edge = "e1", role = "primary", link = "169.254.5.1/31" }]
EOF
  fi
}

# A router's tunnel to an edge: TUN TUN-NAME, the edge's number, its key, the link number.
tunnel() { # SITE TUN EDGE KEY LINK
  local s=$1 tun=$2 e=$3 key=$4 l=$5 x; x=$(idx "$s")
  local k=() mtu=1476
  if [ -n "$key" ]; then k=("$key"); mtu=1472; fi
  ip netns exec "$P-r$s" /usr/bin/python3 -u "$root/scripts/tunnel-endpoint.py" "$tun" gre \
    "172.16.0.1$x" "172.16.0.$e" "${k[@]}" >"$D/tunnel-$s-$tun.log" 2>&1 &
  record "tunnel-$s-$tun" $! "tunnel-endpoint.py $tun"
  wait_for 30 "router $s's tunnel endpoint $tun" grep -q ready "$D/tunnel-$s-$tun.log"
  ns "r$s" ip link set "$tun" mtu "$mtu" up
  ns "r$s" ip addr add "169.254.$l.0/31" dev "$tun"
}

site() { # SITE: underlay address, LAN, host
  local s=$1 x; x=$(idx "$s")
  veth ul "r$s" "r$s" wan
  ns ul ip link set "r$s" master br0
  veth "r$s" lan "h$s" eth0
  ns "r$s" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  ns "r$s" ip addr add "172.16.0.1$x/24" dev wan
  ns "r$s" ip addr add "10.$x.0.1/24" dev lan
  ns "h$s" ip addr add "10.$x.0.10/24" dev eth0
  ns "h$s" ip route add default via "10.$x.0.1"
}

# Sites A and D: BIRD 2, one session with their edge. Announce their own 10.X.0.0/16, take
# everything the edge says into the kernel.
bird_site() { # SITE ASN LINK
  local s=$1 asn=$2 l=$3 x; x=$(idx "$s")
  cat >"$D/bird-$s.conf" <<EOF
router id 172.16.0.1$x;
log "$D/bird-$s.log" all;
protocol device { scan time 1; }
protocol static own { ipv4; route 10.$x.0.0/16 unreachable; }
protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }
protocol bfd { interface "tun0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol bgp edge {
  local 169.254.$l.0 as $asn;
  neighbor 169.254.$l.1 as 65000;
  bfd on;
  connect retry time 1;
  error wait time 1, 1;
  connect delay time 1;
  ipv4 { import all; export where proto = "own"; };
}
EOF
  start_bird "$s"
}

# Site B: FRR, one session.
frr_b() {
  { frr_head router-b; cat <<'EOF'
router bgp 65002
 bgp router-id 172.16.0.12
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 169.254.2.1 remote-as 65000
 neighbor 169.254.2.1 bfd profile fast
 neighbor 169.254.2.1 timers connect 1
 address-family ipv4 unicast
  network 10.2.0.0/16
 exit-address-family
exit
EOF
  } >"$D/frr-rb.conf"
  start_frr rb "$D/frr-rb.conf"
}

# Site C: a backbone appliance as the site's router (CPE), dual-homed: a GRE tunnel to e2
# (primary) and one to e1 (its backup), each with an eBGP session with BFD inside it (FRR
# beside the appliance, on what `backbone frr-config` writes); the LAN with the site's
# host; the WAN, where the tunnels and the Internet are.
cpe_config() {
  echo "# Site C's router, a CPE (written by scripts/edges-lab.sh)."
  appliance_eal "$P-rc" lan wan
  appliance_port lan 0 lan 10.3.0.1
  appliance_port wan 1 internet 172.16.0.13
  cat <<EOF

[bgp]                          # the site's AS; FRR beside the appliance (frr-config)
asn = 65003

[fpm]                          # zebra's routes into the tables
listen = "127.0.0.1:2620"

[site]
prefixes = ["10.3.0.0/16"]

[[tunnel]]                     # primary: to e2
name = "to-e2"
mode = "gre"
local = "172.16.0.13"
remote = "172.16.0.2"
key = 300
port = "wan"
link = "169.254.3.0/31"
asn = 65000                    # the edge, inside the tunnel
prefixes = ["10.0.0.0/8"]      # the carrier's client space

[[tunnel]]                     # backup: to e1
name = "to-e1"
mode = "gre"
local = "172.16.0.13"
remote = "172.16.0.1"
key = 300
port = "wan"
link = "169.254.4.0/31"
asn = 65000
backup = "to-e2"

[[route]]                      # the site's host
prefix = "10.3.0.0/16"
port = "lan"
next_hop = "10.3.0.10"

[[route]]                      # the Internet
prefix = "0.0.0.0/0"
port = "wan"
next_hop = "172.16.0.254"
EOF
}

cpe_site() {
  veth ul rc rc wan
  ns ul ip link set rc master br0
  veth rc lan hc eth0
  # The CPE's kernel sees the af_packet veths' frames too: it has no address on them and
  # must not answer for the appliance.
  ns rc sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1
  ns hc ip addr add 10.3.0.10/24 dev eth0
  ns hc ip route add default via 10.3.0.1
}

# The CPE, and the FRR configuration it writes (FRR starts with the other sites' daemons).
cpe_up() {
  cpe_config >"$D/backbone-c.toml"
  start_backbone backbone-c rc "$D/backbone-c.toml" "$D/c"
  "$BACKBONE" frr-config --config "$D/backbone-c.toml" --output "$D/frr-rc.conf"
  wait_for 30 "the CPE's host interfaces" ns rc ip link show dev bb-to-e1
}

# The Internet: its gateway on the underlay, and a host of it (192.0.2.80) behind it.
internet() {
  veth ul inet inet eth0
  ns ul ip link set inet master br0
  ns inet ip addr add 172.16.0.254/24 dev eth0
  ns inet ip addr add 192.0.2.80/32 dev lo
  ns inet ip route add 10.3.0.0/16 via 172.16.0.13
}

# The route reflector: every edge of the core network is its client, under BFD (the edges'
# `ibgp_bfd`): a stopped edge's routes are withdrawn in 0.3 s, not at the hold timer.
frr_rr() {
  { frr_head route-reflector; cat <<'EOF'
!
router bgp 65000
 bgp router-id 10.255.0.254
 bgp cluster-id 10.255.0.254
 neighbor edges peer-group
 neighbor edges remote-as internal
 neighbor edges timers connect 1
 neighbor edges advertisement-interval 0
 neighbor edges bfd profile fast
 bgp listen range 10.255.0.0/24 peer-group edges
 address-family ipv4 unicast
  neighbor edges route-reflector-client
 exit-address-family
exit
EOF
  } >"$D/frr-rr.conf"
  start_frr rr "$D/frr-rr.conf"
}

etcd_up() {
  mkdir -p "$D/etcd"
  ip netns exec "$P-mgmt" etcd --name=edges-lab --data-dir="$D/etcd/data" \
    --listen-client-urls=$ETCD --advertise-client-urls=$ETCD \
    --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=edges-lab=http://127.0.0.1:2380 >"$D/etcd/etcd.log" 2>&1 &
  record etcd $! "etcd --name=edges-lab"
  wait_for 30 "etcd" ns mgmt etcdctl --endpoints=$ETCD endpoint health
}

agent() { # EDGE
  ip netns exec "$P-mgmt" env RUST_LOG="${RUST_LOG:-info}" "$BACKBONE_POLICY" agent --edge "$1" --etcd $ETCD \
    >"$D/agent-$1.log" 2>&1 &
  record "agent-$1" $! "agent --edge $1"
}

up() {
  lab_preflight
  need etcd etcd-server; need etcdctl etcd-client
  local given=${BACKBONE:-}
  backbone_bin
  if [ -z "$given" ]; then policy_bin build; else policy_bin; fi
  lab_fresh e1 e2 c
  local n e s
  bridge ul
  bridge rr
  # The reflector peers from its address as from a loopback (a /32 and a route to the
  # core), as the edges do from theirs: iBGP's BFD is then multihop on both sides.
  ns rr ip addr add 10.255.0.254/32 dev br0
  ns rr ip route add 10.255.0.0/24 dev br0 src 10.255.0.254
  for e in 1 2; do
    veth "e$e" ul0 ul "e$e"
    ns ul ip link set "e$e" master br0
    veth "e$e" core0 rr "e$e"
    ns rr ip link set "e$e" master br0
    # The edge's kernel sees the af_packet veths' frames too (see interop-lab.sh): strict
    # reverse-path filtering keeps it from answering what is the appliance's.
    ns "e$e" sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1
  done
  for s in a b d; do site "$s"; done
  cpe_site
  internet
  tunnel a tun0 1 100 1
  tunnel b tun0 2 "" 2
  tunnel d tun0 1 400 5

  etcd_up
  policy >"$D/policy.toml"
  policy d >"$D/policy-d.toml"
  ns mgmt "$BACKBONE_POLICY" apply "$D/policy.toml" --etcd $ETCD >"$D/apply-1.log" 2>&1 \
    || { cat "$D/apply-1.log" >&2; die "the policy was refused"; }

  frr_rr
  for e in 1 2; do
    appliance_config "$e" >"$D/backbone-e$e.toml"
    "$BACKBONE" frr-config --config "$D/backbone-e$e.toml" --output "$D/frr-e$e.conf"
    start_backbone "backbone-e$e" "e$e" "$D/backbone-e$e.toml" "$D/e$e"
    wait_for 30 "e$e's core host interface" ns "e$e" ip link show dev bb-core0
    # The core network, through the core port's host interface (it holds our core
    # address as a /32): the route reflector and the other edges' next hops.
    ns "e$e" ip route add 10.255.0.0/24 dev bb-core0 src "10.255.0.$e"
    agent "e$e"
  done
  # FRR starts once the agents made the tunnels (zebra reads the interfaces whole at its
  # start; one made while it starts may reach it without its address), on what the
  # appliance wrote for them; later changes reach it by frr-reload.
  wait_for 30 "e1's tunnels" ns e1 ip addr show dev bb-site-c
  wait_for 30 "e2's tunnels" ns e2 ip addr show dev bb-site-c
  for e in 1 2; do
    wait_for 30 "e$e's FRR configuration with its tunnels" grep -q "tunnel site-c" "$D/frr-e$e.conf"
    start_frr "e$e" "$D/frr-e$e.conf" -M dplane_fpm_nl
  done
  cpe_up
  # The appliance's own reload of FRR (tried when the agent made the tunnels, before FRR
  # ran, then every 5 s until it succeeds) can reset the sessions that are up by then
  # ("No AFI/SAFI activated for peer"): the sites' routers start once it is done, so that
  # none of their sessions is reset after the lab is up.
  for e in 1 2; do
    wait_for 30 "e$e's reload of its FRR" grep -q "and reloaded" "$D/backbone-e$e.log"
  done
  bird_site a 65001 1
  bird_site d 65004 5
  frr_b
  start_frr rc "$D/frr-rc.conf" -M dplane_fpm_nl
  touch "$D/up"
  say "up: hosts 10.1.0.10 (A, e1), 10.2.0.10 (B, e2), 10.3.0.10 (C, a CPE on e2 + e1), 10.4.0.10 (D, in no policy yet), the Internet's 192.0.2.80"
}

ctl() { local e=$1; shift; ns "e$e" "$BACKBONE" ctl --socket="$D/e$e/control.sock" "$@"; }

check() {
  [ -f "$D/up" ] || die "the lab is not up (scripts/edges-lab.sh up)"
  say "the route reflector's sessions"
  ns rr vtysh -N "$P-rr" -c "show bgp summary" | grep -E "^(Neighbor|\*?10\.)" || true
  local e s
  for e in 1 2; do
    say "edge e$e: sessions, tunnels"
    ns "e$e" vtysh -N "$P-e$e" -c "show bgp summary" | grep -E "^(Neighbor|10|169)" || true
    ctl "$e" tunnels || true
  done
  say "the CPE of site C: tunnels"
  ns rc "$BACKBONE" ctl --socket="$D/c/control.sock" tunnels || true
  say "routes at each site"
  for s in a b c; do printf '  router %s:\n' "$s"; ns "r$s" ip route | sed 's/^/    /'; done
  say "pings between every pair of hosts"
  local fails=0
  ping_pairs a b c
  say "audit paths"
  ns mgmt "$BACKBONE_POLICY" audit paths --etcd $ETCD || fails=$((fails + 1))
  [ "$fails" -eq 0 ] || die "$fails of the checks failed"
}

case "${1:-}" in
  up) trap lab_on_exit_up EXIT; up ;;
  down) down; say "down" ;;
  check) BACKBONE=${BACKBONE:-$RELEASE_BIN}; policy_bin; check ;;
  status) lab_status ;;
  # etcd down (SIGTERM, as an operator's stop) and up again on the same data: the agents
  # keep the appliances on what they last applied and resume from their revision.
  etcd-stop) stop_one etcd TERM 10; ! alive "$D/pids/etcd.pid" || die "etcd did not stop" ;;
  etcd-start) etcd_up ;;
  *) sed -n '2,50p' "$0"; exit 2 ;;
esac
