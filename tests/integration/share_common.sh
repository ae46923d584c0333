# shellcheck shell=bash
# tests/integration/share_common.sh - helpers for the punchline-share tests
# (tests/integration/test_share_loopback.sh, tests/natlab/test_share.sh), on
# top of the chat harness (chat_common.sh: chat_spawn, chat_wait_*, logs,
# cleanup). Source it after loopback_test.sh or lab_test.sh.
#
# One transfer is named by an ID: the receiver runs as role ID-recv with the
# peer name ID-bob, the sender as role ID-send with the name ID-alice; logs
# are $CHAT_WORK/ID-recv.{out,err} and ID-send.{out,err}; each role has its
# own identity key.
#
#   share_start_recv ID WHERE RZ OUTDIR [ARGS...]   # and wait for "registered"
#   share_start_send ID WHERE RZ FILE [ARGS...]
#   share_wait ID SECONDS                           # both exited (CHAT_RC)
#   share_wait_failed ID SECONDS                    # both exited 1, no final line
#   share_check_ok ID FILE OUTDIR PATH_RE           # exit 0, lines, hashes
#   share_transfer ID SEND_WHERE RECV_WHERE RZ FILE OUTDIR PATH_RE [SEND_ARGS...]
#       all of the above for one transfer (SHARE_RECV_ARGS: more recv options)
#
# Bounds (seconds): SHARE_T_REGISTER for the receiver's registration,
# SHARE_T_XFER for a whole transfer (default 60; a big lossy one sets more).

SHARE_T_REGISTER=${SHARE_T_REGISTER:-10}
SHARE_T_XFER=${SHARE_T_XFER:-60}
SHARE_BIN=""

# share_setup: the punchline-share binary next to the others.
share_setup() {
    SHARE_BIN="$CHAT_BIN_DIR/punchline-share"
    if [ ! -x "$SHARE_BIN" ]; then
        echo "ERROR: $SHARE_BIN not found or not executable" >&2
        exit 2
    fi
    # the transfers outlive the chat harness's default hard bound
    CHAT_T_HARD=$((SHARE_T_XFER + 60))
}

# share_random_file PATH MIB: MIB MiB of random bytes.
share_random_file() {
    head -c "$(($2 * 1048576))" /dev/urandom >"$1"
}

share_start_recv() {
    local id=$1 where=$2 rz=$3 out=$4
    shift 4
    chat_spawn "$where" "$id-recv" /dev/null "$SHARE_BIN" recv --server "$rz" --name "$id-bob" \
        --out "$out" --timeout "$SHARE_T_XFER" --identity "$CHAT_WORK/$id-bob.pem" "$@"
    chat_wait_grep "$id-recv" err '^registered ' "$SHARE_T_REGISTER"
}

share_start_send() {
    local id=$1 where=$2 rz=$3 file=$4
    shift 4
    chat_spawn "$where" "$id-send" /dev/null "$SHARE_BIN" send "$file" --server "$rz" \
        --name "$id-alice" --peer "$id-bob" --timeout 30 --identity "$CHAT_WORK/$id-alice.pem" "$@"
}

# share_wait ID SECONDS: 0 if both sides exited in time.
share_wait() {
    local ok=0
    chat_wait_exit "$1-send" "$2" || ok=1
    chat_wait_exit "$1-recv" 10 || ok=1
    return "$ok"
}

# share_wait_failed ID SECONDS: both sides exit 1 within SECONDS and print
# no final line; chat_fail (and 1) otherwise.
share_wait_failed() {
    local id=$1
    if ! share_wait "$id" "$2"; then
        chat_fail "$id: still running after ${2}s"
    elif [ "${CHAT_RC[$id-send]}" != 1 ] || [ "${CHAT_RC[$id-recv]}" != 1 ]; then
        chat_fail "$id: exit status send=${CHAT_RC[$id-send]} recv=${CHAT_RC[$id-recv]} (want 1, 1)"
    elif [ -s "$CHAT_WORK/$id-send.out" ] || [ -s "$CHAT_WORK/$id-recv.out" ]; then
        chat_fail "$id: a final line on stdout although the transfer failed"
    else
        return 0
    fi
    return 1
}

# share_final ROLE WORD NAME PATH_RE: ROLE's stdout is exactly one line
# "WORD NAME bytes=N sha256=HEX path=PATH MBps=X" with PATH matching
# PATH_RE; prints "N HEX PATH MBPS".
share_final() {
    local out="$CHAT_WORK/$1.out" re line
    re="^$2 $3 bytes=([0-9]+) sha256=([0-9a-f]{64}) path=($4) MBps=([0-9]+\.[0-9]+)\$"
    [ "$(wc -l <"$out")" -eq 1 ] || return 1
    line=$(cat "$out")
    [[ $line =~ $re ]] || return 1
    echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]} ${BASH_REMATCH[3]} ${BASH_REMATCH[4]}"
}

# share_check_ok ID FILE OUTDIR PATH_RE: both exited 0, both final lines are
# right, both hashes are the file's, and OUTDIR holds an identical copy.
share_check_ok() {
    local id=$1 file=$2 out=$3 path_re=$4 name want size s r
    local s_bytes s_hash s_path s_mbps r_bytes r_hash r_path r_mbps
    name=$(basename "$file")
    want=$(sha256sum <"$file" | cut -d' ' -f1)
    size=$(stat -c %s "$file")
    if [ "${CHAT_RC[$id-send]:-x}" != 0 ] || [ "${CHAT_RC[$id-recv]:-x}" != 0 ]; then
        chat_fail "$id: exit status send=${CHAT_RC[$id-send]:-running} recv=${CHAT_RC[$id-recv]:-running} (want 0, 0)"
        return 1
    fi
    if ! s=$(share_final "$id-send" sent "$name" "$path_re"); then
        chat_fail "$id: sender's stdout is not one 'sent $name ... path=($path_re) ...' line: $(head -c 300 "$CHAT_WORK/$id-send.out")"
        return 1
    fi
    if ! r=$(share_final "$id-recv" received "$name" "$path_re"); then
        chat_fail "$id: receiver's stdout is not one 'received $name ... path=($path_re) ...' line: $(head -c 300 "$CHAT_WORK/$id-recv.out")"
        return 1
    fi
    read -r s_bytes s_hash s_path s_mbps <<<"$s"
    read -r r_bytes r_hash r_path r_mbps <<<"$r"
    if [ "$s_bytes" != "$size" ] || [ "$r_bytes" != "$size" ]; then
        chat_fail "$id: bytes sent=$s_bytes received=$r_bytes, file has $size"
        return 1
    fi
    if [ "$s_hash" != "$want" ] || [ "$r_hash" != "$want" ]; then
        chat_fail "$id: sha256 sent=$s_hash received=$r_hash, sha256sum says $want"
        return 1
    fi
    if ! cmp -s "$file" "$out/$name"; then
        chat_fail "$id: $out/$name differs from $file"
        return 1
    fi
    if [ -e "$out/.$name.punchline-part" ]; then
        chat_fail "$id: the part file $out/.$name.punchline-part is still there"
        return 1
    fi
    chat_pass "$id: $size bytes over $s_path (sender), $r_path (receiver), sha256 $want, $s_mbps MB/s"
}

# share_transfer ID SEND_WHERE RECV_WHERE RZ FILE OUTDIR PATH_RE [SEND_ARGS...]
# A whole transfer that must succeed; its duration in SHARE_SECONDS.
share_transfer() {
    local id=$1 swhere=$2 rwhere=$3 rz=$4 file=$5 out=$6 path_re=$7 t0
    shift 7
    local rargs=()
    read -ra rargs <<<"${SHARE_RECV_ARGS:-}"
    SHARE_SECONDS=""
    if ! share_start_recv "$id" "$rwhere" "$rz" "$out" "${rargs[@]}"; then
        chat_fail "$id: receiver did not register within ${SHARE_T_REGISTER}s"
        return 1
    fi
    t0=$(date +%s%N)
    share_start_send "$id" "$swhere" "$rz" "$file" "$@"
    if ! share_wait "$id" "$SHARE_T_XFER"; then
        chat_fail "$id: transfer not finished within ${SHARE_T_XFER}s"
        return 1
    fi
    SHARE_SECONDS=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
    chat_log "info: $id: both sides exited after ${SHARE_SECONDS}s"
    share_check_ok "$id" "$file" "$out" "$path_re"
}

# share_part_size OUTDIR NAME: bytes in the part file (0 if none).
share_part_size() {
    stat -c %s "$1/.$2.punchline-part" 2>/dev/null || echo 0
}

# share_interrupt ID SEND_WHERE RECV_WHERE RZ FILE OUTDIR MIN_BYTES [SEND_ARGS...]
# Start a transfer, SIGKILL the sender once the receiver's part file holds
# MIN_BYTES, and check the receiver then gives up (exit 1) and keeps a part
# file that is neither empty nor complete. Prints nothing; chat_fail on error.
share_interrupt() {
    local id=$1 swhere=$2 rwhere=$3 rz=$4 file=$5 out=$6 min=$7 name size have deadline
    shift 7
    name=$(basename "$file")
    size=$(stat -c %s "$file")
    if ! share_start_recv "$id" "$rwhere" "$rz" "$out" --keepalive 1 --path-timeout 3; then
        chat_fail "$id: receiver did not register"
        return 1
    fi
    share_start_send "$id" "$swhere" "$rz" "$file" "$@"
    deadline=$((SECONDS + SHARE_T_XFER))
    while [ "$(share_part_size "$out" "$name")" -lt "$min" ]; do
        if [ "$SECONDS" -ge "$deadline" ] || ! _chat_alive "$id-send"; then
            chat_fail "$id: the part file never reached $min bytes before the sender ended"
            return 1
        fi
        sleep 0.05
    done
    # the timeout wrapper's child is the sender: kill that one, hard
    pkill -KILL -P "${CHAT_PID[$id-send]}" punchline-share || true
    chat_wait_exit "$id-send" 10 || true
    if ! chat_wait_exit "$id-recv" 20; then
        chat_fail "$id: receiver still running 20 s after the sender was killed"
        return 1
    fi
    have=$(share_part_size "$out" "$name")
    if [ "${CHAT_RC[$id-recv]}" != 1 ]; then
        chat_fail "$id: receiver exited ${CHAT_RC[$id-recv]} after losing its sender (want 1)"
    elif ! grep -q "bytes kept in $out/.$name.punchline-part" "$CHAT_WORK/$id-recv.err"; then
        chat_fail "$id: receiver did not say what it kept"
    elif [ "$have" -le 0 ] || [ "$have" -ge "$size" ]; then
        chat_fail "$id: part file has $have of $size bytes: not interrupted mid-way"
    elif [ -e "$out/$name" ]; then
        chat_fail "$id: $out/$name exists after an interrupted transfer"
    else
        chat_pass "$id: sender killed mid-way; the receiver exited 1 and kept $have of $size bytes"
        return 0
    fi
    return 1
}

# share_check_resumed ID: both sides logged "resume name=... offset=N" with
# N > 0 (the same N).
share_check_resumed() {
    local id=$1 a b
    a=$(sed -n 's/^resume name=.* offset=\([0-9]*\) of bytes=.*/\1/p' "$CHAT_WORK/$id-send.err")
    b=$(sed -n 's/^resume name=.* offset=\([0-9]*\) of bytes=.*/\1/p' "$CHAT_WORK/$id-recv.err")
    if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" -gt 0 ]; then
        chat_pass "$id: resumed at offset $a"
        return 0
    fi
    chat_fail "$id: no matching 'resume ... offset=N>0' lines (sender '$a', receiver '$b')"
    return 1
}
