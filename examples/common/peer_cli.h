/* The command line both example tools share: the options that set up a
 * pl_peer (--server, --name, --identity, --token, TLS, --stun, timers, -v,
 * --show-id, --peer-id), their checks and error messages, the pl_peer_config
 * they fill, and the log callback that prints the library's lines.
 *
 * A tool lists PEER_CLI_LONG_OPTIONS and PEER_CLI_SHORT_OPTIONS next to its
 * own options and loops over peer_cli_getopt(), which takes the common ones
 * and hands it only its own.  Errors go to stderr as
 * "<prog>: ..."; the functions return the tool's exit status for them (2:
 * usage, 1: failure), so each tool keeps its own order of checks.
 */
#ifndef EXAMPLES_PEER_CLI_H
#define EXAMPLES_PEER_CLI_H

#include <getopt.h>
#include <stdbool.h>

#include "punchline/punchline.h"

/* getopt_long codes of the long-only options: above every character, so
 * they never collide with a tool's short options (share's -f is --force). */
enum {
    PEER_CLI_O_KEEPALIVE = 256,
    PEER_CLI_O_PATH_TIMEOUT,
    PEER_CLI_O_SHOW_ID,
    PEER_CLI_O_PEER_ID,
    PEER_CLI_O_TOKEN,
    PEER_CLI_O_TLS_CA,
    PEER_CLI_O_TLS_FP,
    PEER_CLI_O_STUN,
};

#define PEER_CLI_SHORT_OPTIONS "s:n:T:i:v"
/* Entries of a struct option table: a tool lists its own first (glibc names
 * the candidates of an ambiguous abbreviation in table order), then these,
 * then --help and the end. */
#define PEER_CLI_LONG_OPTIONS                                                   \
    {"server", required_argument, 0, 's'},                                      \
    {"name", required_argument, 0, 'n'},                                        \
    {"timeout", required_argument, 0, 'T'},                                     \
    {"verbose", no_argument, 0, 'v'},                                           \
    {"keepalive", required_argument, 0, PEER_CLI_O_KEEPALIVE},                  \
    {"path-timeout", required_argument, 0, PEER_CLI_O_PATH_TIMEOUT},            \
    {"identity", required_argument, 0, 'i'},                                    \
    {"show-id", no_argument, 0, PEER_CLI_O_SHOW_ID},                            \
    {"peer-id", required_argument, 0, PEER_CLI_O_PEER_ID},                      \
    {"token", required_argument, 0, PEER_CLI_O_TOKEN},                          \
    {"tls-ca", required_argument, 0, PEER_CLI_O_TLS_CA},                        \
    {"tls-fingerprint", required_argument, 0, PEER_CLI_O_TLS_FP},               \
    {"stun", required_argument, 0, PEER_CLI_O_STUN}

/* Help lines the tools print word for word alike; the rest of each help
 * says things its own way (chat explains more, share is terser). */
#define PEER_CLI_HELP_SERVER_NAME                                               \
    "  -s, --server HOST:PORT   rendezvous server (required)\n"                 \
    "  -n, --name NAME          this peer's name: 1-63 of A-Z a-z 0-9 . _ - (required)\n"
#define PEER_CLI_HELP_TRANSPORT                                                 \
    "  -t, --transport T        auto (default): start on the rendezvous relay, punch\n" \
    "                           UDP and TCP at the same time, move to the direct path\n" \
    "                           once it works; udp or tcp: that hole punching only;\n" \
    "                           relay: the rendezvous relay only\n"
#define PEER_CLI_HELP_IDENTITY                                                  \
    "  -i, --identity FILE      identity key (ECDSA P-256, PEM), created with mode 0600\n" \
    "                           if missing (default $XDG_CONFIG_HOME/punchline/\n" \
    "                           identity.pem, else ~/.config/punchline/identity.pem)\n"
#define PEER_CLI_HELP_TOKEN                                                     \
    "      --token TOKEN        access token for a rendezvous run with --auth-secret\n"

typedef struct peer_cli {
    const char *prog;            /* "punchline-chat": the prefix of every error */
    /* the strings below point into argv */
    const char *server, *name;   /* required (except for --show-id) */
    const char *identity;        /* --identity; the default path after peer_cli_identity() */
    const char *peer_id;         /* --peer-id: pinned key, NULL = trust the rendezvous */
    const char *token, *tls_ca, *tls_fp, *stun;
    unsigned long keepalive_s, path_timeout_s; /* 0 = the library's default */
    double timeout_s;            /* --timeout, else what peer_cli_init() was given */
    bool timeout_set;            /* --timeout was given (share's recv waits forever otherwise) */
    bool show_id;
    int verbosity;               /* PL_LOG_WARN, one level more per -v */
    /* Where the library's log lines go (one line, no newline), so that a tool
     * can keep its prompt or progress bar intact; NULL = plain stderr. */
    void (*print)(const char *line, void *user);
    void *print_user;
    char id[PL_ID_LEN + 1];      /* our id, once peer_cli_identity() read the key */
    char idpath[1024];           /* storage for the default identity path */
} peer_cli;

/* Defaults: warnings only, timeout_s (the tool's default --timeout). */
void peer_cli_init(peer_cli *o, const char *prog, double timeout_s);

/* One option from getopt_long (c, and optarg as arg): 1 if it was a common
 * option and taken, 0 if it is not common (the tool's own switch goes on),
 * -1 if its value is bad (said on stderr: exit 2). */
int peer_cli_option(peer_cli *o, int c, const char *arg);

/* getopt_long() over argv that takes the common options itself: returns the
 * next option that is the tool's own (its code, optarg set, '?' for an
 * unknown one as usual), -1 at the end (optind at the first operand), or
 * PEER_CLI_BAD after a common option's bad value was said (exit 2). */
#define PEER_CLI_BAD (-2)
int peer_cli_getopt(peer_cli *o, int argc, char **argv, const char *shortopts,
                    const struct option *longopts);

/* The checks that need all options: --peer-id's form (a typo is a usage
 * error, not a failed connection), --tls-ca and --tls-fingerprint not both,
 * --server and --name given (unless --show-id; help says what to run for
 * help: "--help", "punchline-share send --help"), and peer (the tool's
 * --peer, NULL if none) not our own name.  0, or 2 after saying why. */
int peer_cli_check(const peer_cli *o, const char *peer, const char *help);

/* The identity file: --identity, else the default path (kept in o).  With
 * read_key, also read the key (creating it if missing) into o->id.  0, or
 * the exit status after saying why: 2 without a default path, 1 for a key
 * that cannot be read or created. */
int peer_cli_identity(peer_cli *o, bool read_key);

/* --show-id: read the key as peer_cli_identity() does and print its id on
 * stdout.  Returns the exit status. */
int peer_cli_show_id(peer_cli *o);

/* auto, udp, tcp or relay: the PL_TRANSPORT_*, or -1. */
int peer_cli_transport(const char *s);

/* Fill cfg's common members from o and set its log callback to print
 * through o->print; o must outlive the pl_peer (it is the log's user).
 * The tool sets loop, the callbacks and user itself. */
void peer_cli_config(peer_cli *o, pl_peer_config *cfg);

/* pl_peer_new(), then "identity id=ID file=PATH" through o->print; on failure
 * "<prog>: <error>" on stderr.  Returns pl_peer_new()'s status, for the
 * tool to turn into its exit status. */
int peer_cli_start(peer_cli *o, const pl_peer_config *cfg, pl_peer **out);

#endif
