/* punchline-share, the file side: the file being sent (sf_reader) and the
 * file being received (sf_writer), each with the running SHA-256 of the
 * bytes it read or wrote.  Blocking file I/O, no network, no event loop:
 * the long parts (hashing a prefix already received) are steps the caller
 * drives from its loop.  The only user of mbedTLS in the tool.
 *
 * The receiver's files in DIR (docs/SHARE.md "Files"):
 *   DIR/.NAME.punchline-part   the bytes received so far, in order; its
 *                              length is where a later transfer resumes;
 *                              locked (flock) while a transfer writes it
 *   DIR/NAME                   the part file, renamed after the SHA-256 of
 *                              the whole file matched the sender's
 */
#ifndef SHARE_FILE_H
#define SHARE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

/* Bytes hashed or read per step; a step takes a few ms. */
#define SF_STEP (1u << 20)

typedef struct sf_reader sf_reader;
typedef struct sf_writer sf_writer;

/* ---- sender ---- */

/* Open path for sending: it must be a readable regular file.  On failure
 * returns -1 with a message for the user in err. */
int sf_reader_open(sf_reader **out, const char *path, char *err, size_t errcap);
void sf_reader_free(sf_reader *r);
uint64_t sf_reader_size(const sf_reader *r);
/* Start hashing the first `offset` bytes (offset <= size) from the start of
 * the file; sf_reader_step() until it returns 1. */
void sf_reader_rewind(sf_reader *r, uint64_t offset);
/* Hash up to SF_STEP more bytes of the prefix.  1 = prefix done, 0 = more
 * to do, -1 = read error (message in err). */
int sf_reader_step(sf_reader *r, char *err, size_t errcap);
/* SHA-256 of the bytes hashed so far (the running hash goes on). */
void sf_reader_digest_so_far(const sf_reader *r, uint8_t out[SM_HASH_LEN]);
/* Where the next sf_reader_read() reads. */
uint64_t sf_reader_pos(const sf_reader *r);
/* Read exactly n bytes at the current position into buf and add them to
 * the hash.  0, or -1 (read error, or the file shrank) with err. */
int sf_reader_read(sf_reader *r, uint8_t *buf, size_t n, char *err, size_t errcap);
/* Has the file changed since it was opened (size or modification time)?
 * true with a message in err. */
bool sf_reader_changed(const sf_reader *r, char *err, size_t errcap);

/* ---- receiver ---- */

/* At start: DIR must be an existing, writable directory.  -1 with err. */
int sf_dir_check(const char *dir, char *err, size_t errcap);
/* Prepare to receive NAME (already checked with sm_name_check) of `size`
 * bytes into dir: refuse SM_R_EXISTS if DIR/NAME exists and !force (or is
 * not a regular file), SM_R_BUSY if another process holds the part file,
 * SM_R_NO_SPACE if the file system lacks the bytes still missing, SM_R_IO
 * on other errors; each with a message in err.  Otherwise opens (creates)
 * the part file, locks it, drops its content if it is longer than size,
 * and returns 0; sf_writer_have() tells what it already holds. */
int sf_writer_open(sf_writer **out, const char *dir, const char *name, uint64_t size, bool force,
                   int *reason, char *err, size_t errcap);
/* Close (keeping the part file for a later resume).  NULL is a no-op. */
void sf_writer_free(sf_writer *w);
uint64_t sf_writer_have(const sf_writer *w);
/* Hash the part file's content, SF_STEP bytes a call: 1 = done, 0 = more,
 * -1 = read error (err). */
int sf_writer_step(sf_writer *w, char *err, size_t errcap);
void sf_writer_digest_so_far(const sf_writer *w, uint8_t out[SM_HASH_LEN]);
/* The sender starts at offset: either sf_writer_have() (append; the hash
 * goes on) or 0 (truncate, restart the hash).  -1 with err otherwise. */
int sf_writer_start(sf_writer *w, uint64_t offset, char *err, size_t errcap);
/* Bytes written so far (the next offset). */
uint64_t sf_writer_pos(const sf_writer *w);
/* Append len bytes (and hash them).  -1 with err on a write error. */
int sf_writer_write(sf_writer *w, const uint8_t *data, size_t len, char *err, size_t errcap);
/* Make the part file durable and move it to DIR/NAME: without force never
 * replacing an existing file (link(2) fails with EEXIST rather than
 * overwrite).  0, or -1 with err (the part file stays). */
int sf_writer_commit(sf_writer *w, bool force, char *err, size_t errcap);
/* Remove the part file (its content proved wrong). */
void sf_writer_discard(sf_writer *w);
const char *sf_writer_part_path(const sf_writer *w);
const char *sf_writer_final_path(const sf_writer *w);

#endif
