#!/usr/bin/env bash
# tests/integration/test_control_tls.sh BINDIR
# The control connection over TLS and the rendezvous' access tokens, end to
# end on 127.0.0.1 with the real binaries (no root needed):
#  - --tls-key alone: self-signed; peers pinning --show-fingerprint register
#    and chat; --tls-required refuses a plaintext peer; a wrong fingerprint
#    is refused; all with exit 1 and a clear reason.
#  - --tls-cert from a CA (made here with openssl, skipped without it):
#    --tls-ca with the right CA and host name works; another CA or another
#    host name is refused.
#  - --auth-secret: without a token, with another name's token, with an
#    expired one: refused; with a minted token: registered.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=loopback_test.sh
. "$here/loopback_test.sh" "${1:-}"
rz_bin="$CHAT_BIN_DIR/punchline-rendezvous"
chat_bin="$CHAT_BIN_DIR/punchline-chat"
W=$CHAT_WORK

# start_rz ROLE OPTIONS...: a rendezvous on a free port; sets $port.
start_rz() {
    local role=$1 p attempt
    shift
    for attempt in 1 2 3 4 5 6 7 8; do
        p=$(shuf -i 20000-60000 -n 1)
        _chat_ss - "$p" && continue
        if chat_start_rendezvous - 127.0.0.1 "$p" "$role" "$@"; then
            port=$p
            return 0
        fi
        chat_stop "$role" || true
        unset "CHAT_RC[$role]"
    done
    return 1
}

# expect_refused ROLE PATTERN ARGS...: punchline-chat exits 1 within 15 s
# and its stderr matches PATTERN.
expect_refused() {
    local role=$1 pat=$2
    shift 2
    chat_spawn - "$role" /dev/null "$chat_bin" --identity "$W/$role.pem" --timeout 10 "$@"
    if chat_wait_exit "$role" 15 && [ "${CHAT_RC[$role]}" = 1 ] && grep -Eq -- "$pat" "$W/$role.err"; then
        chat_pass "$role refused: $(grep -E -m1 -- "$pat" "$W/$role.err")"
    else
        chat_fail "$role: want exit 1 and /$pat/, got exit ${CHAT_RC[$role]:-running}: $(tr '\n' ' ' <"$W/$role.err")"
    fi
}

# ---- self-signed TLS, pinned fingerprint -------------------------------------
fp=$("$rz_bin" --tls-key "$W/rz.pem" --show-fingerprint)
if [[ $fp =~ ^[a-z2-7]{52}$ ]] && [ "$(stat -c %a "$W/rz.pem")" = 600 ]; then
    chat_pass "--show-fingerprint created the key (0600) and printed $fp"
else
    chat_fail "--show-fingerprint: '$fp'"
fi
start_rz rz1 --tls-key "$W/rz.pem" --tls-required || { chat_fail "rendezvous with TLS did not start"; exit 1; }
RZ=127.0.0.1:$port
chat_start_chat - bob --server "$RZ" --name bob --tls-fingerprint "$fp" --timeout 20
chat_wait_grep bob err registered 10 || chat_fail "bob did not register over TLS"
chat_start_chat - alice --server "$RZ" --name alice --peer bob --tls-fingerprint "$fp" --timeout 20
if chat_wait_grep alice err '^connected peer=bob ' 15 && chat_wait_grep bob err '^connected peer=alice ' 5; then
    chat_pass "alice and bob registered over TLS and connected"
else
    chat_fail "no connection over a TLS-registered pair"
fi
chat_send alice "over tls"
chat_wait_lines bob 1 10 && grep -qx "alice: over tls" "$W/bob.out" && chat_pass "bob got alice's line" ||
    chat_fail "bob did not get alice's line"
chat_close alice
chat_close bob
for r in alice bob; do
    chat_wait_exit "$r" 10 && [ "${CHAT_RC[$r]}" = 0 ] && chat_pass "$r exited 0" ||
        chat_fail "$r exit ${CHAT_RC[$r]:-running}"
done
if grep -q "TLS required on the control connection; fingerprint $fp" "$W/rz1.err"; then
    chat_pass "the server logs its fingerprint"
else
    chat_fail "the server does not log 'TLS required ... fingerprint $fp'"
fi
expect_refused plain "requires TLS" --server "$RZ" --name carol
other=$("$chat_bin" --show-id --identity "$W/other.pem")
expect_refused wrongfp "not the pinned fingerprint" --server "$RZ" --name dave --tls-fingerprint "$other"
chat_stop rz1 || true

# ---- a CA-issued certificate ---------------------------------------------------
if command -v openssl >/dev/null; then
    mkca() { # mkca NAME: a CA key and self-signed certificate
        openssl ecparam -name prime256v1 -genkey -noout -out "$W/$1.key" 2>/dev/null &&
            openssl req -x509 -new -key "$W/$1.key" -subj "/CN=$1" -days 2 -out "$W/$1.crt" 2>/dev/null
    }
    if mkca ca && mkca otherca &&
        openssl ecparam -name prime256v1 -genkey -noout -out "$W/srv.key" 2>/dev/null &&
        openssl req -new -key "$W/srv.key" -subj "/CN=localhost" -out "$W/srv.csr" 2>/dev/null &&
        printf 'subjectAltName=DNS:localhost\n' >"$W/ext" &&
        openssl x509 -req -in "$W/srv.csr" -CA "$W/ca.crt" -CAkey "$W/ca.key" -CAcreateserial \
            -days 2 -extfile "$W/ext" -out "$W/srv.crt" 2>/dev/null; then
        start_rz rz2 --tls-cert "$W/srv.crt" --tls-key "$W/srv.key" || chat_fail "rendezvous with a CA certificate did not start"
        chat_start_chat - erin --server "localhost:$port" --name erin --tls-ca "$W/ca.crt" --timeout 20
        if chat_wait_grep erin err registered 10; then
            chat_pass "erin registered with --tls-ca (chain and host name verified)"
        else
            chat_fail "erin did not register with the right CA"
        fi
        chat_stop erin || true
        expect_refused wrongca "certificate rejected" --server "localhost:$port" --name frank --tls-ca "$W/otherca.crt"
        expect_refused wrongname "certificate rejected.*(CN|name)" --server "127.0.0.1:$port" --name gina --tls-ca "$W/ca.crt"
        # TLS is offered, not required here: a plaintext peer still registers
        chat_start_chat - henry --server "127.0.0.1:$port" --name henry --timeout 20
        chat_wait_grep henry err registered 10 && chat_pass "plaintext peer registers where TLS is only offered" ||
            chat_fail "plaintext henry did not register"
        chat_stop henry || true
        chat_stop rz2 || true
    else
        chat_fail "openssl could not make the test certificates"
    fi
else
    chat_log "SKIP (part): openssl not installed, CA mode not tested"
fi

# ---- access tokens -----------------------------------------------------------
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$W/secret"
chmod 600 "$W/secret"
start_rz rz3 --auth-secret "$W/secret" || { chat_fail "rendezvous with --auth-secret did not start"; exit 1; }
RZ=127.0.0.1:$port
tok=$("$rz_bin" --auth-secret "$W/secret" --mint-token ivan --token-ttl 600)
tok_other=$("$rz_bin" --auth-secret "$W/secret" --mint-token judy --token-ttl 600)
if [[ $tok =~ ^[1-9][0-9]*\.[0-9a-f]{32}$ ]]; then chat_pass "minted token $tok"; else chat_fail "bad token '$tok'"; fi
expect_refused notoken "access token: missing token" --server "$RZ" --name ivan
expect_refused othertoken "access token: token does not match" --server "$RZ" --name ivan --token "$tok_other"
tok_old=$("$rz_bin" --auth-secret "$W/secret" --mint-token ivan --token-ttl 1)
sleep 2.1
expect_refused oldtoken "access token: token expired" --server "$RZ" --name ivan --token "$tok_old"
forged="9999999999.${tok#*.}" # a later expiry with the MAC of another
expect_refused forged "access token: token does not match" --server "$RZ" --name ivan --token "$forged"
chat_start_chat - ivan --server "$RZ" --name ivan --token "$tok" --timeout 20
chat_wait_grep ivan err registered 10 && chat_pass "ivan registered with his token" ||
    chat_fail "ivan did not register with a valid token"
chat_stop ivan || true
chat_stop rz3 || true
chat_exit
