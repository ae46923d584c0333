/* punchline-secure-bench: cost of the end-to-end channel (proto/secure.h)
 * and the raw AEAD ceiling under it, in one process (bench/secure_bulk.sh,
 * docs/BENCHMARKS.md).
 *
 *   punchline-secure-bench handshake N
 *       N complete DTLS 1.2 handshakes between two ephemeral identities over
 *       an in-memory link (each side's datagrams handed to the other, fake
 *       clock), context creation and teardown included.  Wall and process
 *       CPU per handshake, and each side's share: thread CPU time spent in
 *       the calls into that side (secure_new/start/input/tick/free).  Then
 *       the CPU of one ECDSA P-256 sign and verify with an identity key
 *       (each side does one of each per handshake).
 *   punchline-secure-bench records SIZE SECONDS
 *       after one handshake, secure_write SIZE-byte records (<= 1280) on the
 *       client and secure_input them on the server, for SECONDS: plaintext
 *       MB/s, and CPU per record for sealing and for opening.
 *   punchline-secure-bench aead SIZE SECONDS
 *       the ceiling: AES-128-GCM (mbedtls_gcm) and ChaCha20-Poly1305
 *       (mbedtls_chachapoly) seal + open of SIZE-byte buffers with a 12-byte
 *       nonce and 13-byte AAD, as a DTLS 1.2 record has; MB/s of plaintext
 *       through seal+open on one core (comparable with `records`), and of
 *       seal and open alone (what one side of a transfer pays).
 *
 * One summary line per result, "key=value" separated by spaces, first word
 * the mode.  MB = 10^6 bytes.
 *
 * This file includes mbedTLS headers directly for the aead mode: the "one
 * crypto door" rule (ARCHITECTURE.md rule 6) binds the library, not bench/,
 * and the ceiling has to be measured without secure.c in the way. */
#include <mbedtls/chachapoly.h>
#include <mbedtls/gcm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "identity.h"
#include "secure.h"

#define QMAX 64
#define DGRAM_MAX 1500

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_s(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }
static double thread_cpu_s(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

static void die(const char *what)
{
    fprintf(stderr, "punchline-secure-bench: %s\n", what);
    exit(1);
}

/* One end of the in-memory link. */
typedef struct side {
    secure *s;
    struct side *other;
    uint8_t q[QMAX][DGRAM_MAX]; /* datagrams this side sent, not yet delivered */
    size_t qlen[QMAX];
    size_t nq;
    double cpu;                 /* thread CPU seconds spent inside this side's calls */
    uint64_t got, got_bytes;    /* application records received */
} side;

static void on_tx(void *u, const uint8_t *d, size_t n)
{
    side *sd = u;
    if (sd->nq >= QMAX || n > DGRAM_MAX)
        die("link queue overflow");
    memcpy(sd->q[sd->nq], d, n);
    sd->qlen[sd->nq++] = n;
}

static void on_plain(void *u, const uint8_t *d, size_t n)
{
    side *sd = u;
    sd->got++;
    sd->got_bytes += n;
}

static const secure_callbacks cbs = {.transmit = on_tx, .plain = on_plain};

/* Hand what `from` queued to the other side, charging the other side's CPU. */
static void deliver(side *from, uint64_t now)
{
    static uint8_t q[QMAX][DGRAM_MAX];
    size_t ql[QMAX], n = from->nq;
    memcpy(q, from->q, n * sizeof(q[0]));
    memcpy(ql, from->qlen, n * sizeof(ql[0]));
    from->nq = 0;
    side *to = from->other;
    double t0 = thread_cpu_s();
    for (size_t i = 0; i < n; i++)
        secure_input(to->s, q[i], ql[i], now);
    to->cpu += thread_cpu_s() - t0;
}

/* Create both ends and run one handshake to completion; 0 when both open. */
static int handshake(side *a, side *b, const identity *ka, const identity *kb, uint64_t now)
{
    a->other = b;
    b->other = a;
    a->nq = b->nq = 0;
    secure_config ca = {.self = ka, .client = true}, cb = {.self = kb, .client = false};
    memcpy(ca.peer_hash, identity_hash(kb), ID_HASH_LEN);
    memcpy(cb.peer_hash, identity_hash(ka), ID_HASH_LEN);

    double t0 = thread_cpu_s();
    a->s = secure_new(&ca, &cbs, a);
    double t1 = thread_cpu_s();
    b->s = secure_new(&cb, &cbs, b);
    double t2 = thread_cpu_s();
    if (!a->s || !b->s)
        die("secure_new failed");
    secure_start(a->s, now);
    double t3 = thread_cpu_s();
    a->cpu += (t1 - t0) + (t3 - t2);
    b->cpu += t2 - t1;

    /* A lossless link: no retransmission timer should ever fire, but drive
     * secure_tick on the fake clock anyway so a stall cannot hang the bench. */
    uint64_t end = now + 20000;
    while (now < end) {
        deliver(a, now);
        deliver(b, now);
        if (a->nq || b->nq)
            continue;
        if (secure_state(a->s) != SEC_HANDSHAKE && secure_state(b->s) != SEC_HANDSHAKE)
            break;
        uint64_t d = secure_next_deadline(a->s), e = secure_next_deadline(b->s);
        uint64_t t = d < e ? d : e;
        if (t == UINT64_MAX)
            break;
        now = t > now ? t : now + 1;
        double u0 = thread_cpu_s();
        secure_tick(a->s, now);
        double u1 = thread_cpu_s();
        secure_tick(b->s, now);
        double u2 = thread_cpu_s();
        a->cpu += u1 - u0;
        b->cpu += u2 - u1;
    }
    if (secure_state(a->s) != SEC_OPEN || secure_state(b->s) != SEC_OPEN) {
        fprintf(stderr, "punchline-secure-bench: handshake failed: client '%s', server '%s'\n",
                secure_error(a->s), secure_error(b->s));
        return -1;
    }
    return 0;
}

static void destroy(side *a, side *b)
{
    double t0 = thread_cpu_s();
    secure_free(a->s);
    double t1 = thread_cpu_s();
    secure_free(b->s);
    double t2 = thread_cpu_s();
    a->cpu += t1 - t0;
    b->cpu += t2 - t1;
    a->s = b->s = NULL;
}

static side A, B; /* large queues: static */

static int mode_handshake(long n)
{
    identity *ka = identity_ephemeral(), *kb = identity_ephemeral();
    if (!ka || !kb)
        die("identity_ephemeral failed");
    const char *suite = "";
    char suite_buf[96] = "";
    /* One handshake off the clock: first-touch page faults, lazy tables. */
    if (handshake(&A, &B, ka, kb, 1000) != 0)
        return 1;
    destroy(&A, &B);
    A.cpu = B.cpu = 0;

    double w0 = wall_s(), c0 = cpu_s();
    for (long i = 0; i < n; i++) {
        if (handshake(&A, &B, ka, kb, 1000 + (uint64_t)i * 100000) != 0)
            return 1;
        if (i == 0) {
            snprintf(suite_buf, sizeof(suite_buf), "%s", secure_suite(A.s));
            suite = suite_buf;
        }
        destroy(&A, &B);
    }
    double wall = wall_s() - w0, cpu = cpu_s() - c0;
    printf("handshake n=%ld suite=%s wall_s=%.3f cpu_s=%.3f ms_wall=%.3f ms_cpu=%.3f "
           "ms_cpu_client=%.3f ms_cpu_server=%.3f per_s=%.1f\n",
           n, suite, wall, cpu, wall * 1e3 / (double)n, cpu * 1e3 / (double)n,
           A.cpu * 1e3 / (double)n, B.cpu * 1e3 / (double)n, (double)n / wall);

    /* Where the handshake's CPU goes: the identity key's ECDSA P-256
     * operations alone (each side signs once and verifies once). */
    uint8_t sig[ID_SIG_MAX];
    size_t siglen, publen;
    const uint8_t *pub = identity_pub(ka, &publen);
    const int m = 100;
    double s0 = cpu_s();
    for (int i = 0; i < m; i++)
        if (identity_sign(ka, (const uint8_t *)"punchline", 9, sig, &siglen) != 0)
            die("identity_sign failed");
    double s1 = cpu_s();
    for (int i = 0; i < m; i++)
        if (identity_verify(pub, publen, (const uint8_t *)"punchline", 9, sig, siglen, NULL) != 0)
            die("identity_verify failed");
    double s2 = cpu_s();
    printf("ecdsa curve=p256 n=%d ms_cpu_sign=%.3f ms_cpu_verify=%.3f\n", m,
           (s1 - s0) * 1e3 / m, (s2 - s1) * 1e3 / m);
    identity_free(ka);
    identity_free(kb);
    return 0;
}

static int mode_records(size_t size, double seconds)
{
    identity *ka = identity_ephemeral(), *kb = identity_ephemeral();
    if (!ka || !kb)
        die("identity_ephemeral failed");
    if (handshake(&A, &B, ka, kb, 1000) != 0)
        return 1;
    static uint8_t msg[SECURE_MAX_PLAIN];
    for (size_t i = 0; i < size; i++)
        msg[i] = (uint8_t)('a' + i % 26);
    A.cpu = B.cpu = 0;
    B.got = B.got_bytes = 0;
    uint64_t sent = 0, wire = 0;
    double w0 = wall_s(), c0 = cpu_s(), wall;
    for (;;) {
        /* Batches of 64 between clock reads; per-side CPU per batch. */
        double t0 = thread_cpu_s();
        for (int i = 0; i < 64; i++) {
            if (secure_write(A.s, msg, size, 2000) != 0)
                die("secure_write refused the record (the channel's MTU, 1200 by default, "
                    "keeps a record's plaintext below SECURE_MAX_PLAIN)");
            if (A.nq != 1)
                die("one record should be one datagram");
            wire += A.qlen[0];
            double t1 = thread_cpu_s();
            A.cpu += t1 - t0;
            A.nq = 0;
            secure_input(B.s, A.q[0], A.qlen[0], 2000);
            t0 = thread_cpu_s();
            B.cpu += t0 - t1;
        }
        sent += 64;
        wall = wall_s() - w0;
        if (wall >= seconds)
            break;
    }
    double cpu = cpu_s() - c0;
    if (B.got != sent || B.got_bytes != sent * size)
        die("records lost or altered");
    printf("records size=%zu suite=%s n=%llu wire_bytes_per_record=%.0f seconds=%.3f "
           "MBps=%.1f records_per_s=%.0f us_cpu_per_record=%.3f us_seal=%.3f us_open=%.3f\n",
           size, secure_suite(A.s), (unsigned long long)sent, (double)wire / (double)sent, wall,
           (double)(sent * size) / wall / 1e6, (double)sent / wall, cpu * 1e6 / (double)sent,
           A.cpu * 1e6 / (double)sent, B.cpu * 1e6 / (double)sent);
    destroy(&A, &B);
    identity_free(ka);
    identity_free(kb);
    return 0;
}

static int mode_aead(size_t size, double seconds)
{
    static uint8_t pt[SECURE_MAX_PLAIN], ct[SECURE_MAX_PLAIN], out[SECURE_MAX_PLAIN];
    uint8_t key[32], iv[12] = {0}, aad[13] = {0}, tag[16];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < size; i++)
        pt[i] = (uint8_t)('a' + i % 26);

    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    if (mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key, 128) != 0)
        die("gcm setkey");
    mbedtls_chachapoly_context cp;
    mbedtls_chachapoly_init(&cp);
    if (mbedtls_chachapoly_setkey(&cp, key) != 0)
        die("chachapoly setkey");

    for (int alg = 0; alg < 2; alg++) {
        uint64_t n = 0;
        double w0 = wall_s(), wall, seal = 0, open = 0;
        for (;;) {
            for (int i = 0; i < 64; i++, n++) {
                memcpy(iv + 4, &n, sizeof(n)); /* a fresh nonce per record, as DTLS does */
                int rc, rc2;
                /* seal and open timed apart: a sender only seals, a receiver only opens */
                double t0 = wall_s();
                if (alg == 0)
                    rc = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, size, iv, sizeof(iv),
                                                   aad, sizeof(aad), pt, ct, sizeof(tag), tag);
                else
                    rc = mbedtls_chachapoly_encrypt_and_tag(&cp, size, iv, aad, sizeof(aad), pt,
                                                            ct, tag);
                double t1 = wall_s();
                if (alg == 0)
                    rc2 = mbedtls_gcm_auth_decrypt(&gcm, size, iv, sizeof(iv), aad, sizeof(aad),
                                                   tag, sizeof(tag), ct, out);
                else
                    rc2 = mbedtls_chachapoly_auth_decrypt(&cp, size, iv, aad, sizeof(aad), tag, ct,
                                                          out);
                double t2 = wall_s();
                seal += t1 - t0;
                open += t2 - t1;
                if (rc != 0 || rc2 != 0)
                    die("aead failed");
            }
            wall = wall_s() - w0;
            if (wall >= seconds)
                break;
        }
        if (memcmp(out, pt, size) != 0)
            die("aead round trip mismatch");
        printf("aead alg=%s size=%zu n=%llu seconds=%.3f MBps=%.1f us_per_seal_open=%.3f "
               "us_seal=%.3f us_open=%.3f seal_MBps=%.1f open_MBps=%.1f\n",
               alg == 0 ? "aes-128-gcm" : "chacha20-poly1305", size, (unsigned long long)n, wall,
               (double)(n * size) / wall / 1e6, wall * 1e6 / (double)n, seal * 1e6 / (double)n,
               open * 1e6 / (double)n, (double)(n * size) / seal / 1e6,
               (double)(n * size) / open / 1e6);
    }
    mbedtls_gcm_free(&gcm);
    mbedtls_chachapoly_free(&cp);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "Usage: punchline-secure-bench handshake N\n"
                    "       punchline-secure-bench records SIZE SECONDS\n"
                    "       punchline-secure-bench aead SIZE SECONDS\n"
                    "SIZE 1..%d bytes.\n",
            SECURE_MAX_PLAIN);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && !strcmp(argv[1], "handshake")) {
        char *end;
        long n = strtol(argv[2], &end, 10);
        if (*end || n < 1) {
            usage();
            return 2;
        }
        return mode_handshake(n);
    }
    if (argc == 4 && (!strcmp(argv[1], "records") || !strcmp(argv[1], "aead"))) {
        char *end, *end2;
        long size = strtol(argv[2], &end, 10);
        double seconds = strtod(argv[3], &end2);
        if (*end || *end2 || size < 1 || size > SECURE_MAX_PLAIN || !(seconds > 0)) {
            usage();
            return 2;
        }
        return !strcmp(argv[1], "records") ? mode_records((size_t)size, seconds)
                                           : mode_aead((size_t)size, seconds);
    }
    usage();
    return 2;
}
