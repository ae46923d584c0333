/* Unit tests for examples/common/peer_cli.c: the options punchline-chat and
 * punchline-share share, their checks, and the pl_peer_config they fill. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer_cli.h"

#define GOOD_ID "abcdefghijklmnopqrstuvwxyz234567ABCDEFGHIJKLMNOPQRST"

Test(peer_cli, options_set_fields)
{
    peer_cli o;
    peer_cli_init(&o, "t", 30);
    cr_assert_eq(o.verbosity, PL_LOG_WARN);
    cr_assert_eq(peer_cli_option(&o, 's', "h:1"), 1);
    cr_assert_eq(peer_cli_option(&o, 'n', "me"), 1);
    cr_assert_eq(peer_cli_option(&o, 'i', "k.pem"), 1);
    cr_assert_eq(peer_cli_option(&o, 'T', "2.5"), 1);
    cr_assert_eq(peer_cli_option(&o, PEER_CLI_O_KEEPALIVE, "25"), 1);
    cr_assert_eq(peer_cli_option(&o, PEER_CLI_O_PATH_TIMEOUT, "2"), 1);
    cr_assert_eq(peer_cli_option(&o, PEER_CLI_O_SHOW_ID, NULL), 1);
    cr_assert_eq(peer_cli_option(&o, PEER_CLI_O_PEER_ID, GOOD_ID), 1);
    cr_assert_eq(peer_cli_option(&o, PEER_CLI_O_TOKEN, "tok"), 1);
    cr_assert_eq(peer_cli_option(&o, PEER_CLI_O_TLS_CA, "ca.pem"), 1);
    cr_assert_eq(peer_cli_option(&o, PEER_CLI_O_TLS_FP, "fp"), 1);
    cr_assert_eq(peer_cli_option(&o, PEER_CLI_O_STUN, "s:3478"), 1);
    cr_assert_str_eq(o.server, "h:1");
    cr_assert_str_eq(o.name, "me");
    cr_assert_str_eq(o.identity, "k.pem");
    cr_assert_float_eq(o.timeout_s, 2.5, 1e-9);
    cr_assert(o.timeout_set);
    cr_assert_eq(o.keepalive_s, 25);
    cr_assert_eq(o.path_timeout_s, 2);
    cr_assert(o.show_id);
    cr_assert_str_eq(o.peer_id, GOOD_ID);
    cr_assert_str_eq(o.token, "tok");
    cr_assert_str_eq(o.tls_ca, "ca.pem");
    cr_assert_str_eq(o.tls_fp, "fp");
    cr_assert_str_eq(o.stun, "s:3478");
}

/* A tool's own options are left to it. */
Test(peer_cli, other_options_not_taken)
{
    peer_cli o;
    peer_cli_init(&o, "t", 30);
    const int own[] = {'p', 't', 'o', 'f', 'h', '?', ':'};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        cr_assert_eq(peer_cli_option(&o, own[i], "x"), 0, "option %d", own[i]);
    cr_assert_not(o.timeout_set);
    cr_assert_float_eq(o.timeout_s, 30, 1e-9);
}

Test(peer_cli, verbose_stops_at_debug)
{
    peer_cli o;
    peer_cli_init(&o, "t", 30);
    peer_cli_option(&o, 'v', NULL);
    cr_assert_eq(o.verbosity, PL_LOG_INFO);
    for (int i = 0; i < 5; i++)
        peer_cli_option(&o, 'v', NULL);
    cr_assert_eq(o.verbosity, PL_LOG_DEBUG);
}

struct bad_value {
    int opt;
    char arg[32];
};

ParameterizedTestParameters(peer_cli, bad_values_refused)
{
    static struct bad_value cases[] = {
        {'T', "-1"}, {'T', "abc"}, {'T', ""}, {'T', "86401"}, {'T', "nan"}, {'T', "1e3x"},
        {PEER_CLI_O_KEEPALIVE, "0"}, {PEER_CLI_O_KEEPALIVE, "26"}, {PEER_CLI_O_KEEPALIVE, "-1"},
        {PEER_CLI_O_KEEPALIVE, ""}, {PEER_CLI_O_KEEPALIVE, "1x"},
        {PEER_CLI_O_KEEPALIVE, "99999999999999999999999"},
        {PEER_CLI_O_PATH_TIMEOUT, "1"}, {PEER_CLI_O_PATH_TIMEOUT, "3601"},
        {PEER_CLI_O_PATH_TIMEOUT, "-5"}, {PEER_CLI_O_PATH_TIMEOUT, ""},
    };
    return cr_make_param_array(struct bad_value, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_value *c, peer_cli, bad_values_refused)
{
    peer_cli o;
    peer_cli_init(&o, "t", 30);
    cr_assert_eq(peer_cli_option(&o, c->opt, c->arg), -1, "option %d '%s'", c->opt, c->arg);
}

static void base(peer_cli *o)
{
    peer_cli_init(o, "t", 30);
    o->server = "h:1";
    o->name = "me";
}

Test(peer_cli, check)
{
    peer_cli o;
    base(&o);
    cr_assert_eq(peer_cli_check(&o, NULL, "--help"), 0);
    cr_assert_eq(peer_cli_check(&o, "you", "--help"), 0);
    cr_assert_eq(peer_cli_check(&o, "me", "--help"), 2);
    o.peer_id = GOOD_ID;
    cr_assert_eq(peer_cli_check(&o, NULL, "--help"), 0);
    o.peer_id = GOOD_ID "a"; /* too long */
    cr_assert_eq(peer_cli_check(&o, NULL, "--help"), 2);
    o.peer_id = "abcdefghijklmnopqrstuvwxyz234567ABCDEFGHIJKLMNOPQRS1"; /* 1 is not base32 */
    cr_assert_eq(peer_cli_check(&o, NULL, "--help"), 2);
    base(&o);
    o.tls_ca = "ca.pem";
    o.tls_fp = "fp";
    cr_assert_eq(peer_cli_check(&o, NULL, "--help"), 2);
    base(&o);
    o.name = NULL;
    cr_assert_eq(peer_cli_check(&o, NULL, "--help"), 2);
    o.show_id = true; /* needs neither --server nor --name */
    o.server = NULL;
    cr_assert_eq(peer_cli_check(&o, NULL, "--help"), 0);
}

Test(peer_cli, transport)
{
    cr_assert_eq(peer_cli_transport("auto"), PL_TRANSPORT_AUTO);
    cr_assert_eq(peer_cli_transport("udp"), PL_TRANSPORT_UDP);
    cr_assert_eq(peer_cli_transport("tcp"), PL_TRANSPORT_TCP);
    cr_assert_eq(peer_cli_transport("relay"), PL_TRANSPORT_RELAY);
    cr_assert_eq(peer_cli_transport("UDP"), -1);
    cr_assert_eq(peer_cli_transport(""), -1);
}

static char printed[700];

static void capture(const char *line, void *user)
{
    snprintf(printed, sizeof(printed), "%s|%s", (const char *)user, line);
}

Test(peer_cli, config_and_log)
{
    peer_cli o;
    base(&o);
    o.identity = "k.pem";
    o.token = "tok";
    o.tls_fp = "fp";
    o.stun = "s:3478";
    o.keepalive_s = 3;
    o.path_timeout_s = 7;
    o.verbosity = PL_LOG_DEBUG;
    o.print = capture;
    o.print_user = "u";
    pl_peer_config cfg = {.name = "overwritten"};
    peer_cli_config(&o, &cfg);
    cr_assert_str_eq(cfg.server, "h:1");
    cr_assert_str_eq(cfg.name, "me");
    cr_assert_str_eq(cfg.identity_file, "k.pem");
    cr_assert_str_eq(cfg.auth_token, "tok");
    cr_assert_null(cfg.server_ca_file);
    cr_assert_str_eq(cfg.server_fingerprint, "fp");
    cr_assert_str_eq(cfg.stun_server, "s:3478");
    cr_assert_eq(cfg.keepalive_ms, 3000);
    cr_assert_eq(cfg.path_timeout_ms, 7000);
    cr_assert_eq(cfg.log_level, PL_LOG_DEBUG);
    cfg.log(PL_LOG_INFO, "hello", cfg.log_user);
    cr_assert_str_eq(printed, "u|punchline: info: hello");
}

/* The key is made on first use and its id read back the same later. */
Test(peer_cli, identity_created_and_read)
{
    char dir[] = "/tmp/test_peer_cli.XXXXXX", file[64], first[PL_ID_LEN + 1];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/id.pem", dir);
    peer_cli o;
    base(&o);
    o.identity = file;
    cr_assert_eq(peer_cli_identity(&o, false), 0);
    cr_assert_eq(access(file, F_OK), -1, "not read: not made");
    cr_assert_eq(peer_cli_identity(&o, true), 0);
    cr_assert_eq(strlen(o.id), PL_ID_LEN);
    strcpy(first, o.id);
    cr_assert_eq(peer_cli_identity(&o, true), 0);
    cr_assert_str_eq(o.id, first);
    /* a key below a regular file cannot be made, even by root */
    char below[80];
    snprintf(below, sizeof(below), "%s/sub/id.pem", file);
    o.identity = below;
    cr_assert_eq(peer_cli_identity(&o, true), 1);
    unlink(file);
    rmdir(dir);
}

Test(peer_cli, default_identity_needs_home)
{
    peer_cli o;
    base(&o);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("HOME");
    cr_assert_eq(peer_cli_identity(&o, false), 2);
    setenv("HOME", "/tmp/test_peer_cli_home", 1);
    cr_assert_eq(peer_cli_identity(&o, false), 0);
    cr_assert_str_eq(o.identity, "/tmp/test_peer_cli_home/.config/punchline/identity.pem");
}

/* The loop a tool runs: common options are taken, its own come back in
 * order, and a bad common value stops it. */
Test(peer_cli, getopt_hands_back_own_options)
{
    static const struct option opts[] = {
        {"peer", required_argument, 0, 'p'}, PEER_CLI_LONG_OPTIONS, {0, 0, 0, 0}};
    char *argv[] = {"tool", "-s", "h:1", "--peer", "bob", "-vv", "--keepalive=5",
                    "--name", "me", "FILE", "-x", NULL};
    int argc = 11;
    peer_cli o;
    peer_cli_init(&o, "t", 30);
    optind = 0; /* glibc: start over */
    opterr = 0;
    cr_assert_eq(peer_cli_getopt(&o, argc, argv, PEER_CLI_SHORT_OPTIONS "p:", opts), 'p');
    cr_assert_str_eq(optarg, "bob");
    cr_assert_eq(peer_cli_getopt(&o, argc, argv, PEER_CLI_SHORT_OPTIONS "p:", opts), '?');
    cr_assert_eq(peer_cli_getopt(&o, argc, argv, PEER_CLI_SHORT_OPTIONS "p:", opts), -1);
    cr_assert_str_eq(argv[optind], "FILE"); /* operands are moved to the end */
    cr_assert_str_eq(o.server, "h:1");
    cr_assert_str_eq(o.name, "me");
    cr_assert_eq(o.verbosity, PL_LOG_DEBUG);
    cr_assert_eq(o.keepalive_s, 5);

    char *bad[] = {"tool", "--path-timeout", "1", "--peer", "bob", NULL};
    peer_cli_init(&o, "t", 30);
    optind = 0;
    cr_assert_eq(peer_cli_getopt(&o, 5, bad, PEER_CLI_SHORT_OPTIONS "p:", opts), PEER_CLI_BAD);
}
