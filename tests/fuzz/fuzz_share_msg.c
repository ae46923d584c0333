/* punchline-share's message codec (examples/share/msg.c): everything a
 * remote peer sends in a transfer.  A message that decodes re-encodes to
 * the same bytes; an OFFER name that passes sm_name_check is a safe base
 * name (no separator, no control or bidi character, valid UTF-8, not ours);
 * ERROR text printed with sm_printable is plain ASCII. */
#include "fuzz.h"

#include <string.h>

#include "msg.h"

static bool has(const uint8_t *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, needle, k) == 0)
            return true;
    return false;
}

static void check_name(const uint8_t *s, size_t n)
{
    static const char suffix[] = SM_PART_SUFFIX;
    if (sm_name_check(s, n) != NULL)
        return;
    FUZZ_CHECK(n >= 1 && n <= SM_MAX_NAME);
    FUZZ_CHECK(!(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.'));
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(s[i] >= 0x20 && s[i] != 0x7F && s[i] != '/' && s[i] != '\\');
        FUZZ_CHECK(s[i] != 0xC0 && s[i] != 0xC1 && s[i] < 0xF5); /* never in UTF-8 */
        if (s[i] == 0xC2 && i + 1 < n)
            FUZZ_CHECK(s[i + 1] > 0x9F); /* C1 controls */
        if (s[i] == 0xED && i + 1 < n)
            FUZZ_CHECK(s[i + 1] < 0xA0); /* surrogates */
    }
    FUZZ_CHECK(!has(s, n, "\xe2\x80\xaa") && !has(s, n, "\xe2\x80\xab") &&
               !has(s, n, "\xe2\x80\xac") && !has(s, n, "\xe2\x80\xad") &&
               !has(s, n, "\xe2\x80\xae") && !has(s, n, "\xe2\x81\xa6") &&
               !has(s, n, "\xe2\x81\xa7") && !has(s, n, "\xe2\x81\xa8") &&
               !has(s, n, "\xe2\x81\xa9"));
    FUZZ_CHECK(n < sizeof(suffix) - 1 ||
               memcmp(s + n - (sizeof(suffix) - 1), suffix, sizeof(suffix) - 1) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* every input as a file name too: the sender checks its own */
    check_name(data, size);

    sm_msg m;
    if (sm_decode(data, size, &m) != 0)
        return 0;
    FUZZ_CHECK(m.type == data[0]);
    uint8_t *out = malloc(size + 1);
    FUZZ_CHECK(out);
    size_t n = 0;
    bool compare = true;
    switch (m.type) {
    case SM_OFFER:
        FUZZ_CHECK(m.name_len <= SM_MAX_NAME && m.name + m.name_len == data + size);
        check_name(m.name, m.name_len);
        n = sm_encode_offer(out, size + 1, m.size, (const char *)m.name, m.name_len);
        compare = m.version == SM_VERSION;
        break;
    case SM_ACCEPT:
        n = sm_encode_accept(out, size + 1, m.offset, m.hash);
        break;
    case SM_ERROR: {
        FUZZ_CHECK(m.text_len <= SM_MAX_TEXT && m.text + m.text_len == data + size);
        char shown[SM_MAX_TEXT + 1], small[8];
        sm_printable(m.text, m.text_len, shown, sizeof(shown));
        FUZZ_CHECK(strlen(shown) == m.text_len);
        for (size_t i = 0; shown[i]; i++)
            FUZZ_CHECK(shown[i] >= 0x20 && shown[i] < 0x7F);
        sm_printable(m.text, m.text_len, small, sizeof(small));
        FUZZ_CHECK(strlen(small) <= sizeof(small) - 1);
        FUZZ_CHECK(sm_reason_text(m.reason) != NULL);
        /* the encoder takes a C string: texts with a NUL do not round-trip */
        char *text = malloc(m.text_len + 1);
        FUZZ_CHECK(text);
        memcpy(text, m.text, m.text_len);
        text[m.text_len] = 0;
        compare = strlen(text) == m.text_len;
        n = sm_encode_error(out, size + 1, m.reason, text);
        free(text);
        break;
    }
    case SM_START:
        n = sm_encode_start(out, size + 1, m.offset);
        break;
    case SM_DATA:
        FUZZ_CHECK(m.data == data + 1 && m.data_len == size - 1 && m.data_len >= 1 &&
                   m.data_len <= SM_MAX_CHUNK);
        out[0] = SM_DATA;
        memcpy(out + SM_DATA_HEADER, m.data, m.data_len);
        n = SM_DATA_HEADER + m.data_len;
        break;
    case SM_DONE:
        n = sm_encode_done(out, size + 1, m.hash);
        break;
    case SM_VERDICT:
        FUZZ_CHECK(m.ok <= 1);
        n = sm_encode_verdict(out, size + 1, m.ok, m.hash);
        break;
    default:
        FUZZ_CHECK(!"sm_decode accepted an unknown type");
    }
    if (compare) {
        FUZZ_CHECK(n == size);
        FUZZ_CHECK(memcmp(out, data, size) == 0);
    }
    free(out);
    return 0;
}
