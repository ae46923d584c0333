/* The inner Envelope a peer decodes from its end-to-end channel
 * (peer/conn.c sec_plain): the plaintext of one DTLS application record,
 * at most SECURE_MAX_PLAIN bytes, of which only Data, Ack and Close are
 * used.  The record is authenticated, but by the remote peer: as hostile as
 * anything else. */
#include "fuzz.h"

#include <string.h>

#include "secure.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > SECURE_MAX_PLAIN)
        return 0;
    Punchline__Envelope *env = NULL;
    int rc = wire_decode(data, size, &env, NULL);
    FUZZ_CHECK((rc == WIRE_OK) == (env != NULL));
    if (!env)
        return 0;
    fuzz_check_envelope(data, size, env);
    switch (env->body_case) {
    case PUNCHLINE__ENVELOPE__BODY_DATA:
        FUZZ_CHECK(env->data->payload.len <= WIRE_MAX_PAYLOAD);
        FUZZ_CHECK(!(env->data->fin && env->data->payload.len));
        if (env->data->payload.len)
            FUZZ_CHECK(env->data->payload.data != NULL);
        break;
    case PUNCHLINE__ENVELOPE__BODY_ACK:
        break;
    case PUNCHLINE__ENVELOPE__BODY_CLOSE:
        /* conn.c reads reason[0] */
        FUZZ_CHECK(env->close->reason && strlen(env->close->reason) <= WIRE_MAX_TEXT);
        break;
    default:
        break; /* ignored by the peer */
    }
    wire_free(env);
    return 0;
}
