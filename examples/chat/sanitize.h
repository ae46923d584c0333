/* What punchline-chat does to a received message before printing it. */
#ifndef CHAT_SANITIZE_H
#define CHAT_SANITIZE_H

#include <stddef.h>
#include <stdint.h>

/* Copy text into out (len + 1 bytes) replacing control characters, so a
 * peer cannot drive our terminal: C0 (except tab), DEL, and UTF-8 encoded
 * C1 (U+0080..U+009F, 0xC2 0x80..0x9F, which some terminals obey).  Other
 * UTF-8 passes through.  out is NUL-terminated. */
void chat_sanitize(const uint8_t *in, size_t len, char *out);

#endif
