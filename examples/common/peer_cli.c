/* The command line both example tools share (peer_cli.h). */
#include "peer_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void peer_cli_init(peer_cli *o, const char *prog, double timeout_s)
{
    memset(o, 0, sizeof(*o));
    o->prog = prog;
    o->timeout_s = timeout_s;
    o->verbosity = PL_LOG_WARN;
}

/* --keepalive/--path-timeout: a whole number of seconds in lo..hi. */
static int parse_seconds(const peer_cli *o, const char *opt, const char *s, unsigned long lo,
                         unsigned long hi, unsigned long *out)
{
    char *end;
    errno = 0;
    *out = strtoul(s, &end, 10);
    /* strtoul would take "-1" as a huge number and "" as 0 */
    if (errno || *end || !*s || *s == '-' || *out < lo || *out > hi) {
        fprintf(stderr, "%s: %s takes %lu..%lu seconds\n", o->prog, opt, lo, hi);
        return -1;
    }
    return 0;
}

static int parse_timeout(peer_cli *o, const char *s)
{
    char *end;
    o->timeout_s = strtod(s, &end);
    /* written so that NaN fails too: it would never time out */
    if (*end || !*s || !(o->timeout_s >= 0 && o->timeout_s <= 86400)) {
        fprintf(stderr, "%s: --timeout takes 0..86400 seconds\n", o->prog);
        return -1;
    }
    o->timeout_set = true;
    return 0;
}

int peer_cli_option(peer_cli *o, int c, const char *arg)
{
    switch (c) {
    case 's': o->server = arg; return 1;
    case 'n': o->name = arg; return 1;
    case 'i': o->identity = arg; return 1;
    case 'v':
        if (o->verbosity < PL_LOG_DEBUG)
            o->verbosity++;
        return 1;
    case 'T': return parse_timeout(o, arg) < 0 ? -1 : 1;
    case PEER_CLI_O_KEEPALIVE:
        return parse_seconds(o, "--keepalive", arg, 1, 25, &o->keepalive_s) < 0 ? -1 : 1;
    case PEER_CLI_O_PATH_TIMEOUT:
        return parse_seconds(o, "--path-timeout", arg, 2, 3600, &o->path_timeout_s) < 0 ? -1 : 1;
    case PEER_CLI_O_SHOW_ID: o->show_id = true; return 1;
    case PEER_CLI_O_PEER_ID: o->peer_id = arg; return 1;
    case PEER_CLI_O_TOKEN: o->token = arg; return 1;
    case PEER_CLI_O_TLS_CA: o->tls_ca = arg; return 1;
    case PEER_CLI_O_TLS_FP: o->tls_fp = arg; return 1;
    case PEER_CLI_O_STUN: o->stun = arg; return 1;
    default: return 0;
    }
}

int peer_cli_getopt(peer_cli *o, int argc, char **argv, const char *shortopts,
                    const struct option *longopts)
{
    int c, rc;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        rc = peer_cli_option(o, c, optarg);
        if (rc < 0)
            return PEER_CLI_BAD;
        if (rc == 0)
            return c;
    }
    return -1;
}

/* A peer id is the base32 (RFC 4648 alphabet, either case) of the key's
 * fingerprint, PL_ID_LEN characters. */
static bool valid_peer_id(const char *id)
{
    return strlen(id) == PL_ID_LEN &&
           strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == PL_ID_LEN;
}

int peer_cli_check(const peer_cli *o, const char *peer, const char *help)
{
    if (o->peer_id && !valid_peer_id(o->peer_id)) {
        fprintf(stderr, "%s: --peer-id wants the %d-character id the other side's "
                        "--show-id prints\n", o->prog, PL_ID_LEN);
        return 2;
    }
    if (o->tls_ca && o->tls_fp) {
        fprintf(stderr, "%s: give --tls-ca or --tls-fingerprint, not both\n", o->prog);
        return 2;
    }
    if (!o->show_id && (!o->server || !o->name)) {
        fprintf(stderr, "%s: --server and --name are required (see %s)\n", o->prog, help);
        return 2;
    }
    if (peer && !strcmp(peer, o->name)) {
        fprintf(stderr, "%s: --peer must differ from --name\n", o->prog);
        return 2;
    }
    return 0;
}

int peer_cli_identity(peer_cli *o, bool read_key)
{
    char err[512];
    if (!o->identity) {
        if (pl_identity_default_path(o->idpath, sizeof(o->idpath)) != 0) {
            fprintf(stderr, "%s: neither XDG_CONFIG_HOME nor HOME is set: "
                            "give the key file with --identity FILE\n", o->prog);
            return 2;
        }
        o->identity = o->idpath;
    }
    if (read_key && pl_identity_id(o->identity, 1, o->id, sizeof(o->id), err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", o->prog, err);
        return 1;
    }
    return 0;
}

int peer_cli_show_id(peer_cli *o)
{
    int rc = peer_cli_identity(o, true);
    if (rc != 0)
        return rc;
    printf("%s\n", o->id);
    return 0;
}

int peer_cli_transport(const char *s)
{
    if (!strcmp(s, "auto")) return PL_TRANSPORT_AUTO;
    if (!strcmp(s, "udp")) return PL_TRANSPORT_UDP;
    if (!strcmp(s, "tcp")) return PL_TRANSPORT_TCP;
    if (!strcmp(s, "relay")) return PL_TRANSPORT_RELAY;
    return -1;
}

static void print_line(const peer_cli *o, const char *line)
{
    if (o->print)
        o->print(line, o->print_user);
    else
        fprintf(stderr, "%s\n", line);
}

static void log_cb(int level, const char *msg, void *user)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    /* the library's messages are shorter than 512 bytes: none is cut */
    char line[600];
    snprintf(line, sizeof(line), "punchline: %s: %s", names[level], msg);
    print_line(user, line);
}

void peer_cli_config(peer_cli *o, pl_peer_config *cfg)
{
    cfg->server = o->server;
    cfg->name = o->name;
    cfg->log = log_cb;
    cfg->log_user = o;
    cfg->log_level = o->verbosity;
    cfg->keepalive_ms = (uint32_t)(o->keepalive_s * 1000);
    cfg->path_timeout_ms = (uint32_t)(o->path_timeout_s * 1000);
    cfg->identity_file = o->identity;
    cfg->auth_token = o->token;
    cfg->server_ca_file = o->tls_ca;
    cfg->server_fingerprint = o->tls_fp;
    cfg->stun_server = o->stun;
}

int peer_cli_start(peer_cli *o, const pl_peer_config *cfg, pl_peer **out)
{
    int rc = pl_peer_new(out, cfg);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", o->prog, pl_strerror(rc));
        return rc;
    }
    /* sized for the path, which --identity does not bound */
    size_t n = strlen(pl_peer_id(*out)) + strlen(o->identity) + 32;
    char *line = malloc(n);
    if (!line) {
        fprintf(stderr, "identity id=%s file=%s\n", pl_peer_id(*out), o->identity);
        return 0;
    }
    snprintf(line, n, "identity id=%s file=%s", pl_peer_id(*out), o->identity);
    print_line(o, line);
    free(line);
    return 0;
}
