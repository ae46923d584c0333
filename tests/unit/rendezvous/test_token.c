/* Unit tests for rendezvous/token.c.
 *
 * Rules checked (rendezvous/token.h): a minted token checks for its name and
 * secret and for no other; it is valid up to and including its expiry second;
 * the MAC matches an independent HMAC-SHA256 computation; anything but the
 * exact "EXPIRY.32-lowercase-hex" spelling is malformed; and a secret file is
 * 16..4096 bytes after one trailing "\n" or "\r\n" is dropped. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "token.h"

#define SECRET "0123456789abcdef0123456789abcdef"
#define SECRET_LEN (sizeof(SECRET) - 1)

static const uint8_t *secret(void)
{
    return (const uint8_t *)SECRET;
}

/* Known-answer vectors, computed outside this code with:
 *   python3 -c 'import hmac,hashlib;print(hmac.new(b"0123456789abcdef0123456789abcdef",
 *       b"punchline token v1\x00alice\x001700000000",hashlib.sha256).hexdigest()[:32])'
 * and the same with b"...alice\x0018446744073709551615" for UINT64_MAX. */
#define KAT_TOKEN "1700000000.29a3a5ca9b9a51dd7bdf04378aacd0a7"
#define KAT_MAX_TOKEN "18446744073709551615.6585582073b6cfbb21901778d751902d"

/* ---- mint --------------------------------------------------------------- */

Test(token, known_answer)
{
    char tok[TOKEN_MAX_LEN];
    const char *why = NULL;
    cr_assert_eq(token_mint(secret(), SECRET_LEN, "alice", 1700000000, tok, sizeof(tok)), 0);
    cr_assert_str_eq(tok, KAT_TOKEN);
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", KAT_TOKEN, 1700000000, &why), 0, "%s", why);

    cr_assert_eq(token_mint(secret(), SECRET_LEN, "alice", UINT64_MAX, tok, sizeof(tok)), 0);
    cr_assert_str_eq(tok, KAT_MAX_TOKEN);
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", KAT_MAX_TOKEN, UINT64_MAX, &why), 0);
    cr_assert_lt(strlen(KAT_MAX_TOKEN), TOKEN_MAX_LEN, "the longest token fits TOKEN_MAX_LEN");
}

Test(token, round_trip)
{
    static const char *names[] = {"a", "bob", "peer-1.example_x",
                                  "123456789012345678901234567890123456789012345678901234567890123"};
    char tok[TOKEN_MAX_LEN];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *why = NULL;
        cr_assert_eq(token_mint(secret(), SECRET_LEN, names[i], 2000000000, tok, sizeof(tok)), 0, "%s", names[i]);
        cr_assert_eq(token_check(secret(), SECRET_LEN, names[i], tok, 1999999999, &why), 0, "%s: %s", names[i], why);
    }
    /* Expiry 0 is a valid (if useless) token: no special case at the edge. */
    cr_assert_eq(token_mint(secret(), SECRET_LEN, "alice", 0, tok, sizeof(tok)), 0);
    cr_assert_eq(tok[0], '0');
    cr_assert_eq(tok[1], '.');
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", tok, 0, NULL), 0);
}

Test(token, mint_cap_and_bad_args)
{
    char tok[TOKEN_MAX_LEN];
    size_t need = strlen(KAT_TOKEN) + 1;
    cr_assert_eq(token_mint(secret(), SECRET_LEN, "alice", 1700000000, tok, need), 0);
    cr_assert_str_eq(tok, KAT_TOKEN);
    memset(tok, 'x', sizeof(tok));
    cr_assert_eq(token_mint(secret(), SECRET_LEN, "alice", 1700000000, tok, need - 1), -1);
    cr_assert_eq(tok[0], '\0', "a failed mint leaves an empty string, not a truncated token");
    cr_assert_eq(token_mint(secret(), SECRET_LEN, "alice", 1700000000, tok, 0), -1);
    cr_assert_eq(token_mint(secret(), SECRET_LEN, "alice", 1700000000, NULL, 64), -1);
    cr_assert_eq(token_mint(NULL, SECRET_LEN, "alice", 1700000000, tok, sizeof(tok)), -1);
    cr_assert_eq(token_mint(secret(), 0, "alice", 1700000000, tok, sizeof(tok)), -1);
    cr_assert_eq(token_mint(secret(), SECRET_LEN, NULL, 1700000000, tok, sizeof(tok)), -1);
    cr_assert_eq(token_mint(secret(), SECRET_LEN, "", 1700000000, tok, sizeof(tok)), -1);
    cr_assert_eq(token_mint(secret(), SECRET_LEN, "bad name", 1700000000, tok, sizeof(tok)), -1);
    cr_assert_eq(token_mint(secret(), SECRET_LEN,
                            "1234567890123456789012345678901234567890123456789012345678901234", /* 64 */
                            1700000000, tok, sizeof(tok)), -1);
}

/* ---- check: name, secret, time ------------------------------------------ */

#define NO_MATCH "token does not match this name or secret"

Test(token, wrong_name)
{
    const char *why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "bob", KAT_TOKEN, 1700000000, &why), -1);
    cr_assert_str_eq(why, NO_MATCH);
    why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alicE", KAT_TOKEN, 1700000000, &why), -1);
    cr_assert_str_eq(why, NO_MATCH);
    why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice2", KAT_TOKEN, 1700000000, &why), -1);
    cr_assert_str_eq(why, NO_MATCH);
    why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "bad name", KAT_TOKEN, 1700000000, &why), -1);
    cr_assert_str_eq(why, NO_MATCH);
    why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, NULL, KAT_TOKEN, 1700000000, &why), -1);
    cr_assert_str_eq(why, NO_MATCH);
}

Test(token, wrong_secret)
{
    const uint8_t other[] = "0123456789abcdef0123456789abcdeF";
    const char *why = NULL;
    cr_assert_eq(token_check(other, SECRET_LEN, "alice", KAT_TOKEN, 1700000000, &why), -1);
    cr_assert_str_eq(why, NO_MATCH);
    why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN - 1, "alice", KAT_TOKEN, 1700000000, &why), -1,
                 "a prefix of the secret is another secret");
    cr_assert_str_eq(why, NO_MATCH);
    why = NULL;
    cr_assert_eq(token_check(NULL, 0, "alice", KAT_TOKEN, 1700000000, &why), -1);
    cr_assert_str_eq(why, NO_MATCH);
}

Test(token, changed_expiry_does_not_match)
{
    /* Moving the expiry later (the obvious forgery) breaks the MAC. */
    const char *why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", "1700000001.29a3a5ca9b9a51dd7bdf04378aacd0a7",
                             1700000000, &why), -1);
    cr_assert_str_eq(why, NO_MATCH);
    why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", "1700000000.29a3a5ca9b9a51dd7bdf04378aacd0a6",
                             1700000000, &why), -1);
    cr_assert_str_eq(why, NO_MATCH);
}

Test(token, expiry_boundary)
{
    char tok[TOKEN_MAX_LEN];
    const char *why = NULL;
    cr_assert_eq(token_mint(secret(), SECRET_LEN, "alice", 1000, tok, sizeof(tok)), 0);
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", tok, 0, &why), 0);
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", tok, 999, &why), 0);
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", tok, 1000, &why), 0, "valid at now == expiry");
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", tok, 1001, &why), -1, "expired one second later");
    cr_assert_str_eq(why, "token expired");
    why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", tok, UINT64_MAX, &why), -1);
    cr_assert_str_eq(why, "token expired");
    /* The MAC is checked first: an expired forgery is a forgery. */
    why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "bob", tok, 1001, &why), -1);
    cr_assert_str_eq(why, NO_MATCH);
    /* why may be NULL. */
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", tok, 1001, NULL), -1);
}

Test(token, missing)
{
    const char *why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", NULL, 0, &why), -1);
    cr_assert_str_eq(why, "missing token");
    why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", "", 0, &why), -1);
    cr_assert_str_eq(why, "missing token");
}

/* ---- check: malformed --------------------------------------------------- */

/* Arrays, not pointers: Criterion copies each case into a fresh process
 * where pointers into this one's data would dangle. */
struct malformed_case {
    char token[80];
    char what[40];
};

#define MAC32 "29a3a5ca9b9a51dd7bdf04378aacd0a7"

ParameterizedTestParameters(token, malformed)
{
    static struct malformed_case cases[] = {
        {"1700000000" MAC32, "no dot"},
        {"1700000000.29A3A5CA9B9A51DD7BDF04378AACD0A7", "uppercase hex"},
        {"1700000000.29a3a5ca9b9a51dd7bdf04378aacd0A7", "one uppercase hex digit"},
        {"1700000000.29a3a5ca9b9a51dd7bdf04378aacd0a", "31 hex digits"},
        {"1700000000." MAC32 "0", "33 hex digits"},
        {"1700000000.", "no MAC"},
        {"." MAC32, "no expiry"},
        {".", "just a dot"},
        {"1700000000." MAC32 " ", "trailing space"},
        {"1700000000." MAC32 "\n", "trailing newline"},
        {"1700000000." MAC32 "x", "trailing letter"},
        {"1700000000." MAC32 ".", "trailing dot"},
        {"1700000000.." MAC32, "two dots"},
        {"1700000000.29a3a5ca9b9a51dd.7bdf04378aacd0a7", "dot inside the MAC"},
        {"1700000000.29a3a5ca9b9a51dd7bdf04378aacd0ag", "non-hex letter"},
        {"1700000000.29a3a5ca9b9a51dd7bdf04378aacd0 7", "space inside the MAC"},
        {"+1700000000." MAC32, "plus sign"},
        {"-1700000000." MAC32, "minus sign"},
        {" 1700000000." MAC32, "leading space"},
        {"0x1700000000." MAC32, "hex expiry"},
        {"01700000000." MAC32, "leading zero"},
        {"00." MAC32, "two zeros"},
        {"1.7e9." MAC32, "float expiry"},
        {"100000000000000000000." MAC32, "21-digit expiry"},
        {"18446744073709551616." MAC32, "UINT64_MAX + 1"},
        {"99999999999999999999." MAC32, "20 digits past UINT64_MAX"},
        {"1700000000:" MAC32, "colon instead of dot"},
        {"alice:1700000000", "TURN REST username form"},
        {"not-a-token", "word"},
        {"\xff\xfe\x01\x7f junk \x80", "binary junk"},
        {"1700000000.\xe2\x80\x8b" MAC32, "zero-width space"},
    };
    return cr_make_param_array(struct malformed_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct malformed_case *c, token, malformed)
{
    const char *why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", c->token, 1700000000, &why), -1, "%s", c->what);
    cr_assert_str_eq(why, "malformed token", "%s", c->what);
}

Test(token, long_junk_is_malformed)
{
    char junk[4096];
    memset(junk, '7', sizeof(junk) - 1);
    junk[sizeof(junk) - 1] = '\0';
    const char *why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", junk, 0, &why), -1);
    cr_assert_str_eq(why, "malformed token");
    junk[1000] = '.';
    why = NULL;
    cr_assert_eq(token_check(secret(), SECRET_LEN, "alice", junk, 0, &why), -1);
    cr_assert_str_eq(why, "malformed token");
}

/* ---- token_load_secret -------------------------------------------------- */

static char dir[] = "/tmp/test_token.XXXXXX";
static char path[sizeof(dir) + 32];

static void setup_dir(void)
{
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    snprintf(path, sizeof(path), "%s/secret", dir);
}

static void teardown_dir(void)
{
    unlink(path);
    rmdir(dir);
}

static void write_file(const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* A file of n bytes of 'k' followed by `tail`. */
static void write_sized(size_t n, const char *tail)
{
    size_t tl = strlen(tail);
    char *buf = malloc(n + tl);
    cr_assert_not_null(buf);
    memset(buf, 'k', n);
    memcpy(buf + n, tail, tl);
    write_file(buf, n + tl);
    free(buf);
}

static int load(uint8_t **s, size_t *len, char *err, size_t errlen)
{
    *s = NULL;
    *len = 0;
    err[0] = '\0';
    return token_load_secret(path, s, len, err, errlen);
}

TestSuite(secret_file, .init = setup_dir, .fini = teardown_dir);

Test(secret_file, missing_file)
{
    uint8_t *s;
    size_t len;
    char err[256];
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, path), "%s", err);
    cr_assert_not_null(strstr(err, strerror(ENOENT)), "%s", err);
}

Test(secret_file, directory)
{
    uint8_t *s;
    size_t len;
    char err[256];
    snprintf(path, sizeof(path), "%s", dir);
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, strerror(EISDIR)), "%s", err);
    snprintf(path, sizeof(path), "%s/secret", dir);
}

Test(secret_file, too_short)
{
    uint8_t *s;
    size_t len;
    char err[256];
    write_sized(0, "");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1, "empty file");
    cr_assert_not_null(strstr(err, path), "%s", err);
    write_sized(TOKEN_SECRET_MIN - 1, "");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "15 bytes"), "%s", err);
    cr_assert_null(s);
    /* The newline does not count toward the minimum. */
    write_sized(TOKEN_SECRET_MIN - 1, "\n");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1);
    write_sized(TOKEN_SECRET_MIN - 2, "\r\n");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1);
    write_sized(TOKEN_SECRET_MIN, "");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(len, TOKEN_SECRET_MIN);
    free(s);
}

Test(secret_file, trailing_newline_stripped)
{
    uint8_t *s;
    size_t len;
    char err[256];
    write_file(SECRET "\n", SECRET_LEN + 1);
    cr_assert_eq(load(&s, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(len, SECRET_LEN);
    cr_assert_eq(memcmp(s, SECRET, SECRET_LEN), 0);
    /* The loaded secret mints the known answer. */
    char tok[TOKEN_MAX_LEN];
    cr_assert_eq(token_mint(s, len, "alice", 1700000000, tok, sizeof(tok)), 0);
    cr_assert_str_eq(tok, KAT_TOKEN);
    free(s);

    write_file(SECRET "\r\n", SECRET_LEN + 2);
    cr_assert_eq(load(&s, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(len, SECRET_LEN);
    cr_assert_eq(memcmp(s, SECRET, SECRET_LEN), 0);
    free(s);

    /* Only one line ending goes; other bytes (a lone "\r", a second "\n",
     * spaces) are part of the secret. */
    write_file(SECRET "\n\n", SECRET_LEN + 2);
    cr_assert_eq(load(&s, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(len, SECRET_LEN + 1);
    cr_assert_eq(s[SECRET_LEN], '\n');
    free(s);
    write_file(SECRET "\r", SECRET_LEN + 1);
    cr_assert_eq(load(&s, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(len, SECRET_LEN + 1);
    free(s);
    write_file(SECRET " \n", SECRET_LEN + 2);
    cr_assert_eq(load(&s, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(len, SECRET_LEN + 1);
    free(s);
}

Test(secret_file, too_long)
{
    uint8_t *s;
    size_t len;
    char err[256];
    write_sized(TOKEN_SECRET_MAX, "");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(len, TOKEN_SECRET_MAX);
    free(s);
    write_sized(TOKEN_SECRET_MAX, "\r\n");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(len, TOKEN_SECRET_MAX);
    free(s);

    write_sized(TOKEN_SECRET_MAX + 1, "");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1);
    cr_assert_null(s);
    cr_assert_not_null(strstr(err, path), "%s", err);
    cr_assert_not_null(strstr(err, "4096"), "%s", err);
    write_sized(TOKEN_SECRET_MAX + 1, "\n");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1);
    write_sized(TOKEN_SECRET_MAX + 1, "\r\n");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1);
    write_sized(1 << 20, "");
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1, "a large file is refused without reading it all");
}

Test(secret_file, small_err_buffer_is_safe)
{
    uint8_t *s;
    size_t len;
    char err[8];
    cr_assert_eq(load(&s, &len, err, sizeof(err)), -1);
    cr_assert_eq(strlen(err), sizeof(err) - 1, "truncated, still terminated");
}
