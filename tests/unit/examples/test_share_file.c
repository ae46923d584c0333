/* Unit tests for examples/share/file.c: the punchline-share file side, in a
 * scratch directory.  The receiver's promises (docs/SHARE.md "Files"):
 * data goes to DIR/.NAME.punchline-part and reaches DIR/NAME only by a
 * rename after the hash matched; an existing DIR/NAME is never replaced
 * without --force; a part file is resumed from its length, dropped when it
 * is longer than the offer, locked against a second receiver, and never
 * followed when it is a symbolic link; free space is checked first. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

static char dir[64];
static char err[512];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/share-file-test.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(file, .init = setup, .fini = teardown);

static char *path(const char *name)
{
    static char p[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
    return p[i];
}

static void put(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(path(name), "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* File content, or NULL if missing; *len set. */
static uint8_t *get(const char *name, size_t *len)
{
    FILE *f = fopen(path(name), "rb");
    if (!f)
        return NULL;
    static uint8_t buf[4 << 20];
    *len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    return buf;
}

static bool exists(const char *name)
{
    struct stat st;
    return lstat(path(name), &st) == 0;
}

static uint8_t *pattern(size_t n, uint8_t seed)
{
    uint8_t *b = malloc(n);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed + i * 7 + i / 251);
    return b;
}

/* SHA-256 of the first n bytes of a file, through the reader. */
static void reader_prefix(const char *name, uint64_t n, uint8_t out[SM_HASH_LEN])
{
    sf_reader *r;
    cr_assert_eq(sf_reader_open(&r, path(name), err, sizeof(err)), 0, "%s", err);
    sf_reader_rewind(r, n);
    int rc;
    while ((rc = sf_reader_step(r, err, sizeof(err))) == 0)
        ;
    cr_assert_eq(rc, 1, "%s", err);
    sf_reader_digest_so_far(r, out);
    sf_reader_free(r);
}

/* ---- sender ------------------------------------------------------------- */

Test(file, reader_known_vector)
{
    put("abc", "abc", 3);
    uint8_t h[SM_HASH_LEN];
    char hex[2 * SM_HASH_LEN + 1];
    reader_prefix("abc", 3, h);
    sm_hex(h, hex);
    /* FIPS 180-2 appendix B.1 */
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    reader_prefix("abc", 0, h);
    sm_hex(h, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(file, reader_refuses_missing_directory_special)
{
    sf_reader *r;
    cr_assert_eq(sf_reader_open(&r, path("nope"), err, sizeof(err)), -1);
    cr_assert(strstr(err, "No such file"), "%s", err);
    cr_assert_eq(sf_reader_open(&r, dir, err, sizeof(err)), -1);
    cr_assert(strstr(err, "is a directory"), "%s", err);
    cr_assert_eq(mkfifo(path("fifo"), 0600), 0);
    cr_assert_eq(sf_reader_open(&r, path("fifo"), err, sizeof(err)), -1);
    cr_assert(strstr(err, "not a regular file"), "%s", err);
}

/* The prefix hash goes on into the data read after it: the final digest is
 * the whole file's, whatever the prefix length. */
Test(file, reader_prefix_then_read)
{
    size_t n = 3 * SF_STEP + 123;
    uint8_t *data = pattern(n, 1), whole[SM_HASH_LEN], got[SM_HASH_LEN];
    put("f", data, n);
    reader_prefix("f", n, whole);
    uint64_t offsets[] = {0, 1, SF_STEP, SF_STEP + 5, n - 1, n};
    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        sf_reader *r;
        cr_assert_eq(sf_reader_open(&r, path("f"), err, sizeof(err)), 0);
        cr_assert_eq(sf_reader_size(r), n);
        sf_reader_rewind(r, offsets[i]);
        while (sf_reader_step(r, err, sizeof(err)) == 0)
            ;
        cr_assert_eq(sf_reader_pos(r), offsets[i]);
        uint8_t buf[40000];
        while (sf_reader_pos(r) < n) {
            size_t k = n - sf_reader_pos(r) < sizeof(buf) ? n - sf_reader_pos(r) : sizeof(buf);
            cr_assert_eq(sf_reader_read(r, buf, k, err, sizeof(err)), 0, "%s", err);
            cr_assert_eq(memcmp(buf, data + sf_reader_pos(r) - k, k), 0);
        }
        sf_reader_digest_so_far(r, got);
        cr_assert_arr_eq(got, whole, SM_HASH_LEN, "offset %llu", (unsigned long long)offsets[i]);
        sf_reader_free(r);
    }
    free(data);
}

Test(file, reader_file_shrinks)
{
    put("f", "0123456789", 10);
    sf_reader *r;
    cr_assert_eq(sf_reader_open(&r, path("f"), err, sizeof(err)), 0);
    cr_assert_eq(truncate(path("f"), 4), 0);
    uint8_t buf[10];
    cr_assert_eq(sf_reader_read(r, buf, 10, err, sizeof(err)), -1);
    cr_assert(strstr(err, "shrank"), "%s", err);
    sf_reader_free(r);
}

/* A file written to while it is sent is noticed (its hash would "match"
 * whatever mix of old and new bytes was read). */
Test(file, reader_changed)
{
    put("f", "0123456789", 10);
    sf_reader *r;
    cr_assert_eq(sf_reader_open(&r, path("f"), err, sizeof(err)), 0);
    cr_assert(!sf_reader_changed(r, err, sizeof(err)));
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    cr_assert_eq(utimensat(AT_FDCWD, path("f"), ts, 0), 0);
    cr_assert(sf_reader_changed(r, err, sizeof(err)));
    cr_assert(strstr(err, "changed while it was being sent"), "%s", err);
    sf_reader_free(r);
    cr_assert_eq(sf_reader_open(&r, path("f"), err, sizeof(err)), 0);
    put("f", "01234567890", 11); /* same second, other size */
    cr_assert(sf_reader_changed(r, err, sizeof(err)));
    sf_reader_free(r);
}

/* ---- receiver ----------------------------------------------------------- */

static sf_writer *wopen(const char *name, uint64_t size, bool force, int want_reason)
{
    sf_writer *w = NULL;
    int reason = 0;
    int rc = sf_writer_open(&w, dir, name, size, force, &reason, err, sizeof(err));
    if (want_reason) {
        cr_assert_eq(rc, -1, "open %s succeeded, want reason %d", name, want_reason);
        cr_assert_eq(reason, want_reason, "reason %d (%s), want %d", reason, err, want_reason);
        cr_assert_null(w);
        return NULL;
    }
    cr_assert_eq(rc, 0, "open %s: %s", name, err);
    return w;
}

static void hash_all(sf_writer *w)
{
    int rc;
    while ((rc = sf_writer_step(w, err, sizeof(err))) == 0)
        ;
    cr_assert_eq(rc, 1, "%s", err);
}

/* Fresh transfer: part file, then the rename; digests equal the reader's. */
Test(file, writer_fresh_commit)
{
    size_t n = 100000;
    uint8_t *data = pattern(n, 9), h[SM_HASH_LEN], want[SM_HASH_LEN];
    put("src", data, n);
    reader_prefix("src", n, want);
    sf_writer *w = wopen("out.bin", n, false, 0);
    cr_assert_eq(sf_writer_have(w), 0);
    cr_assert(exists(".out.bin.punchline-part"));
    hash_all(w);
    cr_assert_eq(sf_writer_start(w, 0, err, sizeof(err)), 0);
    cr_assert_eq(sf_writer_write(w, data, 1000, err, sizeof(err)), 0);
    cr_assert_eq(sf_writer_write(w, data + 1000, n - 1000, err, sizeof(err)), 0);
    cr_assert_eq(sf_writer_pos(w), n);
    sf_writer_digest_so_far(w, h);
    cr_assert_arr_eq(h, want, SM_HASH_LEN);
    cr_assert(!exists("out.bin"), "nothing at the final name before the commit");
    cr_assert_eq(sf_writer_commit(w, false, err, sizeof(err)), 0, "%s", err);
    cr_assert(!exists(".out.bin.punchline-part"));
    size_t len;
    uint8_t *got = get("out.bin", &len);
    cr_assert_not_null(got);
    cr_assert_eq(len, n);
    cr_assert_eq(memcmp(got, data, n), 0);
    cr_assert_str_eq(sf_writer_final_path(w), path("out.bin"));
    sf_writer_free(w);
    free(data);
}

/* Resume: the part file's length is the offset, its hash the prefix hash,
 * and appending the rest gives the whole file's hash. */
Test(file, writer_resume)
{
    size_t n = 2 * SF_STEP + 777, k = SF_STEP + 100;
    uint8_t *data = pattern(n, 3), h[SM_HASH_LEN], want[SM_HASH_LEN], prefix[SM_HASH_LEN];
    put("src", data, n);
    reader_prefix("src", n, want);
    reader_prefix("src", k, prefix);
    put(".big.punchline-part", data, k);
    sf_writer *w = wopen("big", n, false, 0);
    cr_assert_eq(sf_writer_have(w), k);
    hash_all(w);
    sf_writer_digest_so_far(w, h);
    cr_assert_arr_eq(h, prefix, SM_HASH_LEN);
    cr_assert_eq(sf_writer_start(w, 5, err, sizeof(err)), -1, "only have or 0");
    cr_assert_eq(sf_writer_start(w, k, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sf_writer_pos(w), k);
    cr_assert_eq(sf_writer_write(w, data + k, n - k, err, sizeof(err)), 0);
    sf_writer_digest_so_far(w, h);
    cr_assert_arr_eq(h, want, SM_HASH_LEN);
    cr_assert_eq(sf_writer_commit(w, false, err, sizeof(err)), 0, "%s", err);
    size_t len;
    uint8_t *got = get("big", &len);
    cr_assert_eq(len, n);
    cr_assert_eq(memcmp(got, data, n), 0);
    sf_writer_free(w);
    free(data);
}

/* The sender's prefix differs: START 0 truncates and restarts the hash. */
Test(file, writer_start_over)
{
    uint8_t want[SM_HASH_LEN], h[SM_HASH_LEN];
    put("src", "new content", 11);
    reader_prefix("src", 11, want);
    put(".f.punchline-part", "old", 3);
    sf_writer *w = wopen("f", 11, false, 0);
    cr_assert_eq(sf_writer_have(w), 3);
    hash_all(w);
    cr_assert_eq(sf_writer_start(w, 0, err, sizeof(err)), 0);
    cr_assert_eq(sf_writer_write(w, (const uint8_t *)"new content", 11, err, sizeof(err)), 0);
    sf_writer_digest_so_far(w, h);
    cr_assert_arr_eq(h, want, SM_HASH_LEN);
    size_t len;
    uint8_t *got = get(".f.punchline-part", &len);
    cr_assert_eq(len, 11);
    cr_assert_eq(memcmp(got, "new content", 11), 0);
    sf_writer_free(w);
}

/* A part file longer than the offered size is not this file: dropped. */
Test(file, writer_part_longer_than_offer)
{
    put(".f.punchline-part", "0123456789", 10);
    sf_writer *w = wopen("f", 4, false, 0);
    cr_assert_eq(sf_writer_have(w), 0);
    size_t len;
    cr_assert_not_null(get(".f.punchline-part", &len));
    cr_assert_eq(len, 0);
    sf_writer_free(w);
}

/* An existing file is never replaced without force, and stays untouched;
 * nothing else is created. */
Test(file, writer_exists)
{
    put("keep", "original", 8);
    wopen("keep", 5, false, SM_R_EXISTS);
    cr_assert(strstr(err, "exists"), "%s", err);
    cr_assert(!exists(".keep.punchline-part"));
    size_t len;
    uint8_t *got = get("keep", &len);
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(got, "original", 8), 0);
    /* a directory (or anything not a regular file) is not replaced even with force */
    cr_assert_eq(mkdir(path("sub"), 0700), 0);
    wopen("sub", 5, true, SM_R_EXISTS);
    cr_assert_eq(symlink("/etc/passwd", path("link")), 0);
    wopen("link", 5, true, SM_R_EXISTS);
}

Test(file, writer_force_replaces)
{
    put("keep", "original", 8);
    sf_writer *w = wopen("keep", 3, true, 0);
    hash_all(w);
    cr_assert_eq(sf_writer_start(w, 0, err, sizeof(err)), 0);
    cr_assert_eq(sf_writer_write(w, (const uint8_t *)"new", 3, err, sizeof(err)), 0);
    cr_assert_eq(sf_writer_commit(w, true, err, sizeof(err)), 0, "%s", err);
    size_t len;
    uint8_t *got = get("keep", &len);
    cr_assert_eq(len, 3);
    cr_assert_eq(memcmp(got, "new", 3), 0);
    sf_writer_free(w);
}

/* A file that appears at the final name during the transfer is not
 * replaced by the commit either; the data stays in the part file. */
Test(file, writer_commit_never_overwrites)
{
    sf_writer *w = wopen("late", 3, false, 0);
    hash_all(w);
    cr_assert_eq(sf_writer_start(w, 0, err, sizeof(err)), 0);
    cr_assert_eq(sf_writer_write(w, (const uint8_t *)"abc", 3, err, sizeof(err)), 0);
    put("late", "someone else's", 14);
    cr_assert_eq(sf_writer_commit(w, false, err, sizeof(err)), -1);
    cr_assert(strstr(err, "not replaced"), "%s", err);
    size_t len;
    uint8_t *got = get("late", &len);
    cr_assert_eq(len, 14);
    cr_assert_eq(memcmp(got, "someone else's", 14), 0);
    cr_assert(exists(".late.punchline-part"));
    sf_writer_free(w);
}

/* A second receiver of the same name in the same directory is BUSY. */
Test(file, writer_lock)
{
    sf_writer *w = wopen("same", 10, false, 0);
    wopen("same", 10, false, SM_R_BUSY);
    sf_writer_free(w);
    w = wopen("same", 10, false, 0); /* released on close */
    sf_writer_free(w);
}

/* A symbolic link planted as the part file is not followed. */
Test(file, writer_part_symlink)
{
    put("target", "precious", 8);
    cr_assert_eq(symlink(path("target"), path(".s.punchline-part")), 0);
    wopen("s", 100, false, SM_R_IO);
    size_t len;
    uint8_t *got = get("target", &len);
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(got, "precious", 8), 0);
}

Test(file, writer_no_space)
{
    wopen("huge", (uint64_t)INT64_MAX, false, SM_R_NO_SPACE);
    cr_assert(strstr(err, "not enough space"), "%s", err);
    cr_assert(!exists(".huge.punchline-part"), "no part file for a refused offer");
}

Test(file, writer_discard)
{
    sf_writer *w = wopen("bad", 3, false, 0);
    cr_assert(exists(".bad.punchline-part"));
    sf_writer_discard(w);
    cr_assert(!exists(".bad.punchline-part"));
    sf_writer_free(w);
}

Test(file, dir_check)
{
    cr_assert_eq(sf_dir_check(dir, err, sizeof(err)), 0);
    cr_assert_eq(sf_dir_check(path("missing"), err, sizeof(err)), -1);
    cr_assert(strstr(err, "No such file"), "%s", err);
    put("plain", "x", 1);
    cr_assert_eq(sf_dir_check(path("plain"), err, sizeof(err)), -1);
    cr_assert(strstr(err, "not a directory"), "%s", err);
}
