#!/usr/bin/env bash
# bench/secure_bulk.sh [BINDIR] [--mb M] [--runs R] [--seconds S]
#
# Bulk throughput of an end-to-end encrypted connection per path, on
# loopback with the real binaries, next to the cost of the DTLS channel and
# the AEAD ceiling measured in the same run (docs/BENCHMARKS.md).
#
# Each round (R rounds, default 3):
#   - punchline-secure-bench handshake 200 (+ ECDSA sign/verify), records
#     1024 S, aead 1024 S (S seconds, default 3), pinned to core 1;
#   - for T in udp tcp relay: bob (`punchline-chat --name ...`, stdin
#     /dev/null, stdout to a file) registers and waits; alice calls him with
#     `--transport T` and stdin from a file of M MB (default 32) of
#     1000-character lines, one message each. Alice is pinned to core 0,
#     bob to core 1; the rendezvous floats. Both stderrs are timestamped
#     as they are written. Timed from alice's "connected" line to bob's
#     "peer=... finished sending" line (every message delivered, then
#     alice's FIN): `seconds`, `MBps`; and to bob's exit (`exit_s`), which
#     adds the close linger (2 RTO, at least 200 ms: peer/conn.c) and
#     process exit. Bob's stdout must be exactly the input, line for line
#     ("alice-...: TEXT"). MB/s = text bytes (newlines not counted) /
#     seconds, MB = 10^6 bytes.
# The rendezvous runs with its relay rate limits off (--relay-session-rate 0
# --relay-bandwidth 0) so the relay figure is the path, not the policy (the
# default per-session cap is 16 MiB/s).
#
# Prints every sample as it runs, then medians per figure. BINDIR (default
# build/bin) must hold punchline-rendezvous, punchline-chat and
# punchline-secure-bench. Loopback only; no root needed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
bindir=$here/../build/bin
mb=32
runs=3
secs=3
while [ $# -gt 0 ]; do
    case $1 in
    --mb) mb=${2:-}; shift 2 ;;
    --runs) runs=${2:-}; shift 2 ;;
    --seconds) secs=${2:-}; shift 2 ;;
    -h | --help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) bindir=$1; shift ;;
    esac
done
for v in "$mb" "$runs" "$secs"; do
    case $v in '' | *[!0-9]* | 0) echo "--mb, --runs and --seconds take positive integers" >&2; exit 2 ;; esac
done
bindir=$(cd "$bindir" && pwd)
for b in punchline-chat punchline-rendezvous punchline-secure-bench; do
    [ -x "$bindir/$b" ] || { echo "no $bindir/$b; build first (cmake --build build)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time) for the CPU figures" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/punchline-bulk.XXXXXX")
export XDG_CONFIG_HOME="$work/config" # no key lands in the invoking user's home
pids=()
cleanup() {
    local p
    # Our own children only, by pid: `timeout` wrappers take their process
    # group (the chat under them) down with them.
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The input: M MB of text in 1000-character lines, each numbered.
lines=$((mb * 1000))
awk -v n="$lines" 'BEGIN {
    pad = sprintf("%991s", ""); gsub(/ /, "x", pad)
    for (i = 1; i <= n; i++) printf "%08d %s\n", i, pad
}' >"$work/input.txt"
text_bytes=$((lines * 1000))

# The rendezvous on a free port: random in 20000-60000, must actually bind.
port=""
rz_pid=""
for _ in 1 2 3 4 5 6 7 8; do
    p=$(shuf -i 20000-60000 -n 1)
    [ -z "$(ss -Htuln "sport = :$p" 2>/dev/null)" ] || continue
    "$bindir/punchline-rendezvous" --listen "127.0.0.1:$p" --log-level warn \
        --relay-session-rate 0 --relay-bandwidth 0 </dev/null >/dev/null 2>"$work/rz.err" &
    rz_pid=$!
    pids+=("$rz_pid")
    for _w in $(seq 50); do
        kill -0 "$rz_pid" 2>/dev/null || break
        [ -z "$(ss -Htuln "sport = :$p" 2>/dev/null)" ] || { port=$p; break; }
        sleep 0.1
    done
    [ -z "$port" ] || break
    kill "$rz_pid" 2>/dev/null || true
    wait "$rz_pid" 2>/dev/null || true
done
[ -n "$port" ] || { echo "could not start punchline-rendezvous:" >&2; cat "$work/rz.err" >&2; exit 1; }
server=127.0.0.1:$port

# proc_cpu PID: user+system CPU seconds of PID so far (from /proc/PID/stat).
tck=$(getconf CLK_TCK)
proc_cpu() {
    awk -v t="$tck" '{ sub(/.*\) /, ""); printf "%.2f\n", ($12 + $13) / t }' "/proc/$1/stat"
}

# bulk T I: one transfer; prints "bulk path=... mb=... seconds=... MBps=..." or a failure.
bulk() {
    local t=$1 i=$2
    local b="bob-$t-$i" a="alice-$t-$i" bpid apid brc=0 arc=0 t0 tf t1 rz0 rz1 path got
    # Both stderrs go through a timestamping reader (bash's EPOCHREALTIME,
    # no fork per line), so a status line's time is when it was written.
    taskset -c 1 timeout -k 2 120 /usr/bin/time -f '%U %S' -o "$work/$b.time" \
        "$bindir/punchline-chat" --server "$server" --name "$b" --identity "$work/bob.pem" \
        --timeout 30 </dev/null >"$work/$b.out" \
        2> >(while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done >"$work/$b.err") &
    bpid=$!
    pids+=("$bpid")
    if ! bench_wait_grep "$work/$b.err" '^[0-9.]+ registered' 100; then
        echo "bulk path=$t run=$i FAILED: bob did not register: $(tail -n 3 "$work/$b.err" | tr '\n' ' ')"
        return
    fi
    rz0=$(proc_cpu "$rz_pid")
    taskset -c 0 timeout -k 2 120 /usr/bin/time -f '%U %S' -o "$work/$a.time" \
        "$bindir/punchline-chat" --server "$server" --name "$a" --peer "$b" --transport "$t" \
        --identity "$work/alice.pem" --timeout 30 <"$work/input.txt" >/dev/null \
        2> >(while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done >"$work/$a.err") &
    apid=$!
    pids+=("$apid")
    wait "$bpid" || brc=$?
    t1=$EPOCHREALTIME
    wait "$apid" || arc=$?
    rz1=$(proc_cpu "$rz_pid")
    sleep 0.05 # the timestamping reader flushes its last lines
    t0=$(awk '$2 == "connected" { print $1; exit }' "$work/$a.err")
    tf=$(awk -v a="$a" '$2 == "peer=" a && $3 == "finished" { print $1; exit }' "$work/$b.err")
    path=$(sed -n 's/.* connected .*path=\([a-z-]*\).*/\1/p' "$work/$a.err" | head -n 1)
    got=$(wc -l <"$work/$b.out")
    if [ "$brc" -ne 0 ] || [ "$arc" -ne 0 ] || [ -z "$t0" ] || [ -z "$tf" ]; then
        echo "bulk path=$t run=$i FAILED: bob rc=$brc alice rc=$arc lines=$got/$lines;" \
            "alice: $(grep -v '^[0-9.]* identity' "$work/$a.err" | tail -n 2 | tr '\n' ' ')" \
            "bob: $(tail -n 2 "$work/$b.err" | tr '\n' ' ')"
        return
    fi
    if ! sed "s/^$a: //" "$work/$b.out" | cmp -s - "$work/input.txt"; then
        echo "bulk path=$t run=$i FAILED: bob's output differs from the input ($got/$lines lines)"
        return
    fi
    read -r au as <"$work/$a.time"
    read -r bu bs <"$work/$b.time"
    awk -v t="$t" -v p="$path" -v i="$i" -v t0="$t0" -v tf="$tf" -v t1="$t1" -v bytes="$text_bytes" \
        -v n="$lines" -v au="$au" -v as="$as" -v bu="$bu" -v bs="$bs" -v rz0="$rz0" -v rz1="$rz1" 'BEGIN {
        s = tf - t0; ac = au + as; bc = bu + bs; rc = rz1 - rz0
        printf "bulk path=%s transport=%s run=%d messages=%d mb=%.1f seconds=%.3f MBps=%.1f exit_s=%.3f cpu_alice_s=%.2f cpu_bob_s=%.2f cpu_rendezvous_s=%.2f\n",
            p, t, i, n, bytes / 1e6, s, bytes / 1e6 / s, t1 - t0, ac, bc, rc
    }'
    rm -f "$work/$b.out"
}

echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) cpus; $(lscpu | sed -n 's/^Model name: *//p')"
echo "# input: $lines lines of 1000 characters ($mb MB); rendezvous $server (relay limits off)"
for ((i = 1; i <= runs; i++)); do
    taskset -c 1 "$bindir/punchline-secure-bench" handshake 200 | sed "s/^/run=$i /"
    taskset -c 1 "$bindir/punchline-secure-bench" records 1024 "$secs" | sed "s/^/run=$i /"
    taskset -c 1 "$bindir/punchline-secure-bench" aead 1024 "$secs" | sed "s/^/run=$i /"
    for t in udp tcp relay; do
        bulk "$t" "$i"
    done
done | tee "$work/samples"

# Medians (of the runs that succeeded) per figure.
echo
echo "medians over $runs runs:"
awk '
function kv(k,   i, a) { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "" }
function add(key, v) { if (v != "") { n[key]++; val[key, n[key]] = v + 0 } }
/^run=[0-9]+ handshake / { add("handshake ms wall", kv("ms_wall")); add("handshake ms CPU (both sides)", kv("ms_cpu"));
    add("handshake ms CPU client", kv("ms_cpu_client")); add("handshake ms CPU server", kv("ms_cpu_server"));
    add("handshakes/s (one core)", kv("per_s")) }
/^run=[0-9]+ ecdsa / { add("ecdsa p256 ms CPU sign", kv("ms_cpu_sign")); add("ecdsa p256 ms CPU verify", kv("ms_cpu_verify")) }
/^run=[0-9]+ records / { add("records 1024 B MB/s (seal+open, one core)", kv("MBps"));
    add("records 1024 B us CPU/record", kv("us_cpu_per_record"));
    add("records 1024 B us CPU/record, seal", kv("us_seal")); add("records 1024 B us CPU/record, open", kv("us_open")) }
/^run=[0-9]+ aead / { add("aead " kv("alg") " 1024 B MB/s (seal+open)", kv("MBps"));
    add("aead " kv("alg") " 1024 B MB/s seal only", kv("seal_MBps")); add("aead " kv("alg") " 1024 B MB/s open only", kv("open_MBps")) }
/^bulk / && !/FAILED/ { add("bulk " kv("path") " MB/s", kv("MBps")); add("bulk " kv("path") " s to exit", kv("exit_s"));
    add("bulk " kv("path") " CPU s alice+bob+rendezvous per MB", (kv("cpu_alice_s") + kv("cpu_bob_s") + kv("cpu_rendezvous_s")) / kv("mb")) }
/FAILED/ { fail++ }
END {
    for (k in n) {
        m = n[k]
        for (i = 1; i <= m; i++) v[i] = val[k, i]
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { x = v[i]; v[i] = v[j]; v[j] = x }
        med = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
        printf "  %-52s %10.3f  (n=%d, min %.3f, max %.3f)\n", k, med, m, v[1], v[m]
    }
    if (fail) printf "  %d transfer(s) FAILED (see above)\n", fail
}' "$work/samples" | sort
