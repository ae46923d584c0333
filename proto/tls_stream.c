/* TLS 1.2 over a non-blocking socket (tls_stream.h). */
#include <errno.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "crypto.h"
#include "crypto_impl.h"
#include "tls_stream.h"

struct tls_conf {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt chain;     /* server: own chain; client: CA chain */
    mbedtls_pk_context key;
    bool pinned;
    uint8_t fp[ID_HASH_LEN];    /* client, pinned mode */
    identity *self;             /* server with a self-signed certificate */
};

struct tls_stream {
    const tls_conf *conf;
    mbedtls_ssl_context ssl;
    int fd;
    bool pin_ok;
    size_t pend;                /* length of a write that said WANT_WRITE */
    bool auth_failed;
    char why[200];
};

static const int suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    tls_stream *s = ctx;
    ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    tls_stream *s = ctx;
    ssize_t n = recv(s->fd, buf, len, 0);
    if (n >= 0)
        return (int)n; /* 0: EOF, mbedTLS reports it as a closed connection */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return MBEDTLS_ERR_SSL_WANT_READ;
    return MBEDTLS_ERR_NET_RECV_FAILED;
}

/* Pinned mode: only the leaf's key counts (like secure.c's peer check). */
static int pin_verify(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    tls_stream *s = ctx;
    if (depth > 0) {
        *flags = 0;
        return 0;
    }
    s->pin_ok = pk_matches(&crt->pk, s->conf->fp);
    *flags = s->pin_ok ? 0 : MBEDTLS_X509_BADCERT_NOT_TRUSTED;
    return 0;
}

static void errtext(char *err, size_t errlen, const char *what, const char *file, int rc)
{
    char m[120];
    mbedtls_strerror(rc, m, sizeof(m));
    snprintf(err, errlen, "%s %s: %s", what, file, m);
}

static tls_conf *conf_alloc(void)
{
    tls_conf *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_x509_crt_init(&c->chain);
    mbedtls_pk_init(&c->key);
    return c;
}

void tls_conf_free(tls_conf *c)
{
    if (!c)
        return;
    mbedtls_ssl_config_free(&c->conf);
    mbedtls_x509_crt_free(&c->chain);
    mbedtls_pk_free(&c->key);
    identity_free(c->self);
    free(c);
}

static int conf_common(tls_conf *c, int endpoint)
{
    if (mbedtls_ssl_config_defaults(&c->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        return -1;
    mbedtls_ssl_conf_rng(&c->conf, crypto_rng, NULL);
    mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&c->conf, suites);
    return 0;
}

tls_conf *tls_conf_server(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    tls_conf *c = conf_alloc();
    int rc;
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if ((rc = mbedtls_x509_crt_parse_file(&c->chain, cert_file)) != 0) {
        errtext(err, errlen, "cannot load TLS certificate", cert_file, rc);
        goto fail;
    }
    if ((rc = mbedtls_pk_parse_keyfile(&c->key, key_file, NULL)) != 0) {
        errtext(err, errlen, "cannot load TLS key", key_file, rc);
        goto fail;
    }
    if (mbedtls_pk_check_pair(&c->chain.pk, &c->key) != 0) {
        snprintf(err, errlen, "TLS key %s does not belong to certificate %s", key_file, cert_file);
        goto fail;
    }
    if (conf_common(c, MBEDTLS_SSL_IS_SERVER) != 0 ||
        mbedtls_ssl_conf_own_cert(&c->conf, &c->chain, &c->key) != 0) {
        snprintf(err, errlen, "cannot set up TLS");
        goto fail;
    }
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE); /* peers authenticate by signature */
    return c;
fail:
    tls_conf_free(c);
    return NULL;
}

tls_conf *tls_conf_server_key(const char *key_file, char *err, size_t errlen)
{
    tls_conf *c = conf_alloc();
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (identity_load(key_file, true, &c->self, err, errlen) != 0)
        goto fail;
    if (mbedtls_x509_crt_parse_der(&c->chain, c->self->cert.raw.p, c->self->cert.raw.len) != 0 ||
        conf_common(c, MBEDTLS_SSL_IS_SERVER) != 0 ||
        mbedtls_ssl_conf_own_cert(&c->conf, &c->chain, &c->self->pk) != 0) {
        snprintf(err, errlen, "cannot set up TLS");
        goto fail;
    }
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
    return c;
fail:
    tls_conf_free(c);
    return NULL;
}

tls_conf *tls_conf_client(const char *ca_file, const uint8_t fingerprint[ID_HASH_LEN],
                          const identity *self, char *err, size_t errlen)
{
    tls_conf *c = conf_alloc();
    int rc;
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if ((ca_file == NULL) == (fingerprint == NULL)) {
        snprintf(err, errlen, "TLS to the rendezvous needs a CA file or a fingerprint");
        goto fail;
    }
    if (conf_common(c, MBEDTLS_SSL_IS_CLIENT) != 0) {
        snprintf(err, errlen, "cannot set up TLS");
        goto fail;
    }
    if (ca_file) {
        if ((rc = mbedtls_x509_crt_parse_file(&c->chain, ca_file)) != 0) {
            errtext(err, errlen, "cannot load CA file", ca_file, rc);
            goto fail;
        }
        mbedtls_ssl_conf_ca_chain(&c->conf, &c->chain, NULL);
    } else {
        /* mbedTLS wants some chain with VERIFY_REQUIRED; trust comes only
         * from pin_verify.  The caller's own certificate serves (as in
         * secure.c); no key is generated for it. */
        if (!self || mbedtls_x509_crt_parse_der(&c->chain, self->cert.raw.p, self->cert.raw.len) != 0) {
            snprintf(err, errlen, "cannot set up TLS");
            goto fail;
        }
        mbedtls_ssl_conf_ca_chain(&c->conf, &c->chain, NULL);
        c->pinned = true;
        memcpy(c->fp, fingerprint, ID_HASH_LEN);
    }
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    return c;
fail:
    tls_conf_free(c);
    return NULL;
}

void tls_conf_fingerprint(const tls_conf *c, uint8_t out[ID_HASH_LEN])
{
    memset(out, 0, ID_HASH_LEN);
    pk_hash((mbedtls_pk_context *)&c->chain.pk, out);
}

tls_stream *tls_stream_new(const tls_conf *c, int fd, const char *hostname)
{
    tls_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->conf = c;
    s->fd = fd;
    mbedtls_ssl_init(&s->ssl);
    if (mbedtls_ssl_setup(&s->ssl, &c->conf) != 0 ||
        (hostname && !c->pinned && mbedtls_ssl_set_hostname(&s->ssl, hostname) != 0)) {
        tls_stream_free(s);
        return NULL;
    }
    if (c->pinned)
        mbedtls_ssl_set_verify(&s->ssl, pin_verify, s);
    mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
    return s;
}

void tls_stream_free(tls_stream *s)
{
    if (!s)
        return;
    mbedtls_ssl_free(&s->ssl);
    free(s);
}

static int map(tls_stream *s, int rc)
{
    if (rc == MBEDTLS_ERR_SSL_WANT_READ)
        return TLS_WANT_READ;
    if (rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return TLS_WANT_WRITE;
    if (!s->why[0]) {
        char m[120];
        mbedtls_strerror(rc, m, sizeof(m));
        uint32_t flags = mbedtls_ssl_get_verify_result(&s->ssl);
        s->auth_failed = rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
        if (s->conf->pinned && rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED)
            snprintf(s->why, sizeof(s->why), "the rendezvous' TLS key is not the pinned fingerprint");
        else if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags) {
            char v[120];
            mbedtls_x509_crt_verify_info(v, sizeof(v), "", flags);
            v[strcspn(v, "\n")] = 0;
            snprintf(s->why, sizeof(s->why), "rendezvous TLS certificate rejected: %s", v);
        } else
            snprintf(s->why, sizeof(s->why), "TLS: %s", m);
    }
    return TLS_ERROR;
}

int tls_stream_handshake(tls_stream *s)
{
    int rc = mbedtls_ssl_handshake(&s->ssl);
    if (rc == 0 && s->conf->pinned && !s->pin_ok)
        return map(s, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED); /* never trust without the pin check */
    return rc == 0 ? 0 : map(s, rc);
}

ssize_t tls_stream_read(tls_stream *s, uint8_t *buf, size_t len)
{
    int rc = mbedtls_ssl_read(&s->ssl, buf, len);
    if (rc > 0)
        return rc;
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        return 0;
    return map(s, rc);
}

ssize_t tls_stream_write(tls_stream *s, const uint8_t *buf, size_t len)
{
    /* After WANT_WRITE mbedTLS must be called with the same length again
     * (it then reports that length as written); callers only ever append
     * to their buffer, so re-offer exactly the pending length. */
    if (s->pend && len >= s->pend)
        len = s->pend;
    else if (len > 16384)
        len = 16384;
    int rc = mbedtls_ssl_write(&s->ssl, buf, len);
    s->pend = rc == MBEDTLS_ERR_SSL_WANT_WRITE ? len : 0;
    return rc >= 0 ? rc : map(s, rc);
}

bool tls_stream_auth_failed(const tls_stream *s)
{
    return s->auth_failed;
}

const char *tls_stream_error(const tls_stream *s)
{
    return s->why[0] ? s->why : "TLS failed";
}
