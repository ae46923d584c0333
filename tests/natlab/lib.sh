# shellcheck shell=bash
# tests/natlab/lib.sh - build NAT-lab topologies out of network namespaces.
#
# Source this file, then:
#
#   natlab_init || { echo "SKIP: needs root and network namespaces"; exit 77; }
#   trap natlab_cleanup EXIT INT TERM
#   natlab_add_internet                                   # 203.0.113.1/24
#   natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
#   natlab_add_host   alice ra 10.0.1.10
#   natlab_exec alice ping -c1 203.0.113.1
#   natlab_add_public_host pub 203.0.113.50               # no NAT at all
#
# Every namespace is named "$NATLAB_PREFIX-<name>" (prefix unique per run, so
# parallel tests never collide). All links live inside those namespaces: no
# interface, route or rule is ever created in the caller's namespace, so
# deleting the namespaces removes the whole lab. See docs/NATLAB.md.
#
# The functions return non-zero on error and never call exit, so they are safe
# to use from a script running under `set -euo pipefail`.

# Address of the bridge in the internet namespace (the rendezvous lives there).
NATLAB_INET_IP=203.0.113.1
NATLAB_INET_PLEN=24

NATLAB_PREFIX=${NATLAB_PREFIX:-}
NATLAB_NAMESPACES=()
declare -gA NATLAB_LAN_IP=()    # router name -> router's LAN address
declare -gA NATLAB_LAN_PLEN=()  # router name -> LAN prefix length
declare -gA NATLAB_WAN_IP=()    # router name -> router's public (WAN) address
declare -gA NATLAB_TYPE=()      # router name -> NAT type
declare -gA NATLAB_HOST_IP=()   # host name -> LAN address
declare -gA NATLAB_HOST_ROUTER=() # host name -> router name ("" = public host)
declare -gA NATLAB_PUBLIC=()    # public host name -> "open" or "firewall"
declare -gA NATLAB_DELAY_PID=() # node -> pid of its natlab-nfq-delay (natlab_set_delay)
NATLAB_TMP=""                   # scratch dir of this lab (delay-line logs), made on demand
# Queue number natlab_set_delay uses. NFQUEUE queues are per network
# namespace, so every node can use the same number.
NATLAB_NFQ_QUEUE=${NATLAB_NFQ_QUEUE:-7}
# NATLAB_NFQ_DELAY: path of the natlab-nfq-delay binary (tests/natlab/nfq_delay.c).
# Default: next to the punchline binaries the tests get ($NATLAB_BIN_DIR, else
# the chat harness's $CHAT_BIN_DIR, else build/bin of this tree).
NATLAB_NFQ_DELAY=${NATLAB_NFQ_DELAY:-}
_NATLAB_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

_natlab_err() { printf 'natlab: %s\n' "$*" >&2; }

# Run a command quietly; on failure show what failed (debugging a half-built
# lab without this is painful).
_natlab_run() {
    local out
    if ! out=$("$@" 2>&1); then
        _natlab_err "command failed: $* :: $out"
        return 1
    fi
}

# natlab_ns NAME -> prints the namespace name for lab node NAME.
natlab_ns() { printf '%s-%s\n' "$NATLAB_PREFIX" "$1"; }

# natlab_exec NAME CMD... -> run CMD inside node NAME's namespace.
natlab_exec() {
    local name=$1
    shift
    ip netns exec "$(natlab_ns "$name")" "$@"
}

# natlab_init: check we can build a lab and pick a unique prefix.
# Returns 1 (with a reason on stderr) when not root or netns are unavailable;
# callers turn that into a test skip (exit 77).
natlab_init() {
    if [ "$(id -u)" -ne 0 ]; then
        _natlab_err "not root"
        return 1
    fi
    local tool
    for tool in ip nft sysctl; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            _natlab_err "missing tool: $tool"
            return 1
        fi
    done
    # pl<pid> is unique among running processes; add a random suffix in case a
    # stale lab from a dead process with the same pid is still around.
    NATLAB_PREFIX="pl$$"
    if ip netns list 2>/dev/null | grep -q "^${NATLAB_PREFIX}-"; then
        NATLAB_PREFIX="pl$$r${RANDOM}"
    fi
    NATLAB_NAMESPACES=()
    # Probe: can we really create a namespace here (containers often can't)?
    local probe
    probe=$(natlab_ns probe)
    if ! ip netns add "$probe" 2>/dev/null; then
        _natlab_err "cannot create network namespaces (ip netns add failed)"
        return 1
    fi
    ip netns del "$probe" 2>/dev/null || true
    return 0
}

# _natlab_new_ns NAME: create a namespace for node NAME with lo up and
# IPv6 off (no DAD/RA noise in captures; the lab is IPv4 only for now).
_natlab_new_ns() {
    local ns
    ns=$(natlab_ns "$1")
    _natlab_run ip netns add "$ns" || return 1
    NATLAB_NAMESPACES+=("$ns")
    _natlab_run ip -n "$ns" link set lo up || return 1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
    # br_netfilter (if loaded) would push bridged frames through this
    # namespace's IP filter chains; a LAN switch must not be firewalled.
    if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
        ip netns exec "$ns" sysctl -qw net.bridge.bridge-nf-call-iptables=0 >/dev/null 2>&1 || true
    fi
}

# _natlab_new_bridge NS BR: a bridge that forwards immediately (no STP delay).
_natlab_new_bridge() {
    _natlab_run ip -n "$1" link add name "$2" type bridge forward_delay 0 stp_state 0 || return 1
    _natlab_run ip -n "$1" link set "$2" up
}

# natlab_add_internet: the "internet": one namespace with a bridge br0 holding
# 203.0.113.1/24. Routers plug their WAN side into it; the rendezvous server
# runs in it (natlab_exec inet ...).
natlab_add_internet() {
    local ns
    ns=$(natlab_ns inet)
    _natlab_new_ns inet || return 1
    _natlab_new_bridge "$ns" br0 || return 1
    _natlab_run ip -n "$ns" addr add "$NATLAB_INET_IP/$NATLAB_INET_PLEN" dev br0
}

# _natlab_first_ip CIDR: router address for a LAN given as a.b.c.d/N:
# network address -> .1 of it (10.0.1.0/24 -> 10.0.1.1); any other host part
# is taken as the router's address as given (10.0.1.254/24 -> 10.0.1.254).
_natlab_first_ip() {
    local addr=${1%/*} a b c d
    IFS=. read -r a b c d <<<"$addr"
    if [ "$d" = 0 ]; then d=1; fi
    printf '%s.%s.%s.%s\n' "$a" "$b" "$c" "$d"
}

# natlab_add_router NAME WAN_IP LAN_CIDR TYPE [UPSTREAM]
#   NAME     node name (<= 13 chars: interface names are derived from it)
#   WAN_IP   public address on the internet bridge, e.g. 203.0.113.11
#   LAN_CIDR inside network, e.g. 10.0.1.0/24 (router takes .1)
#   TYPE     NAT behaviour; one of the _natlab_rules_<type> functions below
#   UPSTREAM optional: a router whose LAN this router's WAN plugs into instead
#            of the internet (double NAT: a home NAT behind a carrier NAT in
#            100.64.0.0/10); WAN_IP is then an address of UPSTREAM's LAN
# Interfaces inside the router: "wan" (veth to the internet bridge, or to
# UPSTREAM's lan bridge) and "lan" (a bridge that natlab_add_host plugs hosts
# into).
natlab_add_router() {
    if [ $# -lt 4 ] || [ $# -gt 5 ]; then
        _natlab_err "usage: natlab_add_router NAME WAN_IP LAN_CIDR TYPE [UPSTREAM]"
        return 1
    fi
    local name=$1 wan_ip=${2%/*} lan_cidr=$3 type=$4 up=${5:-}
    local rules_fn="_natlab_rules_${type//-/_}"
    if ! declare -F "$rules_fn" >/dev/null; then
        _natlab_err "unknown NAT type '$type' (no function $rules_fn)"
        return 1
    fi
    case $lan_cidr in
        */*) ;;
        *) _natlab_err "LAN_CIDR must look like 10.0.1.0/24, got '$lan_cidr'"; return 1 ;;
    esac
    local ns inet lan_ip plen=${lan_cidr#*/}
    ns=$(natlab_ns "$name")
    inet=$(natlab_ns inet)
    lan_ip=$(_natlab_first_ip "$lan_cidr")
    if ! ip netns list | grep -q "^$inet\b"; then
        _natlab_err "call natlab_add_internet before natlab_add_router"
        return 1
    fi

    local up_ns=$inet up_br=br0 up_plen=$NATLAB_INET_PLEN up_gw=$NATLAB_INET_IP
    if [ -n "$up" ]; then
        if [ -z "${NATLAB_LAN_IP[$up]:-}" ]; then
            _natlab_err "unknown upstream router '$up'"
            return 1
        fi
        up_ns=$(natlab_ns "$up")
        up_br=lan
        up_plen=${NATLAB_LAN_PLEN[$up]}
        up_gw=${NATLAB_LAN_IP[$up]}
    fi

    _natlab_new_ns "$name" || return 1
    # WAN: veth "wan" in the router, "r-NAME" enslaved to the internet bridge
    # (or to the upstream router's LAN bridge).
    _natlab_run ip -n "$ns" link add name wan type veth peer name "r-$name" netns "$up_ns" || return 1
    _natlab_run ip -n "$up_ns" link set "r-$name" master "$up_br" || return 1
    _natlab_run ip -n "$up_ns" link set "r-$name" up || return 1
    _natlab_run ip -n "$ns" addr add "$wan_ip/$up_plen" dev wan || return 1
    _natlab_run ip -n "$ns" link set wan up || return 1
    # LAN: a bridge so several hosts can share the router.
    _natlab_new_bridge "$ns" lan || return 1
    _natlab_run ip -n "$ns" addr add "$lan_ip/$plen" dev lan || return 1
    _natlab_run ip -n "$ns" route add default via "$up_gw" || return 1
    _natlab_run ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 || return 1

    # Load NAT rules first: NATLAB.md notes `nft flush ruleset` also wipes
    # iptables-nft rules, so anything added later must come after.
    "$rules_fn" "$ns" wan lan || { _natlab_err "loading $type rules into $ns failed"; return 1; }

    NATLAB_LAN_IP[$name]=$lan_ip
    NATLAB_LAN_PLEN[$name]=$plen
    NATLAB_WAN_IP[$name]=$wan_ip
    NATLAB_TYPE[$name]=$type
}

# natlab_add_host NAME ROUTER LAN_IP: a host namespace with "eth0" plugged into
# ROUTER's LAN bridge, default route via the router.
natlab_add_host() {
    if [ $# -ne 3 ]; then
        _natlab_err "usage: natlab_add_host NAME ROUTER LAN_IP"
        return 1
    fi
    local name=$1 router=$2 ip=${3%/*}
    if [ -z "${NATLAB_LAN_IP[$router]:-}" ]; then
        _natlab_err "unknown router '$router' (call natlab_add_router first)"
        return 1
    fi
    local ns rns
    ns=$(natlab_ns "$name")
    rns=$(natlab_ns "$router")
    _natlab_new_ns "$name" || return 1
    _natlab_run ip -n "$ns" link add name eth0 type veth peer name "h-$name" netns "$rns" || return 1
    _natlab_run ip -n "$rns" link set "h-$name" master lan || return 1
    _natlab_run ip -n "$rns" link set "h-$name" up || return 1
    _natlab_run ip -n "$ns" addr add "$ip/${NATLAB_LAN_PLEN[$router]}" dev eth0 || return 1
    _natlab_run ip -n "$ns" link set eth0 up || return 1
    _natlab_run ip -n "$ns" route add default via "${NATLAB_LAN_IP[$router]}" || return 1
    NATLAB_HOST_IP[$name]=$ip
    NATLAB_HOST_ROUTER[$name]=$router
}

# natlab_add_public_host NAME IP [open|firewall]: a host with its own public
# address on the internet bridge and no NAT (a server, a host on a university
# or IPv4-rich network). Interface "eth0" in the host, "p-NAME" on the bridge;
# default route via 203.0.113.1 (all other nodes are on the same /24 anyway).
#   open      (default) no filtering at all: unsolicited packets reach the
#             host's stack, so a TCP SYN to a port nobody listens on is
#             answered with a RST, as a bare server does.
#   firewall  stateful host firewall with no NAT: unsolicited inbound packets
#             are dropped (input hook) before conntrack confirms them, so it
#             filters like a port-restricted NAT but never translates.
# natlab_host_ip NAME gives IP; natlab_host_router NAME gives "".
natlab_add_public_host() {
    if [ $# -lt 2 ] || [ $# -gt 3 ]; then
        _natlab_err "usage: natlab_add_public_host NAME IP [open|firewall]"
        return 1
    fi
    local name=$1 ip=${2%/*} kind=${3:-open} ns inet
    case $kind in
        open | firewall) ;;
        *) _natlab_err "public host kind must be open or firewall, got '$kind'"; return 1 ;;
    esac
    ns=$(natlab_ns "$name")
    inet=$(natlab_ns inet)
    if ! ip netns list | grep -q "^$inet\b"; then
        _natlab_err "call natlab_add_internet before natlab_add_public_host"
        return 1
    fi
    _natlab_new_ns "$name" || return 1
    _natlab_run ip -n "$ns" link add name eth0 type veth peer name "p-$name" netns "$inet" || return 1
    _natlab_run ip -n "$inet" link set "p-$name" master br0 || return 1
    _natlab_run ip -n "$inet" link set "p-$name" up || return 1
    _natlab_run ip -n "$ns" addr add "$ip/$NATLAB_INET_PLEN" dev eth0 || return 1
    _natlab_run ip -n "$ns" link set eth0 up || return 1
    _natlab_run ip -n "$ns" route add default via "$NATLAB_INET_IP" || return 1
    if [ "$kind" = firewall ]; then
        ip netns exec "$ns" nft -f - <<EOF || { _natlab_err "loading host firewall into $ns failed"; return 1; }
table ip filt {
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "eth0" ct state established,related accept
        iifname "eth0" icmp type echo-request accept
        iifname "eth0" drop
    }
}
EOF
    fi
    NATLAB_HOST_IP[$name]=$ip
    NATLAB_HOST_ROUTER[$name]=""
    NATLAB_PUBLIC[$name]=$kind
}

# Accessors, so tests don't reach into the arrays.
natlab_wan_ip() { printf '%s\n' "${NATLAB_WAN_IP[$1]}"; }
natlab_host_ip() { printf '%s\n' "${NATLAB_HOST_IP[$1]}"; }
natlab_host_router() { printf '%s\n' "${NATLAB_HOST_ROUTER[$1]}"; }

# ---------------------------------------------------------------------------
# NAT types. Each is a function _natlab_rules_<type, dashes as underscores>
# called as: _natlab_rules_<type> NAMESPACE WAN_IF LAN_IF
# It must load a complete ruleset with `nft -f -` inside NAMESPACE.
#
# Every type keeps the stateful "drop unsolicited inbound" filter: without it
# a peer's early punch packet creates a conntrack entry on the far router that
# clashes with the local host's outgoing mapping and the NAT picks another
# port - a failure no real router produces (see /work/shared/NATLAB.md).
#
# To add a type (full-cone, address-restricted, hairpin, ...): write
# _natlab_rules_<type> next to these, using the rulesets in NATLAB.md, and
# document it in docs/NATLAB.md. Nothing else needs to change.
# ---------------------------------------------------------------------------

# _natlab_filter_rules WAN LAN [EXTRA_FORWARD_RULE...]: the shared filter
# table, printed for inclusion in a ruleset.
#  forward: established/related back in, LAN->WAN out, LAN<->LAN (in case
#           bridged frames still reach here), everything else dropped.
#  input:   unsolicited packets from the WAN to the router itself are dropped
#           too, as home routers do; accepting them would let the conntrack
#           entry of a punch packet that arrives before our own outgoing packet
#           get confirmed and then clash with the mapping.
_natlab_filter_rules() {
    local wan=$1 lan=$2
    shift 2
    local extra
    cat <<EOF
table ip filt {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "$lan" oifname "$wan" accept
        iifname "$lan" oifname "$lan" accept
EOF
    for extra in "$@"; do
        printf '        %s\n' "$extra"
    done
    cat <<EOF
    }
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "$wan" ct state established,related accept
        iifname "$wan" icmp type echo-request accept
        iifname "$wan" drop
    }
}
EOF
}

# Port-restricted cone: endpoint-independent, port-preserving mapping;
# address-and-port-dependent filtering (the forward/input drop).
_natlab_rules_port_restricted() {
    local ns=$1 wan=$2 lan=$3
    {
        cat <<EOF
table ip nat {
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "$wan" masquerade
    }
}
EOF
        _natlab_filter_rules "$wan" "$lan"
    } | ip netns exec "$ns" nft -f -
}

# Full cone (EIM + EIF, UDP): after masquerade, the "learn" chain records
# mapped port -> inside address.port; any inbound UDP packet to a mapped port
# is DNATed to that inside endpoint, whoever sends it. TCP keeps
# port-restricted behaviour. (Recipe from shared/NATLAB.md, verified there
# with turnutils_natdiscovery.)
_natlab_rules_full_cone() {
    _natlab_rules_cone "$1" "$2" "$3" full
}

# Address-restricted cone (EIM + ADF, UDP): like full cone, but inbound is
# DNATed only from a remote address the inside endpoint has sent to (any
# port of that address).
_natlab_rules_address_restricted() {
    _natlab_rules_cone "$1" "$2" "$3" address
}

_natlab_rules_cone() {
    local ns=$1 wan=$2 lan=$3 kind=$4 match="" learn_ard="" ard_set=""
    if [ "$kind" = address ]; then
        ard_set="set ard { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 120s; }"
        learn_ard="oifname \"$wan\" meta l4proto udp update @ard { ip daddr . udp sport }"
        match="ip saddr . udp dport @ard"
    fi
    {
        cat <<EOF
table ip nat {
    map fc { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 120s; }
    $ard_set
    chain pre {
        type nat hook prerouting priority dstnat;
        iifname "$wan" meta l4proto udp $match dnat ip to udp dport map @fc
    }
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "$wan" masquerade
    }
    chain learn {
        type filter hook postrouting priority srcnat + 10;
        oifname "$wan" meta l4proto udp update @fc { udp sport : ct original ip saddr . ct original proto-src }
        $learn_ard
    }
}
EOF
        _natlab_filter_rules "$wan" "$lan" "ct status dnat accept"
    } | ip netns exec "$ns" nft -f -
}

# Symmetric: mapping depends on the destination, ports are random.
# `masquerade random` is protocol-independent: TCP connections get a fresh
# random port per destination exactly like UDP flows (checked with conntrack:
# one TCP socket bound to one port, connecting to two servers, shows two
# different reply ports on the router), so TCP simultaneous open through this
# router meets the same wall as UDP punching.
_natlab_rules_symmetric() {
    local ns=$1 wan=$2 lan=$3
    {
        cat <<EOF
table ip nat {
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "$wan" masquerade random
    }
}
EOF
        _natlab_filter_rules "$wan" "$lan"
    } | ip netns exec "$ns" nft -f -
}

# Port-restricted cone that hairpins UDP (RFC 4787 REQ-9): a LAN host sending
# to the router's public address and a mapped port reaches the LAN host that
# owns the mapping, with the source translated to the router's public address
# (so the receiver sees the sender's public mapping, as a host outside
# would). The "hp" map learns mapped port -> inside endpoint like the cone
# recipes. TCP is not hairpinned.
_natlab_rules_hairpin() {
    local ns=$1 wan=$2 lan=$3 wan_ip lan_net
    wan_ip=$(ip -n "$ns" -4 -o addr show dev "$wan" | awk '{print $4}')
    wan_ip=${wan_ip%/*}
    lan_net=$(ip -n "$ns" -4 -o route show dev "$lan" scope link | awk '{print $1; exit}')
    if [ -z "$wan_ip" ] || [ -z "$lan_net" ]; then
        _natlab_err "hairpin: cannot read the WAN address or LAN network of $ns"
        return 1
    fi
    {
        cat <<EOF
table ip nat {
    map hp { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout 120s; }
    chain pre {
        type nat hook prerouting priority dstnat;
        iifname "$lan" ip daddr $wan_ip meta l4proto udp dnat ip to udp dport map @hp
    }
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "$wan" masquerade
        oifname "$lan" ip saddr $lan_net ct status dnat snat ip to $wan_ip
    }
    chain learn {
        type filter hook postrouting priority srcnat + 10;
        oifname "$wan" meta l4proto udp update @hp { udp sport : ct original ip saddr . ct original proto-src }
    }
}
EOF
        _natlab_filter_rules "$wan" "$lan"
    } | ip netns exec "$ns" nft -f -
}

# ---------------------------------------------------------------------------
# Delay and loss (netem is not in this kernel; see docs/NATLAB.md)
# ---------------------------------------------------------------------------

# natlab_nfq_delay_bin: print the natlab-nfq-delay path natlab_set_delay uses
# (it may not exist; see natlab_delay_available).
natlab_nfq_delay_bin() {
    if [ -n "$NATLAB_NFQ_DELAY" ]; then
        printf '%s\n' "$NATLAB_NFQ_DELAY"
    else
        printf '%s/natlab-nfq-delay\n' "${NATLAB_BIN_DIR:-${CHAT_BIN_DIR:-$_NATLAB_LIB_DIR/../../build/bin}}"
    fi
}

# natlab_delay_available: 0 if natlab_set_delay can add delay (the binary
# exists, iptables is there); otherwise 1 with the reason on stderr, so a
# test can skip its delay part with a clear message. Loss alone needs neither.
natlab_delay_available() {
    local bin
    bin=$(natlab_nfq_delay_bin)
    if [ ! -x "$bin" ]; then
        _natlab_err "no delay line: $bin not found (needs libnetfilter-queue-dev at build time, see scripts/deps.sh; or set NATLAB_NFQ_DELAY)"
        return 1
    fi
    if ! command -v iptables >/dev/null 2>&1; then
        _natlab_err "no delay line: iptables not found (NFQUEUE is only reachable through iptables-nft here)"
        return 1
    fi
}

# _natlab_delay_ifaces NODE: "wan lan" for a router, "eth0" for a host.
_natlab_delay_ifaces() {
    if [ -n "${NATLAB_WAN_IP[$1]:-}" ]; then
        echo "wan lan"
    elif [ -n "${NATLAB_HOST_IP[$1]:-}" ]; then
        echo eth0
    else
        return 1
    fi
}

# _natlab_delay_rule CHAIN IFACE: the iptables rule spec natlab_set_delay adds.
_natlab_delay_rule() {
    local dir=-i
    [ "$1" = OUTPUT ] && dir=-o
    printf '%s\n' "$1" "$dir" "$2" -j NFQUEUE --queue-num "$NATLAB_NFQ_QUEUE" --queue-bypass
}

# _natlab_delay_off NODE: stop NODE's delay line and remove its rules.
_natlab_delay_off() {
    local node=$1 ns pid spec i rule
    ns=$(natlab_ns "$node")
    pid=${NATLAB_DELAY_PID[$node]:-}
    if [ -n "$pid" ]; then
        # SIGTERM: it accepts whatever it holds and exits
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset "NATLAB_DELAY_PID[$node]"
    fi
    if command -v iptables >/dev/null 2>&1; then
        for spec in "PREROUTING wan" "PREROUTING lan" "PREROUTING eth0" "OUTPUT eth0"; do
            # shellcheck disable=SC2086 # spec is "CHAIN IFACE"
            mapfile -t rule < <(_natlab_delay_rule $spec)
            while ip netns exec "$ns" iptables -t raw -D "${rule[@]}" 2>/dev/null; do :; done
        done
    fi
    ip netns exec "$ns" nft delete table inet natlab_delay 2>/dev/null || true
}

# natlab_set_delay NODE MS [LOSS_PCT [JITTER_MS]]
# Make the links of NODE slow and lossy:
#   router  every packet the router receives on "wan" or "lan" (everything it
#           forwards, in both directions, and the little that is addressed
#           to the router itself) waits MS ms, so an RTT whose packets cross
#           the router grows by 2*MS;
#   host    (public, or behind a router) every packet it sends or receives
#           on eth0 waits MS ms: again +2*MS per RTT.
# LOSS_PCT (integer 0..100, default 0) drops that percentage of the same
# packets at random, each packet independently, before the delay.
# JITTER_MS (default 0) adds a uniform random 0..JITTER_MS ms to each
# packet's delay without reordering packets.
# Calling it again replaces the node's settings; MS=0 LOSS_PCT=0 removes them.
#
# How: packets are taken before conntrack (raw priority), so a held packet
# carries no conntrack state and the NAT sees it exactly as if it had arrived
# MS later on the wire.
#   loss:  table inet natlab_delay, `numgen random mod 100 < LOSS_PCT drop`
#          at priority raw - 10 (prerouting; output too on a host)
#   delay: iptables-nft `-t raw -A PREROUTING -i IF -j NFQUEUE --queue-num N
#          --queue-bypass` (OUTPUT -o eth0 on a host; this kernel has neither
#          netem nor the nft `queue` statement) and one natlab-nfq-delay per
#          node in its namespace, holding each packet. --queue-bypass: if the
#          program is gone, packets pass undelayed rather than being dropped.
# Delay needs natlab-nfq-delay (natlab_nfq_delay_bin, natlab_delay_available);
# loss alone does not. natlab_cleanup stops the programs.
natlab_set_delay() {
    if [ $# -lt 2 ] || [ $# -gt 4 ]; then
        _natlab_err "usage: natlab_set_delay NODE MS [LOSS_PCT [JITTER_MS]]"
        return 1
    fi
    local node=$1 ms=$2 loss=${3:-0} jitter=${4:-0} ns ifaces ifc bin pid log i v rule
    for v in "$ms" "$loss" "$jitter"; do
        case $v in '' | *[!0-9]*) _natlab_err "natlab_set_delay: '$v' is not a non-negative integer"; return 1 ;; esac
    done
    if [ "$loss" -gt 100 ]; then
        _natlab_err "natlab_set_delay: LOSS_PCT must be 0..100, got $loss"
        return 1
    fi
    if ! ifaces=$(_natlab_delay_ifaces "$node"); then
        _natlab_err "natlab_set_delay: unknown node '$node' (want a router or a host)"
        return 1
    fi
    ns=$(natlab_ns "$node")
    _natlab_delay_off "$node"

    if [ "$loss" -gt 0 ]; then
        local set="" out="" drop="numgen random mod 100 < $loss drop"
        [ "$loss" -lt 100 ] || drop=drop # numgen mod 100 is 0..99
        for ifc in $ifaces; do set="$set${set:+, }\"$ifc\""; done
        if [ "$ifaces" = eth0 ]; then
            out="chain out { type filter hook output priority raw - 10; policy accept;
        oifname \"eth0\" $drop; }"
        fi
        ip netns exec "$ns" nft -f - <<EOF || { _natlab_err "loading the loss rules into $ns failed"; return 1; }
table inet natlab_delay {
    chain pre { type filter hook prerouting priority raw - 10; policy accept;
        iifname { $set } $drop; }
    $out
}
EOF
    fi

    [ "$ms" -gt 0 ] || [ "$jitter" -gt 0 ] || return 0
    natlab_delay_available || return 1
    bin=$(natlab_nfq_delay_bin)
    if [ -z "$NATLAB_TMP" ]; then
        NATLAB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/natlab-$NATLAB_PREFIX.XXXXXX") || return 1
    fi
    log="$NATLAB_TMP/nfq-delay-$node.log"
    # `ip netns exec` execs the program: $! is its pid.
    ip netns exec "$ns" "$bin" --queue "$NATLAB_NFQ_QUEUE" --delay "$ms" --jitter "$jitter" \
        </dev/null >/dev/null 2>"$log" &
    pid=$!
    NATLAB_DELAY_PID[$node]=$pid
    # Wait until the queue is bound in that namespace (or the program died).
    for i in $(seq 100); do
        # shellcheck disable=SC2016 # an awk program, not shell
        if ip netns exec "$ns" awk -v q="$NATLAB_NFQ_QUEUE" '$1 == q { f = 1 } END { exit !f }' \
            /proc/net/netfilter/nfnetlink_queue 2>/dev/null; then
            break
        fi
        if ! kill -0 "$pid" 2>/dev/null || [ "$i" = 100 ]; then
            _natlab_err "natlab-nfq-delay did not bind queue $NATLAB_NFQ_QUEUE in $ns: $(cat "$log" 2>/dev/null)"
            _natlab_delay_off "$node"
            return 1
        fi
        sleep 0.05
    done
    for ifc in $ifaces; do
        mapfile -t rule < <(_natlab_delay_rule PREROUTING "$ifc")
        _natlab_run ip netns exec "$ns" iptables -t raw -A "${rule[@]}" || return 1
    done
    if [ "$ifaces" = eth0 ]; then
        mapfile -t rule < <(_natlab_delay_rule OUTPUT eth0)
        _natlab_run ip netns exec "$ns" iptables -t raw -A "${rule[@]}" || return 1
    fi
}

# ---------------------------------------------------------------------------
# Debugging and cleanup
# ---------------------------------------------------------------------------

# natlab_dump: print every router's conntrack table and ruleset (call it when
# a test fails; it explains most punching failures).
natlab_dump() {
    local name ns
    for name in "${!NATLAB_WAN_IP[@]}"; do
        ns=$(natlab_ns "$name")
        printf '=== router %s (%s, wan %s, lan %s/%s) ===\n' "$name" \
            "${NATLAB_TYPE[$name]}" "${NATLAB_WAN_IP[$name]}" \
            "${NATLAB_LAN_IP[$name]}" "${NATLAB_LAN_PLEN[$name]}"
        if command -v conntrack >/dev/null 2>&1; then
            ip netns exec "$ns" conntrack -L 2>&1 | sed 's/^/  ct: /' || true
        fi
        ip netns exec "$ns" nft list ruleset 2>&1 | sed 's/^/  nft: /' || true
    done
    for name in "${!NATLAB_PUBLIC[@]}"; do
        [ "${NATLAB_PUBLIC[$name]}" = firewall ] || continue
        ns=$(natlab_ns "$name")
        printf '=== public host %s (%s, firewall) ===\n' "$name" "${NATLAB_HOST_IP[$name]}"
        if command -v conntrack >/dev/null 2>&1; then
            ip netns exec "$ns" conntrack -L 2>&1 | sed 's/^/  ct: /' || true
        fi
    done
}

# _natlab_lab_namespaces: namespaces of this lab (recorded ones plus any with
# our prefix, in case a function failed half-way).
_natlab_lab_namespaces() {
    {
        if [ ${#NATLAB_NAMESPACES[@]} -gt 0 ]; then
            printf '%s\n' "${NATLAB_NAMESPACES[@]}"
        fi
        ip netns list 2>/dev/null | awk -v p="${NATLAB_PREFIX}-" 'index($1, p) == 1 { print $1 }'
    } | sort -u
}

# natlab_cleanup: kill every process running in the lab's namespaces, then
# delete the namespaces (which deletes their veths and bridges). Idempotent and
# safe under `set -e`; meant for `trap natlab_cleanup EXIT INT TERM`.
natlab_cleanup() {
    [ -n "$NATLAB_PREFIX" ] || return 0
    local nss ns pids all_pids="" i node
    # Delay lines first (on SIGTERM they accept what they hold and exit).
    for node in "${!NATLAB_DELAY_PID[@]}"; do
        kill -TERM "${NATLAB_DELAY_PID[$node]}" 2>/dev/null || true
    done
    for node in "${!NATLAB_DELAY_PID[@]}"; do
        for i in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "${NATLAB_DELAY_PID[$node]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${NATLAB_DELAY_PID[$node]}" 2>/dev/null || true
        wait "${NATLAB_DELAY_PID[$node]}" 2>/dev/null || true
    done
    NATLAB_DELAY_PID=()
    if [ -n "$NATLAB_TMP" ]; then
        rm -rf "$NATLAB_TMP"
        NATLAB_TMP=""
    fi
    nss=$(_natlab_lab_namespaces)
    [ -n "$nss" ] || { NATLAB_NAMESPACES=(); return 0; }
    for ns in $nss; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        all_pids="$all_pids $pids"
    done
    # shellcheck disable=SC2086 # word splitting of the pid list is intended
    if [ -n "${all_pids// /}" ]; then
        kill -TERM $all_pids 2>/dev/null || true
        # Give them up to ~2 s to exit cleanly, then force.
        for i in 1 2 3 4 5 6 7 8 9 10; do
            pids=""
            for ns in $nss; do
                pids="$pids $(ip netns pids "$ns" 2>/dev/null || true)"
            done
            [ -n "${pids// /}" ] || break
            sleep 0.2
            if [ "$i" = 10 ]; then kill -KILL $pids 2>/dev/null || true; fi
        done
    fi
    for ns in $nss; do
        ip netns del "$ns" 2>/dev/null || true
    done
    NATLAB_NAMESPACES=()
    return 0
}
