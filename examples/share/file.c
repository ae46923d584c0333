/* punchline-share, the file side (see file.h). */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

/* mbedTLS 3 dropped the _ret suffixes that 2.28 (Debian 12) still needs. */
#if MBEDTLS_VERSION_MAJOR >= 3
#define sha_starts mbedtls_sha256_starts
#define sha_update mbedtls_sha256_update
#define sha_finish mbedtls_sha256_finish
#else
#define sha_starts mbedtls_sha256_starts_ret
#define sha_update mbedtls_sha256_update_ret
#define sha_finish mbedtls_sha256_finish_ret
#endif

struct sf_reader {
    int fd;
    const char *path;          /* for messages (the caller's string) */
    struct stat st;            /* at open, for sf_reader_changed() */
    uint64_t size;
    uint64_t pos;              /* bytes read and hashed */
    uint64_t target;           /* sf_reader_step() hashes up to here */
    mbedtls_sha256_context sha;
    uint8_t *buf;              /* SF_STEP bytes for prefix hashing */
};

struct sf_writer {
    int fd;
    char *part, *final, *dir;
    uint64_t size;
    uint64_t have;             /* part file length when opened */
    uint64_t pos;              /* bytes hashed (before start) / written */
    mbedtls_sha256_context sha;
    uint8_t *buf;
};

static void digest_of(const mbedtls_sha256_context *ctx, uint8_t out[SM_HASH_LEN])
{
    mbedtls_sha256_context copy;
    mbedtls_sha256_init(&copy);
    mbedtls_sha256_clone(&copy, ctx);
    sha_finish(&copy, out);
    mbedtls_sha256_free(&copy);
}

static void sha_reset(mbedtls_sha256_context *ctx)
{
    sha_starts(ctx, 0);
}

/* Read exactly n bytes at off; 0, or -1 with errno (0 for end of file). */
static int read_full(int fd, uint8_t *buf, size_t n, uint64_t off)
{
    while (n) {
        ssize_t r = pread(fd, buf, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = 0;
            return -1;
        }
        buf += r, n -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

/* ---- sender ------------------------------------------------------------ */

int sf_reader_open(sf_reader **out, const char *path, char *err, size_t errcap)
{
    struct stat st;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errcap, "%s is a directory (punchline-share sends one regular file)", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errcap, "%s is not a regular file", path);
        goto fail;
    }
    /* the non-blocking open only kept a FIFO from hanging us */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    sf_reader *r = calloc(1, sizeof(*r));
    uint8_t *buf = malloc(SF_STEP);
    if (!r || !buf) {
        free(r);
        free(buf);
        snprintf(err, errcap, "out of memory");
        goto fail;
    }
    r->fd = fd;
    r->path = path;
    r->st = st;
    r->size = (uint64_t)st.st_size;
    r->buf = buf;
    mbedtls_sha256_init(&r->sha);
    sha_reset(&r->sha);
    *out = r;
    return 0;
fail:
    close(fd);
    return -1;
}

void sf_reader_free(sf_reader *r)
{
    if (!r)
        return;
    close(r->fd);
    mbedtls_sha256_free(&r->sha);
    free(r->buf);
    free(r);
}

uint64_t sf_reader_size(const sf_reader *r)
{
    return r->size;
}

void sf_reader_rewind(sf_reader *r, uint64_t offset)
{
    sha_reset(&r->sha);
    r->pos = 0;
    r->target = offset < r->size ? offset : r->size;
}

int sf_reader_step(sf_reader *r, char *err, size_t errcap)
{
    if (r->pos >= r->target)
        return 1;
    uint64_t left = r->target - r->pos;
    size_t n = left < SF_STEP ? (size_t)left : SF_STEP;
    if (read_full(r->fd, r->buf, n, r->pos) != 0) {
        snprintf(err, errcap, "reading the file: %s", errno ? strerror(errno) : "it shrank");
        return -1;
    }
    sha_update(&r->sha, r->buf, n);
    r->pos += n;
    return r->pos >= r->target;
}

void sf_reader_digest_so_far(const sf_reader *r, uint8_t out[SM_HASH_LEN])
{
    digest_of(&r->sha, out);
}

uint64_t sf_reader_pos(const sf_reader *r)
{
    return r->pos;
}

int sf_reader_read(sf_reader *r, uint8_t *buf, size_t n, char *err, size_t errcap)
{
    if (read_full(r->fd, buf, n, r->pos) != 0) {
        snprintf(err, errcap, "reading the file at byte %llu: %s", (unsigned long long)r->pos,
                 errno ? strerror(errno) : "it shrank while being sent");
        return -1;
    }
    sha_update(&r->sha, buf, n);
    r->pos += n;
    return 0;
}

bool sf_reader_changed(const sf_reader *r, char *err, size_t errcap)
{
    struct stat st;
    if (fstat(r->fd, &st) != 0) {
        snprintf(err, errcap, "%s: %s", r->path, strerror(errno));
        return true;
    }
    if (st.st_size != r->st.st_size || st.st_mtim.tv_sec != r->st.st_mtim.tv_sec ||
        st.st_mtim.tv_nsec != r->st.st_mtim.tv_nsec) {
        snprintf(err, errcap, "%s changed while it was being sent: send it again", r->path);
        return true;
    }
    return false;
}

/* ---- receiver ---------------------------------------------------------- */

int sf_dir_check(const char *dir, char *err, size_t errcap)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        snprintf(err, errcap, "--out %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errcap, "--out %s is not a directory", dir);
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errcap, "--out %s: cannot write there: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

static char *join(const char *dir, const char *a, const char *b, const char *c)
{
    size_t n = strlen(dir) + 1 + strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = n <= PATH_MAX ? malloc(n) : NULL;
    if (s)
        snprintf(s, n, "%s/%s%s%s", dir, a, b, c);
    return s;
}

void sf_writer_free(sf_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd); /* releases the lock */
    mbedtls_sha256_free(&w->sha);
    free(w->part);
    free(w->final);
    free(w->dir);
    free(w->buf);
    free(w);
}

int sf_writer_open(sf_writer **out, const char *dir, const char *name, uint64_t size, bool force,
                   int *reason, char *err, size_t errcap)
{
    struct stat st;
    struct statvfs vfs;
    *out = NULL;
    *reason = SM_R_IO;
    sf_writer *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    w->fd = -1;
    mbedtls_sha256_init(&w->sha);
    sha_reset(&w->sha);
    w->size = size;
    w->part = join(dir, ".", name, SM_PART_SUFFIX);
    w->final = join(dir, "", name, "");
    w->dir = strdup(dir);
    w->buf = malloc(SF_STEP);
    if (!w->part || !w->final || !w->dir || !w->buf) {
        snprintf(err, errcap, "out of memory or path too long");
        goto fail;
    }
    if (lstat(w->final, &st) == 0) {
        *reason = SM_R_EXISTS;
        if (!force) {
            snprintf(err, errcap, "%s exists (--force replaces it)", w->final);
            goto fail;
        }
        if (!S_ISREG(st.st_mode)) {
            snprintf(err, errcap, "%s exists and is not a regular file: not replaced", w->final);
            goto fail;
        }
        *reason = SM_R_IO;
    } else if (errno != ENOENT) {
        snprintf(err, errcap, "%s: %s", w->final, strerror(errno));
        goto fail;
    }
    /* Free space for what is still missing (a part file longer than the
     * offer is dropped below, so it counts as nothing). */
    uint64_t have = 0;
    if (lstat(w->part, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size <= size)
        have = (uint64_t)st.st_size;
    if (statvfs(dir, &vfs) != 0) {
        snprintf(err, errcap, "%s: %s", dir, strerror(errno));
        goto fail;
    }
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (size - have > avail) {
        *reason = SM_R_NO_SPACE;
        snprintf(err, errcap, "not enough space in %s: %llu bytes needed, %llu available", dir,
                 (unsigned long long)(size - have), (unsigned long long)avail);
        goto fail;
    }
    /* O_NOFOLLOW: a symbolic link planted as the part file is refused. */
    w->fd = open(w->part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK, 0666);
    if (w->fd < 0) {
        snprintf(err, errcap, "%s: %s", w->part, strerror(errno));
        goto fail;
    }
    if (fstat(w->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errcap, "%s is not a regular file", w->part);
        goto fail;
    }
    fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) & ~O_NONBLOCK);
    if (flock(w->fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            *reason = SM_R_BUSY;
        snprintf(err, errcap, "%s: %s", w->part,
                 errno == EWOULDBLOCK ? "another punchline-share is receiving it" : strerror(errno));
        goto fail;
    }
    w->have = (uint64_t)st.st_size;
    if (w->have > size) {
        if (ftruncate(w->fd, 0) != 0) {
            snprintf(err, errcap, "%s: %s", w->part, strerror(errno));
            goto fail;
        }
        w->have = 0;
    }
    *out = w;
    return 0;
fail:
    sf_writer_free(w);
    return -1;
}

uint64_t sf_writer_have(const sf_writer *w)
{
    return w->have;
}

int sf_writer_step(sf_writer *w, char *err, size_t errcap)
{
    if (w->pos >= w->have)
        return 1;
    uint64_t left = w->have - w->pos;
    size_t n = left < SF_STEP ? (size_t)left : SF_STEP;
    if (read_full(w->fd, w->buf, n, w->pos) != 0) {
        snprintf(err, errcap, "%s: %s", w->part, errno ? strerror(errno) : "it shrank");
        return -1;
    }
    sha_update(&w->sha, w->buf, n);
    w->pos += n;
    return w->pos >= w->have;
}

void sf_writer_digest_so_far(const sf_writer *w, uint8_t out[SM_HASH_LEN])
{
    digest_of(&w->sha, out);
}

int sf_writer_start(sf_writer *w, uint64_t offset, char *err, size_t errcap)
{
    if (offset == w->have && w->pos == w->have)
        return 0;
    if (offset != 0) {
        snprintf(err, errcap, "sender starts at byte %llu, we have %llu",
                 (unsigned long long)offset, (unsigned long long)w->have);
        return -1;
    }
    if (ftruncate(w->fd, 0) != 0) {
        snprintf(err, errcap, "%s: %s", w->part, strerror(errno));
        return -1;
    }
    sha_reset(&w->sha);
    w->pos = w->have = 0;
    return 0;
}

uint64_t sf_writer_pos(const sf_writer *w)
{
    return w->pos;
}

int sf_writer_write(sf_writer *w, const uint8_t *data, size_t len, char *err, size_t errcap)
{
    sha_update(&w->sha, data, len);
    while (len) {
        ssize_t n = pwrite(w->fd, data, len, (off_t)w->pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errcap, "writing %s: %s", w->part, n < 0 ? strerror(errno) : "no progress");
            return -1;
        }
        data += n, len -= (size_t)n, w->pos += (uint64_t)n;
    }
    return 0;
}

int sf_writer_commit(sf_writer *w, bool force, char *err, size_t errcap)
{
    struct stat st;
    if (fsync(w->fd) != 0) {
        snprintf(err, errcap, "%s: %s", w->part, strerror(errno));
        return -1;
    }
    if (force) {
        if (rename(w->part, w->final) != 0) {
            snprintf(err, errcap, "renaming %s to %s: %s", w->part, w->final, strerror(errno));
            return -1;
        }
    } else if (link(w->part, w->final) == 0) {
        unlink(w->part);
    } else if (errno == EEXIST) {
        snprintf(err, errcap, "%s appeared meanwhile; not replaced (--force replaces it)", w->final);
        return -1;
    } else if (errno == EPERM || errno == EOPNOTSUPP || errno == EMLINK || errno == ENOSYS) {
        /* a file system without hard links: check, then rename (a small
         * window in which another program could create the name) */
        if (lstat(w->final, &st) == 0 || errno != ENOENT) {
            snprintf(err, errcap, "%s exists; not replaced (--force replaces it)", w->final);
            return -1;
        }
        if (rename(w->part, w->final) != 0) {
            snprintf(err, errcap, "renaming %s to %s: %s", w->part, w->final, strerror(errno));
            return -1;
        }
    } else {
        snprintf(err, errcap, "linking %s to %s: %s", w->part, w->final, strerror(errno));
        return -1;
    }
    int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { /* make the new name durable too */
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

void sf_writer_discard(sf_writer *w)
{
    unlink(w->part);
}

const char *sf_writer_part_path(const sf_writer *w)
{
    return w->part;
}

const char *sf_writer_final_path(const sf_writer *w)
{
    return w->final;
}
