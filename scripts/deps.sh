#!/usr/bin/env bash
# scripts/deps.sh - make sure the Debian packages needed to build punchline
# and run its tests are installed.
#
# Runnable (./scripts/deps.sh) or sourceable (. scripts/deps.sh); either way
# it only calls apt-get when something is missing, and then runs
# `apt-get update` once before installing. Not root and something missing:
# prints the command to run and fails (exit/return 1).
# PL_SKIP_DEPS=1 skips the check entirely (e.g. non-Debian hosts).

PL_DEPS_PACKAGES=(
    build-essential cmake pkg-config                     # toolchain
    libev-dev libprotobuf-c-dev protobuf-c-compiler      # event loop, wire format
    libmbedtls-dev                                       # crypto
    libcriterion-dev                                     # unit tests
    iproute2 nftables iptables conntrack                 # NAT lab (tests/natlab)
    libnetfilter-queue-dev                               # NAT lab delay line natlab-nfq-delay (NFQUEUE; no netem here)
    python3                                              # NAT-lab self-test probes
    coturn                                               # turnutils_stunclient: STUN interop test
    tcpdump                                              # security lab test: no plaintext on the wire
    openssl                                              # test CA and certificate for control-connection TLS
)

# pl_deps_missing: print the packages that are not installed, one per line.
pl_deps_missing() {
    local pkg status
    for pkg in "${PL_DEPS_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        if [ "$status" != installed ]; then
            printf '%s\n' "$pkg"
        fi
    done
}

# pl_deps_ensure: install what is missing (root) or explain (not root).
pl_deps_ensure() {
    if [ "${PL_SKIP_DEPS:-0}" = 1 ]; then
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "deps.sh: not a Debian-like system (no dpkg-query); install the equivalents of:" >&2
        echo "  ${PL_DEPS_PACKAGES[*]}" >&2
        echo "deps.sh: continuing without checking" >&2
        return 0
    fi
    local missing
    missing=$(pl_deps_missing | tr '\n' ' ')
    missing=${missing% }
    if [ -z "$missing" ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps.sh: missing packages: $missing" >&2
        echo "deps.sh: run as root:" >&2
        echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $missing" >&2
        return 1
    fi
    echo "deps.sh: installing: $missing"
    # shellcheck disable=SC2086 # $missing is a space-separated package list
    apt-get update &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
}

# Sourced: run the check but leave the caller's shell options alone and
# return instead of exiting. Executed: strict mode and exit.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    pl_deps_ensure
    return $?
fi
set -euo pipefail
pl_deps_ensure
