/* One Envelope as a TCP frame body carries it (control connection, punched
 * TCP, TCP relay): wire_decode and what its callers then rely on. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16384) /* frame.h: 1..FRAME_MAX bytes reach wire_decode */
        return 0;
    (void)fuzz_decode_envelope(data, size);
    return 0;
}
