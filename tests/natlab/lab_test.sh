# tests/natlab/lab_test.sh - the common start of every NAT-lab chat test:
#   . "$(cd "$(dirname "$0")" && pwd)/lab_test.sh" "${1:-}"
# Sources lib.sh and the chat harness, installs the traps that clean up the
# lab and its processes on any exit, skips (exit 77) without root or network
# namespaces, and takes the binary directory from the first argument.
# shellcheck shell=bash
_lab_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$_lab_here/lib.sh"
# shellcheck source=../integration/chat_common.sh
. "$_lab_here/../integration/chat_common.sh"

trap chat_finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE
if ! natlab_init; then
    echo "SKIP: needs root and network namespaces"
    exit 77
fi
chat_setup "${1:-}"
