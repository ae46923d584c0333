/* TLS 1.2 over a non-blocking TCP socket, for the control connection
 * between a peer and the rendezvous (docs/SECURITY.md).  Part of the
 * crypto door: no mbedTLS type appears here.
 *
 * The server side presents a certificate chain and key from PEM files; the
 * client side verifies the server either against a CA file (chain and host
 * name) or by a pinned fingerprint: the SHA-256 of the server certificate's
 * public key, written like a peer id (identity.h), which
 * `punchline-rendezvous --show-fingerprint` prints. */
#ifndef PL_TLS_STREAM_H
#define PL_TLS_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "identity.h"

/* Return values of the calls below besides byte counts. */
#define TLS_WANT_READ (-2)    /* call again when the socket is readable */
#define TLS_WANT_WRITE (-3)   /* call again (same arguments) when writable */
#define TLS_ERROR (-1)        /* failed for good: see tls_stream_error() */

typedef struct tls_conf tls_conf;
typedef struct tls_stream tls_stream;

/* Server: certificate chain (leaf first) and private key, PEM.  NULL and a
 * reason in err on failure. */
tls_conf *tls_conf_server(const char *cert_file, const char *key_file, char *err, size_t errlen);
/* Server with a self-signed certificate made at start from the ECDSA
 * P-256 key in key_file (created, mode 0600, if missing; see identity.h):
 * peers pin its fingerprint. */
tls_conf *tls_conf_server_key(const char *key_file, char *err, size_t errlen);
/* Client: exactly one of ca_file (verify chain + host name) and fingerprint
 * (pinned key hash) is non-NULL; with a fingerprint, a copy of self's
 * certificate is the placeholder chain mbedTLS insists on. */
tls_conf *tls_conf_client(const char *ca_file, const uint8_t fingerprint[ID_HASH_LEN],
                          const identity *self, char *err, size_t errlen);
void tls_conf_free(tls_conf *c);
/* The server certificate's key hash (for --show-fingerprint). */
void tls_conf_fingerprint(const tls_conf *c, uint8_t out[ID_HASH_LEN]);

/* A TLS session on fd (connected, non-blocking).  hostname (client, CA
 * mode) is what the certificate must name. */
tls_stream *tls_stream_new(const tls_conf *c, int fd, const char *hostname);
void tls_stream_free(tls_stream *s);
/* 0 when the handshake is done, TLS_WANT_*, or TLS_ERROR. */
int tls_stream_handshake(tls_stream *s);
/* Bytes read (> 0), 0 when the peer closed, TLS_WANT_*, TLS_ERROR.  After a
 * read, more decrypted bytes may be buffered: loop while > 0. */
ssize_t tls_stream_read(tls_stream *s, uint8_t *buf, size_t len);
/* Bytes written (> 0), TLS_WANT_*, TLS_ERROR. */
ssize_t tls_stream_write(tls_stream *s, const uint8_t *buf, size_t len);
const char *tls_stream_error(const tls_stream *s);
/* True when the failure was the server's certificate or key (not a reset,
 * EOF or a protocol error). */
bool tls_stream_auth_failed(const tls_stream *s);

#endif
