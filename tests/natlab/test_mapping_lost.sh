#!/usr/bin/env bash
# tests/natlab/test_mapping_lost.sh BINDIR
# A NAT loses its mappings in the middle of a session (issue 8, faults):
#
#   alice 10.0.1.10 -- ra [port-restricted] 203.0.113.11 --+
#   bob   10.0.2.10 -- rb [port-restricted] 203.0.113.12 --+-- internet 203.0.113.1
#   pub   203.0.113.50 (public, no NAT) ----------------------+   (rendezvous :7350)
#
# Two faults on ra, while the connection carries numbered chat lines (one
# every 0.1 s) or a punchline-share transfer over direct-udp:
#   flush    `conntrack -F`: every mapping is forgotten; the next packet out
#            makes a new one on the same port (port-preserving masquerade),
#            and until then ra drops whatever comes in;
#   newport  the same, and UDP from then on maps to 20000-20999 (a `snat`
#            rule before the masquerade): every mapping moves to a new port,
#            as after a router reboot or a carrier NAT's rebinding.
# Direct TCP between ra and rb is dropped, so auto settles on direct-udp
# and its standby is the relay (docs/PROTOCOL.md 5.4).
#
#  a. flush, bob streams to alice (alice, behind ra, only receives: nothing
#     she sends renews the mapping but her consent checks);
#  b. newport, both stream (auto): the path stalls, both fall back to the
#     relay;
#  c. newport during a punchline-share transfer from alice to bob (auto);
#  d. newport, alice and pub (--transport udp, no relay): pub sees alice's
#     checks from her new address and moves there (migration).
# Each case: the receiver(s) get a line (or file bytes) sent after the fault
# within MAPLOST_LIMIT_S (default 10) s, with the default keepalive and path
# timeout; every line arrives exactly once and in order, the file's hash
# matches; both sides exit 0. Recovery times are logged as "info: ... ms".
# Needs root; exits 77 (skip) otherwise.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab_test.sh
. "$here/lab_test.sh" "${1:-}"
# shellcheck source=../integration/share_common.sh
. "$here/../integration/share_common.sh"
SHARE_T_XFER=${SHARE_T_XFER:-40}
share_setup
LIMIT_MS=$((${MAPLOST_LIMIT_S:-10} * 1000))
RZ=203.0.113.1:7350

natlab_add_internet
natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
natlab_add_host alice ra 10.0.1.10
natlab_add_host bob rb 10.0.2.10
natlab_add_public_host pub 203.0.113.50
natlab_exec ra nft insert rule ip filt forward ip daddr 203.0.113.12 meta l4proto tcp drop
natlab_exec ra nft insert rule ip filt forward ip saddr 203.0.113.12 meta l4proto tcp drop
if ! chat_start_rendezvous inet 203.0.113.1 7350; then
    chat_fail "punchline-rendezvous did not come up on $RZ"
    exit 1
fi

now_ms() { echo $(($(date +%s%N) / 1000000)); }
fault_flush() { natlab_exec ra conntrack -F >/dev/null 2>&1; }
NEWPORT_HANDLE=""
fault_newport() {
    NEWPORT_HANDLE=$(natlab_exec ra nft -e -a insert rule ip nat post oifname wan meta l4proto udp \
        snat ip to 203.0.113.11:20000-20999 | sed -n 's/.*# handle \([0-9]*\).*/\1/p')
    fault_flush
}
# undo_newport: back to plain masquerade, and a clean table for the next case
undo_newport() {
    [ -z "$NEWPORT_HANDLE" ] || natlab_exec ra nft delete rule ip nat post handle "$NEWPORT_HANDLE"
    NEWPORT_HANDLE=""
    fault_flush
}

# last_path ROLE: the path named by ROLE's last connected/path line
last_path() {
    grep -E '^(connected|path) ' "$CHAT_WORK/$1.err" | tail -n1 | sed -n 's/.* path=\([a-z-]*\) .*/\1/p'
}
wait_last_path() { # ROLE PATH SECONDS
    local end=$((SECONDS + $3))
    until [ "$(last_path "$1")" = "$2" ]; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}
paths_of() { grep -E '^(connected|path) ' "$CHAT_WORK/$1.err" | sed 's/ id=.*//' | tr '\n' ';'; }

# stream_case ID WHERE_A WHERE_B WHO FAULT [CALLER_ARGS...]
# ID-a (at WHERE_A) calls ID-b (at WHERE_B); once both are on direct-udp,
# WHO (a, b or ab) sends a numbered line every 0.1 s; FAULT runs after 1 s;
# the lines go on until every receiver got one sent after the fault (the
# recovery time) and 1 s longer; then both close, must exit 0, and every
# receiver must hold exactly lines 1..N in order.
stream_case() {
    local id=$1 wa=$2 wb=$3 who=$4 fault=$5 a b n=0 n0 t0 t rx ok=1 r
    shift 5
    a=$id-a b=$id-b
    chat_start_chat "$wb" "$b" --server "$RZ" --name "$b" --timeout 20
    if ! chat_wait_grep "$b" err '^registered ' 10; then
        chat_fail "$id: $b did not register"
        return 1
    fi
    chat_start_chat "$wa" "$a" --server "$RZ" --name "$a" --peer "$b" --timeout 20 "$@"
    if ! wait_last_path "$a" direct-udp 15 || ! wait_last_path "$b" direct-udp 5; then
        chat_fail "$id: not on direct-udp: $a: $(paths_of "$a") $b: $(paths_of "$b")"
        return 1
    fi
    local rx_roles=()
    case $who in *a*) rx_roles+=("$b") ;; esac
    case $who in *b*) rx_roles+=("$a") ;; esac
    send_line() {
        n=$((n + 1))
        case $who in *a*) chat_send "$a" "$n" ;; esac
        case $who in *b*) chat_send "$b" "$n" ;; esac
    }
    for _ in 1 2 3 4 5 6 7 8 9 10; do send_line; sleep 0.1; done
    n0=$n
    t0=$(now_ms)
    "$fault"
    chat_log "info: $id: fault '$fault' at line $n0"
    local -A got=()
    while :; do
        send_line
        sleep 0.1
        t=$(now_ms)
        for r in "${rx_roles[@]}"; do
            if [ -z "${got[$r]:-}" ] && [ "$(wc -l <"$CHAT_WORK/$r.out")" -gt "$n0" ]; then
                got[$r]=$((t - t0))
            fi
        done
        [ "${#got[@]}" -lt "${#rx_roles[@]}" ] || break
        if [ $((t - t0)) -gt $((LIMIT_MS + 10000)) ]; then
            break
        fi
    done
    for r in "${rx_roles[@]}"; do
        if [ -z "${got[$r]:-}" ]; then
            chat_fail "$id: $r got no line sent after the fault within $(((LIMIT_MS + 10000) / 1000)) s"
            ok=0
        elif [ "${got[$r]}" -ge "$LIMIT_MS" ]; then
            chat_fail "$id: $r recovered after ${got[$r]} ms (limit $LIMIT_MS)"
            ok=0
        else
            chat_pass "$id: $r got lines again ${got[$r]} ms after the fault"
        fi
        chat_log "info: $id: recovery $r ${got[$r]:-none} ms"
    done
    for _ in 1 2 3 4 5 6 7 8 9 10; do send_line; sleep 0.1; done
    chat_close "$a"
    chat_close "$b"
    for r in "$a" "$b"; do
        if chat_wait_exit "$r" 15 && [ "${CHAT_RC[$r]}" = 0 ]; then
            :
        else
            chat_fail "$id: $r exit status ${CHAT_RC[$r]:-still running} (want 0)"
            ok=0
        fi
    done
    seq 1 "$n" | sed "s/^/$a: /" >"$CHAT_WORK/expect.$b"
    seq 1 "$n" | sed "s/^/$b: /" >"$CHAT_WORK/expect.$a"
    case $who in *a*) chat_check_output "$b" "$CHAT_WORK/expect.$b" || ok=0 ;; esac
    case $who in *b*) chat_check_output "$a" "$CHAT_WORK/expect.$a" || ok=0 ;; esac
    chat_log "info: $id: paths: $a: $(paths_of "$a") $b: $(paths_of "$b")"
    [ "$ok" = 1 ]
}

chat_log "--- a: conntrack -F on ra; bob streams to alice, who only receives (auto)"
stream_case a alice bob b fault_flush || true
if [ "$(last_path a-a)" = direct-udp ] && [ "$(last_path a-b)" = direct-udp ]; then
    chat_pass "a: still on direct-udp (the mapping came back on the same port)"
else
    chat_fail "a: moved off direct-udp: $(paths_of a-a) / $(paths_of a-b)"
fi
fault_flush

chat_log "--- b: ra maps UDP to new ports; both stream (auto)"
stream_case b alice bob ab fault_newport || true
undo_newport

chat_log "--- c: ra maps UDP to new ports during a punchline-share transfer alice -> bob (auto)"
src="$CHAT_WORK/c.bin"
share_random_file "$src" 8
mkdir -p "$CHAT_WORK/out-c"
if share_start_recv c bob "$RZ" "$CHAT_WORK/out-c"; then
    PUNCHLINE_SHARE_TEST_RATE=$((2 * 1048576)) share_start_send c alice "$RZ" "$src"
    part="$CHAT_WORK/out-c/.c.bin.punchline-part"
    end=$((SECONDS + 20))
    while [ "$(stat -c %s "$part" 2>/dev/null || echo 0)" -lt $((2 * 1048576)) ] && [ "$SECONDS" -lt "$end" ]; do
        sleep 0.05
    done
    s0=$(stat -c %s "$part" 2>/dev/null || echo 0)
    if [ "$s0" -lt $((2 * 1048576)) ] || [ "$s0" -ge $((8 * 1048576)) ]; then
        chat_fail "c: the transfer was not under way (part file $s0 bytes)"
    else
        t0=$(now_ms)
        fault_newport
        rec=""
        while [ -z "$rec" ] && [ $(($(now_ms) - t0)) -lt $((LIMIT_MS + 10000)) ]; do
            sleep 0.05
            # 512 KiB (a quarter second at the throttled rate) beyond what
            # was on its way before the fault
            if [ "$(stat -c %s "$part" 2>/dev/null || stat -c %s "$CHAT_WORK/out-c/c.bin" 2>/dev/null || echo 0)" -gt $((s0 + 524288)) ]; then
                rec=$(($(now_ms) - t0))
            fi
        done
        chat_log "info: c: recovery ${rec:-none} ms (part file at $s0 bytes at the fault)"
        if [ -n "$rec" ] && [ "$rec" -lt "$LIMIT_MS" ]; then
            chat_pass "c: file bytes flowed again $rec ms after the fault"
        else
            chat_fail "c: no recovery within $LIMIT_MS ms (${rec:-none})"
        fi
    fi
    if share_wait c "$SHARE_T_XFER"; then
        share_check_ok c "$src" "$CHAT_WORK/out-c" 'direct-udp|relay-udp|relay-tcp' || true
    else
        chat_fail "c: transfer not finished within ${SHARE_T_XFER}s"
    fi
    chat_log "info: c: paths: $(grep -E '^(connected|path) ' "$CHAT_WORK/c-send.err" | sed 's/ id=.*//' | tr '\n' ';')"
else
    chat_fail "c: receiver did not register"
fi
undo_newport

chat_log "--- d: ra maps UDP to new ports; alice and pub (public) stream, --transport udp"
stream_case d alice pub ab fault_newport --transport udp || true
if grep -Eq '^path peer=d-a path=direct-udp remote=203\.0\.113\.11:20[0-9]{3} ' "$CHAT_WORK/d-b.err"; then
    chat_pass "d: pub moved to alice's new address: $(grep '^path ' "$CHAT_WORK/d-b.err" | tail -n1)"
else
    chat_fail "d: pub did not report alice's new address: $(paths_of d-b)"
fi
undo_newport

chat_exit
