# bench/lib.sh - helpers the loopback benchmarks share; source it.
# Uses (and sets) the caller's globals bindir, work, srv_pid.
# shellcheck shell=bash

# bench_cpu_ticks PID: user + system CPU of PID, in clock ticks.
bench_cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# bench_free_port: a port nobody uses on 127.0.0.1 (TCP or UDP), and the one
# above it (coturn's alternate port), below the ephemeral range
# (32768-60999) so no client socket can take it meanwhile.
bench_free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        [ -z "$(ss -Htuan "sport = :$p")" ] && [ -z "$(ss -Htuan "sport = :$((p + 1))")" ] &&
            { echo "$p"; return; }
    done
}

# bench_wait_listen PORT t|u: until a TCP listener (t) or UDP socket (u) is
# bound to PORT; 1 after 5 s.
bench_wait_listen() {
    local _
    for _ in $(seq 50); do
        [ -n "$(ss -H"$2"ln "sport = :$1")" ] && return 0
        sleep 0.1
    done
    return 1
}

# bench_start_server punchline|coturn PORT: a server pinned to core 0 on
# 127.0.0.1:PORT (TCP and UDP), its pid in srv_pid.  punchline runs without
# its per-source limits: one load generator is one source address.
bench_start_server() {
    if [ "$1" = coturn ]; then
        taskset -c 0 turnserver -n --listening-ip=127.0.0.1 --listening-port="$2" \
            --relay-ip=127.0.0.1 --no-tls --no-dtls --no-cli -m 1 --simple-log \
            --log-file="$work/turn.log" --no-stdout-log >/dev/null 2>&1 &
    else
        taskset -c 0 "$bindir/punchline-rendezvous" --listen "127.0.0.1:$2" --log-level warn \
            --per-ip-rate 1000000 --per-ip-pending 100000 2>"$work/rz.err" &
    fi
    srv_pid=$!
    bench_wait_listen "$2" t || {
        echo "$1 did not start" >&2
        cat "$work"/*.err "$work"/*.log >&2 2>/dev/null
        exit 1
    }
}

# bench_wait_grep FILE ERE TENTHS: until FILE has a line matching ERE;
# 1 after TENTHS tenths of a second.
bench_wait_grep() {
    local i
    for ((i = 0; i < $3; i++)); do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# bench_lab_rendezvous [ARGS...]: punchline-rendezvous (with ARGS) in the
# NAT lab's internet (203.0.113.1:7350, tests/natlab/lib.sh), stderr in
# $work/rz.err, pid in rz_pid; exits the script if it does not start.
bench_lab_rendezvous() {
    natlab_exec inet "$bindir/punchline-rendezvous" --listen 203.0.113.1:7350 "$@" 2>"$work/rz.err" &
    rz_pid=$!
    bench_wait_grep "$work/rz.err" listening 50 ||
        { echo "rendezvous did not start:" >&2; cat "$work/rz.err" >&2; exit 1; }
}
