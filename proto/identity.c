/* Identity keys: load, create, sign, verify, and the self-signed
 * certificate the DTLS handshake presents. */
#include <errno.h>
#include <fcntl.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/error.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "crypto_impl.h"

#define KEY_FILE_MAX 4096

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

void identity_hash_pub(const uint8_t *pub, size_t len, uint8_t out[ID_HASH_LEN])
{
    mbedtls_sha256_ret(pub, len, out, 0);
}

void identity_format_id(const uint8_t hash[ID_HASH_LEN], char out[ID_TEXT_LEN + 1])
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < ID_HASH_LEN; i++) {
        acc = (acc << 8) | hash[i];
        bits += 8;
        while (bits >= 5) {
            out[n++] = b32[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[n++] = b32[(acc << (5 - bits)) & 31];
    out[n] = 0;
}

int identity_parse_id(const char *text, uint8_t hash[ID_HASH_LEN])
{
    if (!text || strlen(text) != ID_TEXT_LEN)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < ID_TEXT_LEN; i++) {
        char ch = text[i];
        int v = ch >= 'a' && ch <= 'z' ? ch - 'a'
                : ch >= 'A' && ch <= 'Z' ? ch - 'A'
                : ch >= '2' && ch <= '7' ? ch - '2' + 26
                                         : -1;
        if (v < 0)
            return -1;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            hash[n++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    /* 52 * 5 = 260 bits: the last 4 must be zero (one spelling per id). */
    return (acc & ((1u << bits) - 1)) == 0 && n == ID_HASH_LEN ? 0 : -1;
}

int identity_default_path(char *out, size_t cap)
{
    const char *x = getenv("XDG_CONFIG_HOME"), *h = getenv("HOME");
    int n;
    if (x && x[0] == '/')
        n = snprintf(out, cap, "%s/punchline/identity.pem", x);
    else if (h && h[0])
        n = snprintf(out, cap, "%s/.config/punchline/identity.pem", h);
    else
        return -1;
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static identity *alloc_identity(void)
{
    identity *id = calloc(1, sizeof(*id));
    if (!id)
        return NULL;
    mbedtls_pk_init(&id->pk);
    mbedtls_x509_crt_init(&id->cert);
    return id;
}

void identity_free(identity *id)
{
    if (!id)
        return;
    mbedtls_pk_free(&id->pk);
    mbedtls_x509_crt_free(&id->cert);
    free(id);
}

/* SHA-256 of the key's DER SubjectPublicKeyInfo as mbedTLS writes it: the
 * one spelling both the rendezvous and the DTLS verifier hash. */
int pk_hash(mbedtls_pk_context *pk, uint8_t out[ID_HASH_LEN])
{
    uint8_t der[ID_PUB_MAX + 64];
    int n = mbedtls_pk_write_pubkey_der(pk, der, sizeof(der));
    if (n <= 0 || (size_t)n > ID_PUB_MAX)
        return -1;
    identity_hash_pub(der + sizeof(der) - (size_t)n, (size_t)n, out);
    return 0;
}

bool pk_matches(mbedtls_pk_context *pk, const uint8_t expected[ID_HASH_LEN])
{
    uint8_t h[ID_HASH_LEN];
    return pk_hash(pk, h) == 0 && crypto_equal(h, expected, ID_HASH_LEN);
}

/* Public key, hash, id and the self-signed certificate from id->pk. */
static int finish(identity *id)
{
    uint8_t der[ID_PUB_MAX + 64];
    int n = mbedtls_pk_write_pubkey_der(&id->pk, der, sizeof(der));
    if (n <= 0 || (size_t)n > ID_PUB_MAX)
        return -1;
    id->publen = (size_t)n;
    memcpy(id->pub, der + sizeof(der) - (size_t)n, (size_t)n); /* written at the end */
    identity_hash_pub(id->pub, id->publen, id->hash);
    identity_format_id(id->hash, id->id);

    /* Nobody checks the name, dates or issuer: peers compare the key with
     * the peer id they expect (secure.c), so one fixed form serves all. */
    mbedtls_x509write_cert w;
    mbedtls_mpi serial;
    uint8_t crt[1024];
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);
    int rc = -1;
    if (mbedtls_mpi_lset(&serial, 1) == 0) {
        mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
        mbedtls_x509write_crt_set_subject_key(&w, &id->pk);
        mbedtls_x509write_crt_set_issuer_key(&w, &id->pk);
        if (mbedtls_x509write_crt_set_subject_name(&w, "CN=punchline peer") == 0 &&
            mbedtls_x509write_crt_set_issuer_name(&w, "CN=punchline peer") == 0 &&
            mbedtls_x509write_crt_set_serial(&w, &serial) == 0 &&
            mbedtls_x509write_crt_set_validity(&w, "20240101000000", "20991231235959") == 0) {
            n = mbedtls_x509write_crt_der(&w, crt, sizeof(crt), crypto_rng, NULL);
            if (n > 0 && mbedtls_x509_crt_parse_der(&id->cert, crt + sizeof(crt) - (size_t)n,
                                                    (size_t)n) == 0)
                rc = 0;
        }
    }
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&w);
    return rc;
}

static int generate(identity *id)
{
    if (mbedtls_pk_setup(&id->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
        mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(id->pk), crypto_rng, NULL) != 0)
        return -1;
    return finish(id);
}

identity *identity_ephemeral(void)
{
    identity *id = alloc_identity();
    if (id && generate(id) != 0) {
        identity_free(id);
        return NULL;
    }
    return id;
}

static int mkdirs(const char *path, char *err, size_t errlen)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = 0;
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            goto fail;
        *p = '/';
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
    return -1;
}

/* Write a new key to path without ever exposing a partial file: a private
 * temporary file, then link() (fails if another process got there first,
 * in which case its key is the one we load). */
static int create_file(identity *id, const char *path, char *err, size_t errlen)
{
    unsigned char pem[KEY_FILE_MAX];
    if (generate(id) != 0 || mbedtls_pk_write_key_pem(&id->pk, pem, sizeof(pem)) != 0) {
        mbedtls_platform_zeroize(pem, sizeof(pem));
        snprintf(err, errlen, "cannot generate an identity key");
        return -1;
    }
    if (mkdirs(path, err, errlen) != 0) {
        mbedtls_platform_zeroize(pem, sizeof(pem));
        return -1;
    }
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        mbedtls_platform_zeroize(pem, sizeof(pem));
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t len = strlen((char *)pem);
    bool ok = fchmod(fd, 0600) == 0 && write(fd, pem, len) == (ssize_t)len && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok) {
        mbedtls_platform_zeroize(pem, sizeof(pem));
        unlink(tmp);
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(saved));
        return -1;
    }
    mbedtls_platform_zeroize(pem, sizeof(pem));
    int rc = link(tmp, path);
    saved = errno;
    unlink(tmp);
    if (rc == 0) {
        /* make the new name durable: a lost file would mean a new id */
        char dir[1100];
        snprintf(dir, sizeof(dir), "%s", path);
        char *sl = strrchr(dir, '/');
        if (sl)
            *(sl == dir ? sl + 1 : sl) = 0;
        int dfd = open(sl ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    if (rc != 0 && saved != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(saved));
        return -1;
    }
    return rc == 0 ? 0 : 1; /* 1: someone else's key is there now */
}

static int read_file(identity *id, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read identity key %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "identity key %s is not a regular file", path);
        return -1;
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        snprintf(err, errlen, "identity key %s belongs to another user (uid %u)", path,
                 (unsigned)st.st_uid);
        return -1;
    }
    if (st.st_mode & 077) {
        close(fd);
        snprintf(err, errlen,
                 "identity key %s is accessible by others (mode %03o); run: chmod 600 %s", path,
                 (unsigned)(st.st_mode & 0777), path);
        return -1;
    }
    unsigned char buf[KEY_FILE_MAX + 1];
    ssize_t n = read(fd, buf, KEY_FILE_MAX);
    close(fd);
    if (n < 0 || n >= KEY_FILE_MAX) {
        snprintf(err, errlen, "cannot read identity key %s: %s", path,
                 n < 0 ? strerror(errno) : "file too large");
        return -1;
    }
    buf[n] = 0;
    int rc = mbedtls_pk_parse_key(&id->pk, buf, (size_t)n + 1, NULL, 0);
    mbedtls_platform_zeroize(buf, sizeof(buf));
    if (rc != 0) {
        char m[100];
        mbedtls_strerror(rc, m, sizeof(m));
        snprintf(err, errlen, "identity key %s is not a valid PEM private key (%s)", path, m);
        return -1;
    }
    if (mbedtls_pk_get_type(&id->pk) != MBEDTLS_PK_ECKEY ||
        mbedtls_pk_ec(id->pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
        snprintf(err, errlen, "identity key %s is not an ECDSA P-256 key", path);
        return -1;
    }
    if (finish(id) != 0) {
        snprintf(err, errlen, "identity key %s: cannot derive the public key", path);
        return -1;
    }
    return 0;
}

int identity_load(const char *path, bool create, identity **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!path || !path[0]) {
        snprintf(err, errlen, "no identity key path");
        return -1;
    }
    identity *id = alloc_identity();
    if (!id) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct stat st;
    if (create && lstat(path, &st) != 0 && errno == ENOENT) {
        int rc = create_file(id, path, err, errlen);
        if (rc < 0) {
            identity_free(id);
            return -1;
        }
        if (rc == 0) {
            *out = id;
            return 0;
        }
        identity_free(id); /* lost the race: load the winner's key */
        id = alloc_identity();
        if (!id) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (read_file(id, path, err, errlen) != 0) {
        identity_free(id);
        return -1;
    }
    *out = id;
    return 0;
}

const uint8_t *identity_pub(const identity *id, size_t *len)
{
    *len = id->publen;
    return id->pub;
}

const uint8_t *identity_hash(const identity *id)
{
    return id->hash;
}

const char *identity_id(const identity *id)
{
    return id->id;
}

int identity_sign(const identity *id, const uint8_t *msg, size_t len, uint8_t *sig,
                  size_t *siglen)
{
    uint8_t h[32];
    uint8_t buf[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    size_t n = 0;
    mbedtls_sha256_ret(msg, len, h, 0);
    if (mbedtls_pk_sign((mbedtls_pk_context *)&id->pk, MBEDTLS_MD_SHA256, h, sizeof(h), buf, &n,
                        crypto_rng, NULL) != 0 ||
        n > ID_SIG_MAX)
        return -1;
    memcpy(sig, buf, n);
    *siglen = n;
    return 0;
}

int identity_verify(const uint8_t *pub, size_t publen, const uint8_t *msg, size_t len,
                    const uint8_t *sig, size_t siglen, uint8_t hash_out[ID_HASH_LEN])
{
    if (!pub || !publen || publen > ID_PUB_MAX || !sig || !siglen || siglen > ID_SIG_MAX)
        return -1;
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    int rc = -1;
    uint8_t h[32];
    if (mbedtls_pk_parse_public_key(&pk, pub, publen) == 0 &&
        mbedtls_pk_get_type(&pk) == MBEDTLS_PK_ECKEY &&
        mbedtls_pk_ec(pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1) {
        mbedtls_sha256_ret(msg, len, h, 0);
        rc = mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, h, sizeof(h), sig, siglen) == 0 ? 0 : -1;
        if (rc == 0 && hash_out)
            rc = pk_hash(&pk, hash_out);
    }
    mbedtls_pk_free(&pk);
    return rc;
}
