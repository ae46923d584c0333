#!/usr/bin/env bash
# scripts/demo.sh - watch two punchline-chat peers find each other.
#
# As root: builds a lab with two real NATs (network namespaces + nftables,
# see docs/NATLAB.md) and runs the rendezvous on the "internet", bob behind
# NAT B and alice behind NAT A. Not root: the same on 127.0.0.1 only.
# Either way: a short scripted conversation both ways, then clean exits.
#
#   PL_DEMO_BINDIR=DIR  use the binaries in DIR instead of building build/
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

if [ -t 1 ]; then
    c_rz=$'\e[2m' c_alice=$'\e[36m' c_bob=$'\e[33m' c_me=$'\e[1m' c_off=$'\e[0m'
else
    c_rz="" c_alice="" c_bob="" c_me="" c_off=""
fi
say() { printf '%s== %s ==%s\n' "$c_me" "$*" "$c_off"; }

# ---- binaries ---------------------------------------------------------------
if [ -n "${PL_DEMO_BINDIR:-}" ]; then
    bindir=$(cd "$PL_DEMO_BINDIR" && pwd)
else
    ./scripts/deps.sh
    say "building build/ (RelWithDebInfo, no sanitizers)"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPUNCHLINE_SANITIZE=OFF >/dev/null
    cmake --build build -j"${PL_JOBS:-2}" --target punchline-rendezvous punchline-chat
    # The newest punchline-chat in build/ (build/bin with the current CMake;
    # older trees may still hold stale copies elsewhere).
    chat_path=$(find build -type f -name punchline-chat -perm -u+x -printf '%T@ %p\n' |
        sort -rn | head -n 1 | cut -d' ' -f2-)
    if [ -z "$chat_path" ]; then
        echo "demo: punchline-chat was not built" >&2
        exit 1
    fi
    bindir=$(cd "$(dirname "$chat_path")" && pwd)
fi
rz_bin=$bindir/punchline-rendezvous
chat_bin=$bindir/punchline-chat
for b in "$rz_bin" "$chat_bin"; do
    [ -x "$b" ] || { echo "demo: missing binary $b" >&2; exit 1; }
done

# ---- lab or loopback ----------------------------------------------------------
# shellcheck source=tests/natlab/lib.sh
. "$repo/tests/natlab/lib.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/punchline-demo.XXXXXX")
pids=()
fd_alice="" fd_bob=""

# shellcheck disable=SC2317 # invoked via trap
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM HUP
    [ -z "$fd_alice" ] || exec {fd_alice}>&-
    [ -z "$fd_bob" ] || exec {fd_bob}>&-
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    natlab_cleanup
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
    if [ "$rc" -eq 0 ]; then
        say "done, everything cleaned up"
    else
        say "stopped (status $rc), everything cleaned up"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if natlab_init 2>/dev/null; then
    mode=lab
    natlab_add_internet
    natlab_add_router ra 203.0.113.11 10.0.1.0/24 port-restricted
    natlab_add_router rb 203.0.113.12 10.0.2.0/24 port-restricted
    natlab_add_host alice ra 10.0.1.10
    natlab_add_host bob rb 10.0.2.10
    rz_ip=203.0.113.1 rz_port=7350
    bob_at=" (behind NAT B)" alice_at=" (behind NAT A)"
    cat <<'EOF'
Two real NATs built from network namespaces and nftables (docs/NATLAB.md):

  alice 10.0.1.10 --[ NAT A: 203.0.113.11, port-restricted ]--+
                                                              +-- "internet" 203.0.113.1
  bob   10.0.2.10 --[ NAT B: 203.0.113.12, port-restricted ]--+    (rendezvous :7350)

Neither NAT accepts unsolicited packets: the peers must punch a hole.
EOF
else
    mode=loopback
    rz_ip=127.0.0.1 rz_port=""
    bob_at="" alice_at=""
    cat <<'EOF'
NOTE: not root (or no network namespaces): running on 127.0.0.1 ONLY.
      There is no NAT in between; run as root to see the two-NAT lab.
EOF
fi
echo

# where NAME -> command prefix (array "pre") to run a program as NAME.
where() {
    pre=()
    if [ "$mode" = lab ]; then pre=(ip netns exec "$(natlab_ns "$1")"); fi
}

# label LABEL COLOR: prefix every input line, in color, as it arrives.
label() {
    local line
    while IFS= read -r line; do
        printf '%s%-18s%s %s\n' "$2" "$1" "$c_off" "$line"
    done
}

# start NAME STDIN LOG_LABEL COLOR CMD...: run CMD as NAME in the background,
# stderr copied to $work/NAME.err (we wait on it) and shown with a label.
start() {
    local name=$1 stdin=$2 lbl=$3 color=$4 pre
    shift 4
    where "$name"
    : >"$work/$name.err"
    (
        # Children (the program and its output labellers) must not hold our
        # FIFO write ends, or the chats never see EOF.
        [ -z "$fd_alice" ] || exec {fd_alice}>&-
        [ -z "$fd_bob" ] || exec {fd_bob}>&-
        exec "${pre[@]}" timeout -k 2 300 "$@" <"$stdin" \
            2> >(tee -a "$work/$name.err" | label "$lbl ~" "$color") \
            > >(label "$lbl >" "$color")
    ) &
    pids+=("$!")
    last_pid=$!
}

# wait_for FILE ERE SECONDS
wait_for() {
    local deadline=$((SECONDS + $3))
    until grep -Eq -- "$2" "$1" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "demo: timed out waiting for /$2/ in $(basename "$1")" >&2
            return 1
        fi
        sleep 0.1
    done
}

# ---- rendezvous -------------------------------------------------------------------
listening() {
    local pre
    where inet
    [ -n "$("${pre[@]}" ss -Htuln "sport = :$1" 2>/dev/null)" ]
}
for attempt in 1 2 3 4 5; do
    if [ "$mode" = loopback ]; then
        rz_port=$(shuf -i 20000-60000 -n 1)
        if listening "$rz_port"; then continue; fi
    fi
    say "rendezvous: punchline-rendezvous --listen $rz_ip:$rz_port"
    start inet /dev/null "rendezvous" "$c_rz" "$rz_bin" --listen "$rz_ip:$rz_port" --log-level info
    rz_pid=$last_pid
    for _ in $(seq 50); do
        if listening "$rz_port" || ! kill -0 "$rz_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    sleep 0.2
    if kill -0 "$rz_pid" 2>/dev/null && listening "$rz_port"; then break; fi
    if [ "$mode" = lab ] || [ "$attempt" = 5 ]; then
        echo "demo: the rendezvous did not start" >&2
        exit 1
    fi
done
server="$rz_ip:$rz_port"
sleep 0.5

# ---- the two peers ----------------------------------------------------------------
mkfifo "$work/alice.in" "$work/bob.in"
exec {fd_bob}<>"$work/bob.in"
exec {fd_alice}<>"$work/alice.in"

echo
say "bob$bob_at waits: punchline-chat --server $server --name bob --identity bob.pem"
start bob "$work/bob.in" "bob" "$c_bob" "$chat_bin" --server "$server" --name bob \
    --identity "$work/bob.pem"
bob_pid=$last_pid
wait_for "$work/bob.err" registered 15
sleep 1

echo
say "alice$alice_at connects: punchline-chat --server $server --name alice --peer bob --identity alice.pem"
start alice "$work/alice.in" "alice" "$c_alice" \
    "$chat_bin" --server "$server" --name alice --peer bob --identity "$work/alice.pem"
alice_pid=$last_pid
wait_for "$work/alice.err" '^connected ' 30
wait_for "$work/bob.err" '^connected ' 30
sleep 1

# ---- conversation -------------------------------------------------------------------
type_line() { # type_line NAME TEXT
    local fd=$fd_alice color=$c_alice
    [ "$1" = bob ] && fd=$fd_bob color=$c_bob
    echo
    printf '%s%-18s%s %s\n' "$c_me$color" "$1 types:" "$c_off" "$2"
    printf '%s\n' "$2" >&"$fd"
    sleep 1.2
}
echo
say "conversation (stdin of each chat is typed by this script)"
type_line alice "hi bob, it's alice - no relay between us"
type_line bob "hey alice! your packets come straight through NAT B"
type_line alice "the rendezvous only told us each other's address"
type_line bob "even relayed it would see only ciphertext: DTLS between our keys"
type_line alice "(the id= in each connected line is the other's key; pin it with --peer-id)"
type_line bob "nice. bye!"
type_line alice "bye"

echo
say "closing both stdins (EOF): each chat finishes sending, then exits"
exec {fd_alice}>&-
fd_alice=""
exec {fd_bob}>&-
fd_bob=""
status=0
for who in alice bob; do
    pid=$bob_pid
    [ "$who" = alice ] && pid=$alice_pid
    rc=0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$who did not exit within 10s"
        status=1
        continue
    fi
    wait "$pid" || rc=$?
    say "$who exited with status $rc"
    [ "$rc" -eq 0 ] || status=1
done
exit "$status"
