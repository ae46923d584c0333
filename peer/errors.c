#include "punchline/punchline.h"

PL_API const char *pl_strerror(int err)
{
    switch (err) {
    case PL_OK: return "success";
    case PL_ERR_INVALID: return "invalid argument or configuration";
    case PL_ERR_NOMEM: return "out of memory";
    case PL_ERR_SYSTEM: return "system call failed";
    case PL_ERR_RESOLVE: return "cannot resolve the rendezvous host name";
    case PL_ERR_SERVER: return "rendezvous server unreachable or connection lost";
    case PL_ERR_UNKNOWN_PEER: return "unknown peer (not registered at the rendezvous)";
    case PL_ERR_NAME_IN_USE: return "name is in use at the rendezvous";
    case PL_ERR_BAD_VERSION: return "protocol version mismatch";
    case PL_ERR_PROTOCOL: return "malformed message from the other side";
    case PL_ERR_RATE_LIMITED: return "rate limited by the rendezvous";
    case PL_ERR_TIMEOUT: return "not connected within the timeout";
    case PL_ERR_PUNCH_FAILED: return "hole punching failed: no direct path";
    case PL_ERR_PATH_DEAD: return "the path stopped answering";
    case PL_ERR_CLOSED: return "connection closed";
    case PL_ERR_AGAIN: return "send queue full, try again after on_writable";
    case PL_ERR_UNSUPPORTED: return "transport not available (see the log)";
    case PL_ERR_STATE: return "not allowed in the current state";
    case PL_ERR_TOO_BIG: return "message too large";
    case PL_ERR_BAD_NAME: return "bad name (1-63 characters of A-Z a-z 0-9 . _ -)";
    case PL_ERR_SERVER_FULL: return "rendezvous server is full";
    case PL_ERR_IDENTITY: return "identity key file unusable (see the log)";
    case PL_ERR_AUTH: return "authentication failed: wrong key or certificate";
    case PL_ERR_ACCESS: return "the rendezvous refused our key or access token";
    default: return "unknown error";
    }
}

PL_API const char *pl_path_name(int kind)
{
    switch (kind) {
    case PL_PATH_DIRECT_UDP: return "direct-udp";
    case PL_PATH_DIRECT_TCP: return "direct-tcp";
    case PL_PATH_RELAY_UDP: return "relay-udp";
    case PL_PATH_RELAY_TCP: return "relay-tcp";
    default: return "none";
    }
}
