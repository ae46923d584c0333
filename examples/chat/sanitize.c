#include "sanitize.h"

void chat_sanitize(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = in[i];
        if (b == 0xC2 && i + 1 < len && in[i + 1] >= 0x80 && in[i + 1] <= 0x9F) {
            out[o++] = '?';
            i++;
        } else if ((b < 32 && b != '\t') || b == 127) {
            out[o++] = '?';
        } else {
            out[o++] = (char)b;
        }
    }
    out[o] = 0;
}
