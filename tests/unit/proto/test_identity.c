/* Identity keys: id text form, create/load, permissions, corrupt files,
 * signatures. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "identity.h"

static char dir[64];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof(dir), "/tmp/pl-idtest-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(identity, .init = mkdir_tmp, .fini = rm_tmp);

Test(identity, id_round_trip_and_rejects)
{
    uint8_t h[ID_HASH_LEN], back[ID_HASH_LEN];
    for (int i = 0; i < ID_HASH_LEN; i++)
        h[i] = (uint8_t)(i * 37 + 5);
    char id[ID_TEXT_LEN + 1];
    identity_format_id(h, id);
    cr_assert_eq(strlen(id), ID_TEXT_LEN);
    cr_assert_eq(identity_parse_id(id, back), 0);
    cr_assert_arr_eq(h, back, ID_HASH_LEN);
    for (char *p = id; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 32);
    cr_assert_eq(identity_parse_id(id, back), 0, "upper case accepted");
    cr_assert_arr_eq(h, back, ID_HASH_LEN);
    cr_assert_eq(identity_parse_id("", back), -1);
    cr_assert_eq(identity_parse_id(NULL, back), -1);
    id[3] = '1';
    cr_assert_eq(identity_parse_id(id, back), -1, "1 is not base32");
    identity_format_id(h, id);
    id[ID_TEXT_LEN - 1] = id[ID_TEXT_LEN - 1] == 'b' ? 'c' : 'b'; /* non-zero pad bits */
    uint8_t x[ID_HASH_LEN];
    /* either another valid id or rejected, never the same hash */
    cr_assert(identity_parse_id(id, x) == -1 || memcmp(x, h, ID_HASH_LEN) != 0);
    char longer[ID_TEXT_LEN + 2];
    identity_format_id(h, longer);
    strcat(longer, "a");
    cr_assert_eq(identity_parse_id(longer, back), -1);
}

Test(identity, known_answer_id)
{
    /* SHA-256("") = e3b0c442...; base32 of it computed with
     * python3 -c 'import base64,hashlib;print(base64.b32encode(hashlib.sha256(b"").digest()).decode().lower().rstrip("="))' */
    uint8_t h[ID_HASH_LEN];
    identity_hash_pub((const uint8_t *)"", 0, h);
    char id[ID_TEXT_LEN + 1];
    identity_format_id(h, id);
    cr_assert_str_eq(id, "4oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkq");
}

Test(identity, create_then_load_same_key_mode_0600)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/sub/dir/id.pem", dir);
    char err[256];
    identity *a, *b;
    cr_assert_eq(identity_load(path, true, &a, err, sizeof(err)), 0, "%s", err);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(identity_load(path, false, &b, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(identity_id(a), identity_id(b));
    identity_free(a);
    identity_free(b);
}

Test(identity, missing_without_create_is_an_error)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/none.pem", dir);
    char err[256];
    identity *a;
    cr_assert_eq(identity_load(path, false, &a, err, sizeof(err)), -1);
    cr_assert_null(a);
    cr_assert(strstr(err, "No such file"), "%s", err);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

Test(identity, corrupt_file_is_an_error_and_kept)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/bad.pem", dir);
    write_file(path, "-----BEGIN EC PRIVATE KEY-----\nnot base64\n-----END EC PRIVATE KEY-----\n", 0600);
    char err[256];
    identity *a;
    cr_assert_eq(identity_load(path, true, &a, err, sizeof(err)), -1);
    cr_assert(strstr(err, "not a valid PEM private key"), "%s", err);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_gt(st.st_size, 10, "never silently replaced");
}

Test(identity, open_permissions_are_refused)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/k.pem", dir);
    char err[256];
    identity *a;
    cr_assert_eq(identity_load(path, true, &a, err, sizeof(err)), 0, "%s", err);
    identity_free(a);
    chmod(path, 0644);
    cr_assert_eq(identity_load(path, false, &a, err, sizeof(err)), -1);
    cr_assert(strstr(err, "chmod 600"), "%s", err);
}

Test(identity, sign_and_verify)
{
    identity *a = identity_ephemeral(), *b = identity_ephemeral();
    cr_assert(a && b);
    uint8_t sig[ID_SIG_MAX], h[ID_HASH_LEN];
    size_t n;
    cr_assert_eq(identity_sign(a, (const uint8_t *)"message", 7, sig, &n), 0);
    size_t pl;
    const uint8_t *pub = identity_pub(a, &pl);
    cr_assert_eq(identity_verify(pub, pl, (const uint8_t *)"message", 7, sig, n, h), 0);
    cr_assert_arr_eq(h, identity_hash(a), ID_HASH_LEN);
    cr_assert_eq(identity_verify(pub, pl, (const uint8_t *)"messagf", 7, sig, n, NULL), -1);
    size_t bl;
    const uint8_t *pubb = identity_pub(b, &bl);
    cr_assert_eq(identity_verify(pubb, bl, (const uint8_t *)"message", 7, sig, n, NULL), -1);
    sig[n / 2] ^= 0x40;
    cr_assert_eq(identity_verify(pub, pl, (const uint8_t *)"message", 7, sig, n, NULL), -1);
    cr_assert_eq(identity_verify(pub, pl - 1, (const uint8_t *)"message", 7, sig, n, NULL), -1);
    cr_assert_eq(identity_verify((const uint8_t *)"junk", 4, (const uint8_t *)"m", 1, sig, n, NULL), -1);
    identity_free(a);
    identity_free(b);
}

/* Several processes creating the same key file at once end up with one key
 * (the link() in identity.c), and the directory it creates is private. */
Test(identity, concurrent_creation_yields_one_key)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/race/id.pem", dir);
    int fds[4][2];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pipe(fds[i]), 0);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            char err[256];
            identity *id;
            if (identity_load(path, true, &id, err, sizeof(err)) != 0)
                _exit(1);
            ssize_t w = write(fds[i][1], identity_id(id), ID_TEXT_LEN);
            _exit(w == ID_TEXT_LEN ? 0 : 1);
        }
        close(fds[i][1]);
    }
    char ids[4][ID_TEXT_LEN + 1];
    for (int i = 0; i < 4; i++) {
        memset(ids[i], 0, sizeof(ids[i]));
        cr_assert_eq(read(fds[i][0], ids[i], ID_TEXT_LEN), ID_TEXT_LEN);
        close(fds[i][0]);
        int st;
        wait(&st);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    for (int i = 1; i < 4; i++)
        cr_assert_str_eq(ids[i], ids[0]);
    char d[128];
    snprintf(d, sizeof(d), "%s/race", dir);
    struct stat st;
    cr_assert_eq(stat(d, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700);
}

Test(identity, group_readable_is_refused)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/g.pem", dir);
    char err[256];
    identity *a;
    cr_assert_eq(identity_load(path, true, &a, err, sizeof(err)), 0, "%s", err);
    identity_free(a);
    chmod(path, 0640);
    cr_assert_eq(identity_load(path, true, &a, err, sizeof(err)), -1);
    cr_assert(strstr(err, "mode 640"), "%s", err);
}
