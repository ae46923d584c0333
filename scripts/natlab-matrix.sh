#!/usr/bin/env bash
# scripts/natlab-matrix.sh [-b BINDIR] [-n RUNS] [-p "A:B A:B ..."] [-d MS] [-l PCT] [-k] [-h]
#
# Every pair of NAT types of the lab (tests/natlab/lib.sh, real nftables
# conntrack NAT in network namespaces), punchline-chat with --transport auto,
# RUNS runs per pair. Prints a table: the path the connection ends on, the
# success rate, time to the first usable path and time to a direct path
# (p50/p95, ms from the caller's connect), and whether that matches the
# expected result for the pair (docs/NATLAB.md "The matrix").
#
#   -b BINDIR  punchline binaries (default build/bin)
#   -n RUNS    runs per pair (default 3)
#   -p PAIRS   only these pairs, e.g. "sym:sym pr:fc" (default: all)
#   -d MS      delay every packet MS ms at every router (both directions) and
#              public host (in and out): +2*MS on an RTT per router crossed
#              (natlab_set_delay; needs natlab-nfq-delay in BINDIR). Every
#              wait of this script scales with it (x(1 + MS/25), rounded up).
#   -l PCT     drop PCT% of the packets at the same places, independently
#   -k         keep going quietly: exit 0 even if a pair misses expectations
# Exit status: 0 if every pair met its expectation (or -k), 1 otherwise,
# 77 without root/namespaces, 2 for usage errors.
#
# Types (caller instance 1 calls callee instance 2 of the other type):
#   pub   public address, no filtering        fw    public address, stateful firewall
#   fc    full cone (EIM, EIF)                arc   address-restricted cone (EIM, ADF)
#   pr    port-restricted cone (EIM, APDF)    sym   symmetric (APDM, random ports)
#   dbl   port-restricted home NAT behind a port-restricted carrier NAT (100.64.0.0/10)
#   noudp port-restricted, all outbound UDP blocked
#   rzudp port-restricted, outbound UDP only to the rendezvous
# and the pairs "same": two hosts behind one port-restricted NAT (no
# hairpin), "hp": two hosts behind one port-restricted NAT that hairpins UDP.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bindir=$root/build/bin
runs=3
only=""
keep=0
delay=0
loss=0
while getopts "b:n:p:d:l:kh" o; do
    case $o in
        b) bindir=$OPTARG ;;
        n) runs=$OPTARG ;;
        p) only=$OPTARG ;;
        k) keep=1 ;;
        d) delay=$OPTARG ;;
        l) loss=$OPTARG ;;
        h) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) exit 2 ;;
    esac
done
case $runs in '' | *[!0-9]* | 0) echo "natlab-matrix: -n wants a positive number" >&2; exit 2 ;; esac
case $delay in '' | *[!0-9]*) echo "natlab-matrix: -d wants milliseconds" >&2; exit 2 ;; esac
case $loss in '' | *[!0-9]*) echo "natlab-matrix: -l wants a percentage 0..100" >&2; exit 2 ;; esac
[ "$loss" -le 100 ] || { echo "natlab-matrix: -l wants a percentage 0..100" >&2; exit 2; }
# Every wait below is multiplied by this (1 at no delay; 3 at -d 50, i.e.
# 100 ms RTT per router crossed and up to 400 ms RTT between two double NATs).
scale=$(((25 + delay + 24) / 25))
[ "$loss" -eq 0 ] || scale=$((scale + 1))

TYPES=(pub fw fc arc pr sym dbl noudp rzudp)

# expect A B: the path class the pair must end on, and why.
#   direct  a direct path (udp or tcp) exists and must be found
#   tcp     only a direct TCP path exists (no UDP on one side)
#   relay   no direct path exists: the relay must carry it
expect() {
    local a=$1 b=$2 t
    # order-independent: sort the two names
    if [[ $b < $a ]]; then t=$a; a=$b; b=$t; fi
    case "$a:$b" in
        same:same) echo "direct LAN host candidates (no hairpin needed)" ;;
        hp:hp) echo "direct LAN host candidates, or the public mappings through the hairpin" ;;
        noudp:sym | rzudp:sym) echo "relay no UDP on one side and TCP cannot cross the symmetric NAT" ;;
        noudp:* | *:noudp | rzudp:* | *:rzudp) echo "tcp no direct UDP on one side; TCP simultaneous open works" ;;
        pr:sym | sym:sym | dbl:sym) echo "relay the symmetric side's new port never matches a port-restricted filter" ;;
        arc:sym) echo "direct ADF: the symmetric side's new port comes from an address already contacted (peer-reflexive)" ;;
        fc:sym) echo "direct EIF: anything reaches the full-cone mapping (peer-reflexive)" ;;
        fw:sym) echo "relay a stateful firewall filters like a port-restricted NAT" ;;
        *:*) echo "direct endpoint-independent mapping on both sides" ;;
    esac
}

# shellcheck source=../tests/natlab/lib.sh
. "$root/tests/natlab/lib.sh"
# shellcheck source=../tests/integration/chat_common.sh
. "$root/tests/integration/chat_common.sh"
trap chat_finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if ! natlab_init; then
    echo "natlab-matrix: needs root and network namespaces"
    exit 77
fi
chat_setup "$bindir" >/dev/null
if [ "$delay" -gt 0 ] && ! natlab_delay_available; then
    echo "natlab-matrix: -d needs the delay line (see above)"
    exit 77
fi
CHAT_T_REGISTER=$((15 * scale))
RZ=203.0.113.1:7350

# ---- the lab: two instances of every type ----------------------------------
natlab_add_internet
n=0
fw() { natlab_exec "$1" nft insert rule ip filt forward "${@:2}"; }
for t in "${TYPES[@]}"; do
    for i in 1 2; do
        n=$((n + 1))
        case $t in
            pub) natlab_add_public_host "pub$i" "203.0.113.$((49 + i))" open ;;
            fw) natlab_add_public_host "fw$i" "203.0.113.$((51 + i))" firewall ;;
            dbl)
                natlab_add_router "cgn$i" "203.0.113.$((60 + i))" "100.64.$i.0/24" port-restricted
                natlab_add_router "rdbl$i" "100.64.$i.10" "10.0.$n.0/24" port-restricted "cgn$i"
                natlab_add_host "dbl$i" "rdbl$i" "10.0.$n.10"
                ;;
            *)
                local_type=$t
                case $t in fc) local_type=full-cone ;; arc) local_type=address-restricted ;;
                    pr | noudp | rzudp) local_type=port-restricted ;; sym) local_type=symmetric ;; esac
                natlab_add_router "r$t$i" "203.0.113.$((10 + n))" "10.0.$n.0/24" "$local_type"
                natlab_add_host "$t$i" "r$t$i" "10.0.$n.10"
                ;;
        esac
        case $t in
            noudp) fw "r$t$i" iifname lan meta l4proto udp drop ;;
            rzudp)
                fw "r$t$i" iifname lan meta l4proto udp drop
                fw "r$t$i" iifname lan ip daddr 203.0.113.1 udp dport 7350 accept
                ;;
        esac
    done
done
same_ip=$(natlab_host_ip pr1)
natlab_add_host same1 rpr1 "${same_ip%.*}.21"
natlab_add_host same2 rpr1 "${same_ip%.*}.22"
natlab_add_router rhp 203.0.113.40 10.0.99.0/24 hairpin
natlab_add_host hp1 rhp 10.0.99.21
natlab_add_host hp2 rhp 10.0.99.22
# delay and loss: every router (carrier NATs included) and public host
if [ "$delay" -gt 0 ] || [ "$loss" -gt 0 ]; then
    for node in "${!NATLAB_WAN_IP[@]}" "${!NATLAB_PUBLIC[@]}"; do
        natlab_set_delay "$node" "$delay" "$loss"
    done
fi

# the harness bounds every process it starts (CHAT_T_HARD); the rendezvous
# must outlive the whole matrix, each chat only its own run
CHAT_T_HARD=86400
if ! chat_start_rendezvous inet 203.0.113.1 7350 >/dev/null; then
    echo "natlab-matrix: the rendezvous did not start" >&2
    exit 1
fi
CHAT_T_HARD=$((120 * scale))

# ---- one run --------------------------------------------------------------
# run_pair A B I: caller A1 calls callee B2; prints "first first_ms final direct_ms"
run_pair() {
    local a=$1 b=$2 i=$3 caller callee cr ce
    caller=${a}1
    callee=${b}2
    [ "$a" = same ] && caller=same1 callee=same2
    [ "$a" = hp ] && caller=hp1 callee=hp2
    cr="m$i-$caller-$callee-a"
    ce="m$i-$caller-$callee-b"
    chat_start_chat "$callee" "$ce" --server "$RZ" --name "$ce" --timeout $((20 * scale))
    if ! chat_wait_grep "$ce" err registered "$CHAT_T_REGISTER"; then
        chat_stop "$ce" >/dev/null 2>&1 || true
        echo "fail - fail -"
        return
    fi
    chat_start_chat "$caller" "$cr" --server "$RZ" --name "$cr" --peer "$ce" --timeout $((20 * scale))
    local first="" fms="" final="" dms="" line
    if chat_wait_grep "$cr" err '^connected ' $((25 * scale)) && chat_wait_grep "$ce" err '^connected ' $((5 * scale)); then
        line=$(grep -m1 '^connected ' "$CHAT_WORK/$cr.err")
        first=$(sed 's/.* path=\([^ ]*\) .*/\1/' <<<"$line")
        fms=$(sed -n "s/.* ms=\([0-9]*\).*/\1/p" <<<"$line")
        # give the upgrade time: punching runs 10 s at most, a direct path
        # comes within a second when it exists
        if [[ $first == relay-* ]]; then
            chat_wait_grep "$cr" err '^path peer=.* path=direct-' $((3 * scale)) || true
        fi
        line=$(grep -E '^(connected|path) ' "$CHAT_WORK/$cr.err" | tail -n1)
        final=$(sed 's/.* path=\([^ ]*\) .*/\1/' <<<"$line")
        line=$(grep -m1 -E '^(connected|path) peer=[^ ]* path=direct-' "$CHAT_WORK/$cr.err" || true)
        dms=$(sed -n "s/.* ms=\([0-9]*\).*/\1/p" <<<"$line")
        [ -n "$line" ] || dms=-
        # both sides must agree on the final path
        local other
        other=$(grep -E '^(connected|path) ' "$CHAT_WORK/$ce.err" | tail -n1 | sed 's/.* path=\([^ ]*\) .*/\1/')
        [ "$other" = "$final" ] || final="$final/$other"
    fi
    chat_close "$cr"
    chat_close "$ce"
    chat_wait_exit "$cr" $((10 * scale)) >/dev/null || chat_stop "$cr" >/dev/null 2>&1 || true
    chat_wait_exit "$ce" $((10 * scale)) >/dev/null || chat_stop "$ce" >/dev/null 2>&1 || true
    echo "${first:-fail} ${fms:--} ${final:-fail} ${dms:--}"
}

pct() { # pct P values...: nearest-rank percentile of numeric values, or -
    local p=$1
    shift
    printf '%s\n' "$@" | grep -E '^[0-9]+$' | sort -n | awk -v p="$p" '{ v[n++] = $1 }
        END { if (!n) { print "-"; exit } i = int((p * n + 99) / 100) - 1; print v[i < 0 ? 0 : i] }'
}

pairs=()
if [ -n "$only" ]; then
    read -r -a pairs <<<"$only"
else
    for ((x = 0; x < ${#TYPES[@]}; x++)); do
        for ((y = x; y < ${#TYPES[@]}; y++)); do
            pairs+=("${TYPES[x]}:${TYPES[y]}")
        done
    done
    pairs+=("same:same" "hp:hp")
fi

bad=0
if [ "$delay" -gt 0 ] || [ "$loss" -gt 0 ]; then
    printf '# delay %s ms per packet and %s%% loss at every router and public host (+%s ms RTT per router crossed); waits x%s\n' \
        "$delay" "$loss" $((2 * delay)) "$scale"
else
    echo "# no added delay or loss (near-zero RTT)"
fi
printf '%-12s %-6s %-5s %-22s %-11s %-11s %-6s %s\n' pair expect ok "final path (runs)" "first p50/95" "direct p50/95" verdict why
for pr in "${pairs[@]}"; do
    a=${pr%%:*}
    b=${pr##*:}
    read -r want why <<<"$(expect "$a" "$b")"
    ok=0 finals=() fmsv=() dmsv=()
    for ((i = 1; i <= runs; i++)); do
        read -r first fms final dms <<<"$(run_pair "$a" "$b" "$i")"
        [ "$final" != fail ] && ok=$((ok + 1))
        finals+=("$final")
        fmsv+=("$fms")
        dmsv+=("$dms")
    done
    summary=$(printf '%s\n' "${finals[@]}" | sort | uniq -c | awk '{ printf "%s%s x%s", s, $2, $1; s = ", " }')
    verdict=ok
    for f in "${finals[@]}"; do
        case $want:$f in
            direct:direct-udp | direct:direct-tcp | tcp:direct-tcp | relay:relay-udp | relay:relay-tcp) ;;
            *) verdict=MISS ;;
        esac
    done
    [ "$verdict" = ok ] || bad=1
    printf '%-12s %-6s %-5s %-22s %-11s %-11s %-6s %s\n' "$pr" "$want" "$ok/$runs" "$summary" \
        "$(pct 50 "${fmsv[@]}")/$(pct 95 "${fmsv[@]}")" "$(pct 50 "${dmsv[@]}")/$(pct 95 "${dmsv[@]}")" \
        "$verdict" "$why"
done
if [ "$bad" = 1 ] && [ "$keep" = 0 ]; then
    echo "natlab-matrix: some pairs missed their expectation (PL_KEEP_LOGS=1 keeps the chat logs)"
    CHAT_NO_DUMP=1
    exit 1
fi
exit 0
