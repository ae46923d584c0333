/* Shared by the fuzz targets (tests/fuzz/fuzz_*.c), the replay driver
 * (replay.c) and the seed generator (gen_corpus.c).
 *
 * Each target defines LLVMFuzzerTestOneInput.  Built with clang and
 * -fsanitize=fuzzer it is a libFuzzer binary (PUNCHLINE_FUZZ, scripts/fuzz.sh);
 * linked with replay.c by any compiler it replays the committed corpus
 * tests/fuzz/corpus/<target>/ under CTest (fuzz_replay_<target>). */
#ifndef PL_FUZZ_H
#define PL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "punchline.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant the code under test promises: a failure aborts, which the
 * fuzzer records as a crash and the replay as a failed test. */
#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* The token target's server secret (gen_corpus.c mints its seeds with it). */
#define FUZZ_TOKEN_SECRET "fuzz-token-secret-0123456789abcdef"
/* The token target checks tokens at this time (unix seconds). */
#define FUZZ_TOKEN_NOW 1700000000u

/* What every consumer of a decoded envelope relies on (fuzz_common.c):
 * wire_decode's result re-encodes to the very bytes it came from, each
 * bounded field is within its bound, every endpoint converts (or is
 * refused) cleanly and prints and parses back, names are printable. */
void fuzz_check_envelope(const uint8_t *buf, size_t len, Punchline__Envelope *env);

/* Decode buf as wire_decode would for a TCP frame body and check the
 * result; returns wire_decode's status. */
int fuzz_decode_envelope(const uint8_t *buf, size_t len);

#endif
