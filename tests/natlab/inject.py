#!/usr/bin/env python3
"""tests/natlab/inject.py - a third host attacking a punched session.

    inject.py FROM_IP:PORT TO_IP:PORT SESSION_HEX ROUNDS [relay]

Sends, from FROM (bound with IP_FREEBIND + IP_TRANSPARENT, so it may be another host's
address: spoofing the peer's public endpoint), to TO, ROUNDS times each:
plain Data with text "INJECTED-n" (what an unencrypted protocol would
deliver), plain Close, plain Ack, Probe requests and responses with a bad
MAC (one nominating, one claiming a mapped address), and Secure envelopes
with garbage DTLS records (handshake and application-data content types).
Every message carries the real session id.  With "relay", every datagram
is wrapped in the relay header (0x0D, session id) as the rendezvous sends
relay-udp traffic: spoof FROM = the rendezvous to attack the relay path.
The receiving peer must ignore all of it.  Encodes protobuf by hand (docs/PROTOCOL.md, proto/punchline.proto)
so it needs nothing but the standard library.
"""
import os
import socket
import struct
import sys
import time

MARKER = b"\x0c"
IP_FREEBIND = 15
IP_TRANSPARENT = 19  # lets the route lookup accept a foreign source (needs CAP_NET_ADMIN)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wt):
    return varint(field << 3 | wt)


def f_varint(field, n):
    return key(field, 0) + varint(n)


def f_fixed64(field, n):
    return key(field, 1) + struct.pack("<Q", n)


def f_bytes(field, b):
    return key(field, 2) + varint(len(b)) + b


def envelope(field, body):
    return MARKER + f_varint(1, 1) + f_bytes(field, body)


def endpoint(ip, port):
    return f_bytes(1, socket.inet_aton(ip)) + f_varint(2, port)


def messages(sid, n, from_ip):
    data = f_fixed64(1, sid) + f_varint(2, n) + f_bytes(3, b"INJECTED-%d" % n) + f_varint(4, 1)
    yield "data", envelope(31, data)
    # Data with seq 0..: a receiver without authentication would deliver it
    data0 = f_fixed64(1, sid) + f_bytes(3, b"INJECTED-seq0") + f_varint(4, 1)
    yield "data0", envelope(31, data0)
    yield "ack", envelope(32, f_fixed64(1, sid) + f_varint(2, 1000000))
    yield "close", envelope(19, f_fixed64(1, sid) + f_bytes(2, b"INJECTED close"))
    mac = os.urandom(16)
    req = f_fixed64(1, sid) + f_fixed64(2, n + 1) + f_varint(4, 1) + f_varint(5, 2) + f_bytes(7, mac)
    yield "probe-nominate", envelope(30, req)
    resp = (f_fixed64(1, sid) + f_fixed64(2, n + 7) + f_varint(3, 1) + f_varint(4, 1) +
            f_varint(5, 1) + f_bytes(6, endpoint(from_ip, 4444)) + f_bytes(7, mac))
    yield "probe-response", envelope(30, resp)
    for ctype, epoch in ((22, 0), (23, 1), (21, 1)):
        rec = bytes([ctype]) + b"\xfe\xfd" + struct.pack(">H", epoch) + os.urandom(6)
        payload = os.urandom(40)
        rec += struct.pack(">H", len(payload)) + payload
        yield "secure-%d" % ctype, envelope(33, f_fixed64(1, sid) + f_bytes(2, rec))


def main():
    if len(sys.argv) not in (5, 6) or (len(sys.argv) == 6 and sys.argv[5] != "relay"):
        sys.stderr.write(__doc__)
        return 2
    fip, fport = sys.argv[1].rsplit(":", 1)
    tip, tport = sys.argv[2].rsplit(":", 1)
    sid = int(sys.argv[3], 16)
    rounds = int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((fip, int(fport)))
    sent = 0
    relay = len(sys.argv) == 6
    for n in range(rounds):
        for _, dgram in messages(sid, n, fip):
            if relay:
                dgram = b"\x0d" + struct.pack(">Q", sid) + dgram
            s.sendto(dgram, (tip, int(tport)))
            sent += 1
        time.sleep(0.01)
    print("injected %d %sdatagrams from %s to %s for session %016x" %
          (sent, "relay-wrapped " if relay else "", sys.argv[1], sys.argv[2], sid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
