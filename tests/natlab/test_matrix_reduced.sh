#!/usr/bin/env bash
# tests/natlab/test_matrix_reduced.sh BINDIR
# The reduced NAT-type matrix CI runs: scripts/natlab-matrix.sh with one run
# per pair, over pairs that cover every NAT type of the lab at least once
# (the full matrix, every pair, is in docs/NATLAB.md). Passes when every pair
# ends on the path class it must (direct, direct-tcp or relay).
# Needs root; exits 77 (skip) otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../../scripts/natlab-matrix.sh" -b "${1:?usage: $0 BINDIR}" -n 1 \
    -p "pub:sym fw:pr fc:sym arc:sym pr:pr sym:sym dbl:pr noudp:fc rzudp:sym same:same hp:hp"
