# tests/integration/loopback_test.sh - the common start of every loopback
# chat test (no root needed):
#   . "$(cd "$(dirname "$0")" && pwd)/loopback_test.sh" "${1:-}"
# Sources the chat harness, installs the traps that clean up its processes
# on any exit, and takes the binary directory from the first argument.
# (tests/natlab/lab_test.sh is the same for NAT-lab tests.)
# shellcheck shell=bash
_lb_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=chat_common.sh
. "$_lb_here/chat_common.sh"

trap chat_finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE
chat_setup "${1:-}"
