/* DTLS 1.2 between two identity keys over memory "sockets" (secure.h).
 *
 * mbedTLS pitfalls handled here (docs/SECURITY.md):
 *  - VERIFY_REQUIRED, never OPTIONAL (OPTIONAL accepts a client that sends
 *    no certificate); the verify callback compares the SHA-256 of the
 *    peer's public key with the expected hash in constant time, and after
 *    the handshake we check that this comparison happened and matched.
 *  - mbedTLS refuses VERIFY_REQUIRED without a CA chain, so our own
 *    certificate is installed as the (otherwise meaningless) chain; trust
 *    comes only from the key comparison.
 *  - DTLS timers run on the caller's clock (mbedtls_ssl_set_timer_cb).
 *  - No HelloVerifyRequest cookies: every datagram reaching this channel
 *    came over a path already verified with the session's HMAC probes, so
 *    the handshake cannot be aimed at a third party. */
#include <mbedtls/error.h>
#include <mbedtls/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "crypto_impl.h"
#include "secure.h"

struct secure {
    secure_config cfg;
    secure_callbacks cb;
    void *user;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    int state;
    bool key_checked;           /* the verify callback saw the peer's key ... */
    bool key_matched;           /* ... and it was the expected one */
    bool auth_failed;
    bool timed_out;
    char why[160];
    uint64_t now;
    uint64_t int_at, fin_at;    /* DTLS timer; fin_at UINT64_MAX = cancelled */
    const uint8_t *in;          /* datagram being fed */
    size_t in_len;
};

/* ChaCha20-Poly1305 first: with mbedTLS 2.28 it seals and opens ~1.7x
 * faster than AES-128-GCM on x86-64 even with AES-NI (its GHASH is the
 * slow part; docs/BENCHMARKS.md), and bulk throughput is CPU-bound. */
static const int suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    0,
};
static const mbedtls_ecp_group_id curves[] = {
    MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_NONE,
};

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    secure *s = ctx;
    if (s->cb.transmit)
        s->cb.transmit(s->user, buf, len);
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    secure *s = ctx;
    if (!s->in)
        return MBEDTLS_ERR_SSL_WANT_READ;
    const uint8_t *d = s->in;
    size_t n = s->in_len;
    s->in = NULL;
    if (n > len)
        return MBEDTLS_ERR_SSL_WANT_READ; /* larger than any record: drop */
    memcpy(buf, d, n);
    return (int)n;
}

static void set_timer(void *ctx, uint32_t int_ms, uint32_t fin_ms)
{
    secure *s = ctx;
    if (fin_ms == 0) {
        s->fin_at = UINT64_MAX;
        return;
    }
    s->int_at = s->now + int_ms;
    s->fin_at = s->now + fin_ms;
}

static int get_timer(void *ctx)
{
    secure *s = ctx;
    if (s->fin_at == UINT64_MAX)
        return -1;
    if (s->in)
        return 0; /* a datagram is being fed: read it before retransmitting */
    if (s->now >= s->fin_at)
        return 2;
    return s->now >= s->int_at ? 1 : 0;
}

static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    secure *s = ctx;
    if (depth > 0) {
        *flags = 0; /* no chain is trusted or needed: only the leaf key counts */
        return 0;
    }
    s->key_checked = true;
    s->key_matched = pk_matches(&crt->pk, s->cfg.peer_hash);
    *flags = s->key_matched ? 0 : MBEDTLS_X509_BADCERT_NOT_TRUSTED;
    return 0;
}

static void fail(secure *s, int rc)
{
    if (s->state == SEC_FAILED)
        return;
    s->state = SEC_FAILED;
    s->fin_at = UINT64_MAX;
    char m[100];
    mbedtls_strerror(rc, m, sizeof(m));
    if (s->key_checked && !s->key_matched) {
        s->auth_failed = true;
        snprintf(s->why, sizeof(s->why), "the peer's key is not the expected peer id");
    } else if (rc == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE ||
               rc == MBEDTLS_ERR_SSL_PEER_VERIFY_FAILED || rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        s->auth_failed = true;
        snprintf(s->why, sizeof(s->why), "the peer presented no valid certificate (%s)", m);
    } else if (rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && s->ssl.in_msg &&
               s->ssl.in_msg[1] >= MBEDTLS_SSL_ALERT_MSG_BAD_CERT &&
               s->ssl.in_msg[1] <= MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED) {
        /* bad_certificate .. access_denied (RFC 5246 7.2.2): the peer
         * refused our certificate, i.e. our key is not the one it expects
         * (or pinned) */
        s->auth_failed = true;
        snprintf(s->why, sizeof(s->why), "the peer refused our key (alert %u): it expects "
                                         "another key for this name", s->ssl.in_msg[1]);
    } else if (rc == MBEDTLS_ERR_SSL_TIMEOUT) {
        s->timed_out = true;
        snprintf(s->why, sizeof(s->why), "encryption handshake timed out");
    } else {
        snprintf(s->why, sizeof(s->why), "encryption handshake failed: %s", m);
    }
}

/* Run the handshake as far as it goes; then drain application records. */
static void step(secure *s)
{
    if (s->state == SEC_HANDSHAKE) {
        int rc = mbedtls_ssl_handshake(&s->ssl);
        if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
            return;
        if (rc != 0) {
            fail(s, rc);
            return;
        }
        /* Belt and braces: a handshake without the peer's certificate and
         * our comparison of its key must never count as authenticated. */
        if (!s->key_checked || !s->key_matched || !mbedtls_ssl_get_peer_cert(&s->ssl)) {
            fail(s, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
            return;
        }
        s->state = SEC_OPEN;
    }
    if (s->state != SEC_OPEN)
        return;
    uint8_t buf[SECURE_MAX_PLAIN + 256];
    for (;;) {
        int n = mbedtls_ssl_read(&s->ssl, buf, sizeof(buf));
        if (n > 0) {
            if (s->cb.plain)
                s->cb.plain(s->user, buf, (size_t)n);
            if (s->state != SEC_OPEN)
                return;
            continue;
        }
        if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE || n == 0)
            return;
        if (n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
            s->state = SEC_FAILED;
            snprintf(s->why, sizeof(s->why), "the peer closed the encrypted channel");
            return;
        }
        fail(s, n);
        return;
    }
}

secure *secure_new(const secure_config *cfg, const secure_callbacks *cb, void *user)
{
    secure *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cfg = *cfg;
    if (!s->cfg.hs_min_ms)
        s->cfg.hs_min_ms = 250;
    if (!s->cfg.hs_max_ms)
        s->cfg.hs_max_ms = 8000;
    if (!s->cfg.mtu)
        s->cfg.mtu = SECURE_MTU;
    if (cb)
        s->cb = *cb;
    s->user = user;
    s->fin_at = UINT64_MAX;
    mbedtls_ssl_config_init(&s->conf);
    mbedtls_ssl_init(&s->ssl);
    identity *self = (identity *)cfg->self;
    mbedtls_ssl_config *c = &s->conf;
    if (mbedtls_ssl_config_defaults(c, cfg->client ? MBEDTLS_SSL_IS_CLIENT : MBEDTLS_SSL_IS_SERVER,
                                    MBEDTLS_SSL_TRANSPORT_DATAGRAM, MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        goto fail;
    mbedtls_ssl_conf_rng(c, crypto_rng, NULL);
    mbedtls_ssl_conf_min_version(c, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(c, suites);
    mbedtls_ssl_conf_curves(c, curves);
    mbedtls_ssl_conf_authmode(c, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_verify(c, verify_cb, s);
    mbedtls_ssl_conf_ca_chain(c, &self->cert, NULL);
    mbedtls_ssl_conf_handshake_timeout(c, s->cfg.hs_min_ms, s->cfg.hs_max_ms);
    mbedtls_ssl_conf_dtls_cookies(c, NULL, NULL, NULL);
    mbedtls_ssl_conf_dtls_anti_replay(c, MBEDTLS_SSL_ANTI_REPLAY_ENABLED);
    if (!cfg->no_certificate && mbedtls_ssl_conf_own_cert(c, &self->cert, &self->pk) != 0)
        goto fail;
    if (mbedtls_ssl_setup(&s->ssl, c) != 0)
        goto fail;
    mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
    mbedtls_ssl_set_timer_cb(&s->ssl, s, set_timer, get_timer);
    mbedtls_ssl_set_mtu(&s->ssl, s->cfg.mtu);
    return s;
fail:
    secure_free(s);
    return NULL;
}

void secure_free(secure *s)
{
    if (!s)
        return;
    mbedtls_ssl_free(&s->ssl);
    mbedtls_ssl_config_free(&s->conf);
    free(s);
}

void secure_start(secure *s, uint64_t now)
{
    s->now = now;
    step(s);
}

void secure_input(secure *s, const uint8_t *dgram, size_t len, uint64_t now)
{
    if (s->state == SEC_FAILED || !len)
        return;
    s->now = now;
    s->in = dgram;
    s->in_len = len;
    step(s);
    s->in = NULL;
}

int secure_write(secure *s, const uint8_t *data, size_t len, uint64_t now)
{
    if (s->state != SEC_OPEN || len > SECURE_MAX_PLAIN)
        return -1;
    s->now = now;
    int rc = mbedtls_ssl_write(&s->ssl, data, len);
    if (rc == (int)len)
        return 0;
    if (rc < 0 && rc != MBEDTLS_ERR_SSL_WANT_WRITE)
        fail(s, rc);
    return -1;
}

void secure_tick(secure *s, uint64_t now)
{
    s->now = now;
    if (s->state != SEC_FAILED && s->fin_at != UINT64_MAX && now >= s->fin_at)
        step(s);
}

uint64_t secure_next_deadline(const secure *s)
{
    return s->state == SEC_FAILED ? UINT64_MAX : s->fin_at;
}

int secure_state(const secure *s)
{
    return s->state;
}

const char *secure_error(const secure *s)
{
    return s->why;
}

bool secure_auth_failed(const secure *s)
{
    return s->auth_failed;
}

bool secure_timed_out(const secure *s)
{
    return s->timed_out;
}

const char *secure_suite(const secure *s)
{
    const char *n = mbedtls_ssl_get_ciphersuite(&s->ssl);
    return n ? n : "";
}
