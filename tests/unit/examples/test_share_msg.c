/* Unit tests for examples/share/msg.c: the punchline-share message codec
 * and the file name rule.  What a sender puts on the wire is hostile input
 * for the receiver, and the name is the part of it that names a file: every
 * rule of sm_name_check() has a case here, since the CLI can never produce
 * a bad name (the sender checks its own base name the same way). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "msg.h"

/* ---- the name rule ------------------------------------------------------ */

/* Arrays, not pointers: Criterion runs each case in a fresh process. */
struct name_case {
    char name[40];
    size_t len;                /* 0 = strlen(name) */
    char why[24];              /* expected reason fragment, "" = accepted */
};

ParameterizedTestParameters(name, rule)
{
    static struct name_case cases[] = {
        {"report.pdf", 0, ""},
        {"a", 0, ""},
        {".hidden", 0, ""},
        {"...", 0, ""},
        {"with space and (parens)", 0, ""},
        {"grüße-Ünïcödé-日本語.txt", 0, ""},
        {"emoji-\xF0\x9F\x98\x80.png", 0, ""},
        {"-leading-dash", 0, ""},
        {"x.punchline-part.txt", 0, ""},
        {"", 0, "empty"},
        {".", 0, "'.' or '..'"},
        {"..", 0, "'.' or '..'"},
        {"../etc/passwd", 0, "path separator"},
        {"/etc/passwd", 0, "path separator"},
        {"dir/file", 0, "path separator"},
        {"..\\..\\windows", 0, "path separator"},
        {"trailing/", 0, "path separator"},
        {"new\nline", 0, "control"},
        {"tab\there", 0, "control"},
        {"esc\x1b[31mred", 0, "control"},
        {"del\x7f", 0, "control"},
        {"c1-\xC2\x9B" "31m", 0, "control"},       /* U+009B CSI */
        {"nul\0inside", 10, "control"},
        {"bidi-\xE2\x80\xAE" "fdp.exe", 0, "bidirectional"}, /* U+202E */
        {"isolate-\xE2\x81\xA6" "x", 0, "bidirectional"},    /* U+2066 */
        {"latin1-\xE9t\xE9", 0, "UTF-8"},
        {"stray-\x80", 0, "UTF-8"},
        {"truncated-\xE2\x82", 0, "UTF-8"},
        {"overlong-slash-\xC0\xAF", 0, "UTF-8"},              /* '/' in 2 bytes */
        {"overlong-3-\xE0\x80\xAF", 0, "UTF-8"},
        {"surrogate-\xED\xA0\x80", 0, "UTF-8"},
        {"too-high-\xF4\x90\x80\x80", 0, "UTF-8"},
        {"f5-\xF5\x80\x80\x80", 0, "UTF-8"},
        {".foo.punchline-part", 0, "punchline-part"},
        {"foo.punchline-part", 0, "punchline-part"},
    };
    return cr_make_param_array(struct name_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct name_case *c, name, rule)
{
    size_t len = c->len ? c->len : strlen(c->name);
    const char *why = sm_name_check((const uint8_t *)c->name, len);
    if (!c->why[0]) {
        cr_assert_null(why, "'%s' refused: %s", c->name, why);
    } else {
        cr_assert_not_null(why, "'%s' accepted, want refused (%s)", c->name, c->why);
        cr_assert(strstr(why, c->why), "'%s': reason '%s' does not say '%s'", c->name, why, c->why);
    }
}

/* Length limit: SM_MAX_NAME bytes pass, one more does not; a multi-byte
 * character counts by its bytes. */
Test(name, length_limit)
{
    char n[SM_MAX_NAME + 2];
    memset(n, 'a', sizeof(n));
    cr_assert_null(sm_name_check((uint8_t *)n, SM_MAX_NAME));
    const char *why = sm_name_check((uint8_t *)n, SM_MAX_NAME + 1);
    cr_assert_not_null(why);
    cr_assert(strstr(why, "longer"));
    /* 66 three-byte characters = 198 bytes pass; 67 = 201 bytes do not */
    uint8_t u[3 * 67];
    for (int i = 0; i < 67; i++)
        memcpy(u + 3 * i, "\xE2\x82\xAC", 3); /* U+20AC EURO SIGN */
    cr_assert_null(sm_name_check(u, 3 * 66));
    cr_assert_not_null(sm_name_check(u, 3 * 67));
}

/* Every single byte value as a one-byte name: printable ASCII other than
 * '/', '\\' and '.' passes, the rest does not. */
Test(name, every_single_byte)
{
    for (int b = 0; b < 256; b++) {
        uint8_t n = (uint8_t)b;
        bool ok = b >= 0x20 && b < 0x7F && b != '/' && b != '\\' && b != '.';
        cr_assert_eq(sm_name_check(&n, 1) == NULL, ok, "byte 0x%02x", b);
    }
}

/* ---- codec: round trips ------------------------------------------------- */

static const uint8_t H[SM_HASH_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                       17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

Test(codec, offer_layout_and_round_trip)
{
    uint8_t b[SM_MAX_CONTROL];
    size_t n = sm_encode_offer(b, sizeof(b), 0x0102030405060708ull, "ab", 2);
    const uint8_t want[] = {SM_OFFER, SM_VERSION, 1, 2, 3, 4, 5, 6, 7, 8, 0, 2, 'a', 'b'};
    cr_assert_eq(n, sizeof(want));
    cr_assert_arr_eq(b, want, sizeof(want));
    sm_msg m;
    cr_assert_eq(sm_decode(b, n, &m), 0);
    cr_assert_eq(m.type, SM_OFFER);
    cr_assert_eq(m.version, SM_VERSION);
    cr_assert_eq(m.size, 0x0102030405060708ull);
    cr_assert_eq(m.name_len, 2);
    cr_assert_eq(memcmp(m.name, "ab", 2), 0);
}

Test(codec, others_round_trip)
{
    uint8_t b[SM_MAX_CONTROL];
    sm_msg m;
    size_t n = sm_encode_accept(b, sizeof(b), 12345, H);
    cr_assert_eq(n, 1 + 8 + SM_HASH_LEN);
    cr_assert_eq(sm_decode(b, n, &m), 0);
    cr_assert_eq(m.type, SM_ACCEPT);
    cr_assert_eq(m.offset, 12345);
    cr_assert_arr_eq(m.hash, H, SM_HASH_LEN);

    n = sm_encode_start(b, sizeof(b), 1ull << 40);
    cr_assert_eq(sm_decode(b, n, &m), 0);
    cr_assert_eq(m.type, SM_START);
    cr_assert_eq(m.offset, 1ull << 40);

    n = sm_encode_done(b, sizeof(b), H);
    cr_assert_eq(sm_decode(b, n, &m), 0);
    cr_assert_eq(m.type, SM_DONE);
    cr_assert_arr_eq(m.hash, H, SM_HASH_LEN);

    for (int ok = 0; ok <= 1; ok++) {
        n = sm_encode_verdict(b, sizeof(b), ok, H);
        cr_assert_eq(sm_decode(b, n, &m), 0);
        cr_assert_eq(m.type, SM_VERDICT);
        cr_assert_eq(m.ok, ok);
        cr_assert_arr_eq(m.hash, H, SM_HASH_LEN);
    }

    n = sm_encode_error(b, sizeof(b), SM_R_EXISTS, "file exists");
    cr_assert_eq(sm_decode(b, n, &m), 0);
    cr_assert_eq(m.type, SM_ERROR);
    cr_assert_eq(m.reason, SM_R_EXISTS);
    cr_assert_eq(m.text_len, 11);
    cr_assert_eq(memcmp(m.text, "file exists", 11), 0);

    uint8_t d[] = {SM_DATA, 'x', 'y', 'z'};
    cr_assert_eq(sm_decode(d, sizeof(d), &m), 0);
    cr_assert_eq(m.type, SM_DATA);
    cr_assert_eq(m.data_len, 3);
    cr_assert_eq(m.data, d + 1);
}

/* An ERROR text longer than the limit is cut, so it always decodes. */
Test(codec, error_text_is_cut)
{
    char t[SM_MAX_TEXT + 50];
    memset(t, 'e', sizeof(t) - 1);
    t[sizeof(t) - 1] = 0;
    uint8_t b[SM_MAX_TEXT + 10];
    size_t n = sm_encode_error(b, sizeof(b), SM_R_IO, t);
    cr_assert_eq(n, 4 + SM_MAX_TEXT);
    sm_msg m;
    cr_assert_eq(sm_decode(b, n, &m), 0);
    cr_assert_eq(m.text_len, SM_MAX_TEXT);
}

/* Encoders refuse what does not fit or is out of range. */
Test(codec, encoders_refuse)
{
    uint8_t b[SM_MAX_CONTROL];
    char name[SM_MAX_NAME + 1];
    memset(name, 'n', sizeof(name));
    cr_assert_eq(sm_encode_offer(b, sizeof(b), 1, name, SM_MAX_NAME + 1), 0);
    cr_assert_eq(sm_encode_offer(b, sizeof(b), (uint64_t)INT64_MAX + 1, "a", 1), 0);
    cr_assert_eq(sm_encode_offer(b, 13, 1, "ab", 2), 0);
    cr_assert_eq(sm_encode_accept(b, 40, 1, H), 0);
    cr_assert_eq(sm_encode_start(b, 8, 1), 0);
    cr_assert_eq(sm_encode_done(b, 32, H), 0);
    cr_assert_eq(sm_encode_verdict(b, 33, true, H), 0);
    cr_assert_eq(sm_encode_error(b, 3, 1, NULL), 0);
    cr_assert_eq(sm_encode_offer(b, sizeof(b), 1, name, SM_MAX_NAME), sizeof(b));
}

/* ---- codec: hostile input ----------------------------------------------- */

struct bad_case {
    char what[32];
    uint8_t bytes[24];
    size_t len;
};

ParameterizedTestParameters(codec, malformed)
{
    static struct bad_case cases[] = {
        {"empty", {0}, 0},
        {"type 0", {0}, 1},
        {"unknown type 8", {8, 0, 0}, 3},
        {"type 255", {255}, 1},
        {"offer without fields", {SM_OFFER}, 1},
        {"offer short size", {SM_OFFER, 1, 0, 0, 0}, 5},
        {"offer name_len past end", {SM_OFFER, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 3, 'a', 'b'}, 14},
        {"offer trailing byte", {SM_OFFER, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 1, 'a', 'b'}, 14},
        {"offer name_len 65535", {SM_OFFER, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0xff, 0xff, 'a'}, 13},
        {"offer name_len 201", {SM_OFFER, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 201, 'a'}, 13},
        {"offer size 2^63", {SM_OFFER, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'a'}, 13},
        {"offer size 2^64-1", {SM_OFFER, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 1, 'a'}, 13},
        {"accept short", {SM_ACCEPT, 0, 0, 0, 0, 0, 0, 0, 1}, 9},
        {"error short", {SM_ERROR, 1, 0}, 3},
        {"error text_len past end", {SM_ERROR, 1, 0, 9, 'x'}, 5},
        {"error trailing", {SM_ERROR, 1, 0, 0, 'x'}, 5},
        {"start short", {SM_START, 0, 0, 0, 0, 0, 0, 0}, 8},
        {"start long", {SM_START, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 10},
        {"data empty", {SM_DATA}, 1},
        {"done short", {SM_DONE, 1, 2, 3}, 4},
        {"verdict short", {SM_VERDICT, 1}, 2},
    };
    return cr_make_param_array(struct bad_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_case *c, codec, malformed)
{
    sm_msg m;
    cr_assert_eq(sm_decode(c->bytes, c->len, &m), -1, "%s decoded", c->what);
}

/* Exact-length types: one byte more or less is malformed; VERDICT ok must
 * be 0 or 1; a DATA payload above SM_MAX_CHUNK is refused. */
Test(codec, exact_lengths)
{
    uint8_t b[SM_MAX_CHUNK + 2] = {0};
    sm_msg m;
    size_t n = sm_encode_accept(b, sizeof(b), 1, H);
    cr_assert_eq(sm_decode(b, n - 1, &m), -1);
    cr_assert_eq(sm_decode(b, n + 1, &m), -1);
    n = sm_encode_done(b, sizeof(b), H);
    cr_assert_eq(sm_decode(b, n + 1, &m), -1);
    n = sm_encode_verdict(b, sizeof(b), true, H);
    cr_assert_eq(sm_decode(b, n + 1, &m), -1);
    b[1] = 2;
    cr_assert_eq(sm_decode(b, n, &m), -1, "VERDICT ok=2");
    b[0] = SM_DATA;
    cr_assert_eq(sm_decode(b, 1 + SM_MAX_CHUNK, &m), 0);
    cr_assert_eq(sm_decode(b, 2 + SM_MAX_CHUNK, &m), -1);
}

/* An unknown version still decodes, so the receiver can say why it refuses. */
Test(codec, unknown_version_decodes)
{
    uint8_t b[SM_MAX_CONTROL];
    size_t n = sm_encode_offer(b, sizeof(b), 7, "a", 1);
    b[1] = 99;
    sm_msg m;
    cr_assert_eq(sm_decode(b, n, &m), 0);
    cr_assert_eq(m.version, 99);
}

/* Every prefix of every valid message other than DATA is malformed. */
Test(codec, truncations)
{
    uint8_t b[6][SM_MAX_CONTROL];
    size_t n[6] = {
        sm_encode_offer(b[0], SM_MAX_CONTROL, 9, "name.txt", 8),
        sm_encode_accept(b[1], SM_MAX_CONTROL, 9, H),
        sm_encode_error(b[2], SM_MAX_CONTROL, SM_R_IO, "text"),
        sm_encode_start(b[3], SM_MAX_CONTROL, 9),
        sm_encode_done(b[4], SM_MAX_CONTROL, H),
        sm_encode_verdict(b[5], SM_MAX_CONTROL, true, H),
    };
    for (int i = 0; i < 6; i++) {
        sm_msg m;
        cr_assert_eq(sm_decode(b[i], n[i], &m), 0);
        for (size_t l = 0; l < n[i]; l++)
            cr_assert_eq(sm_decode(b[i], l, &m), -1, "type %u cut to %zu bytes", b[i][0], l);
    }
}

/* ---- helpers ------------------------------------------------------------ */

Test(text, printable_and_hex)
{
    char out[16];
    sm_printable((const uint8_t *)"a\x1b[2J\xC3\xA9z", 8, out, sizeof(out));
    cr_assert_str_eq(out, "a?[2J??z");
    sm_printable((const uint8_t *)"abcdef", 6, out, 4);
    cr_assert_str_eq(out, "abc");
    char hex[2 * SM_HASH_LEN + 1];
    sm_hex(H, hex);
    cr_assert_str_eq(hex, "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
    cr_assert_str_eq(sm_reason_text(200), "unknown reason");
}
