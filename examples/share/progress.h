/* punchline-share progress bar: one status line at the bottom of a
 * terminal (bytes, percentage, rate, ETA, network path), redrawn in place;
 * other stderr lines are printed above it.  Off a terminal nothing is drawn
 * and pg_print() is a plain line on stderr.  No clock of its own: the
 * caller passes the time (seconds) and drives the redraws from its timer.
 */
#ifndef SHARE_PROGRESS_H
#define SHARE_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PG_SAMPLES 16              /* rate window: the last PG_SAMPLES ticks */

typedef struct progress {
    bool tty;                  /* draw at all */
    bool active;               /* between pg_begin() and pg_end() */
    bool shown;                /* the bar is on screen now */
    char name[64];             /* shown name (cut) */
    char path[16];             /* "direct-udp", ... */
    uint64_t total, done;
    double t0;                 /* pg_begin() time */
    double st[PG_SAMPLES];     /* (time, bytes) samples, a ring */
    uint64_t sb[PG_SAMPLES];
    unsigned ns, head;
} progress;

void pg_init(progress *p, bool tty);
/* Start a bar for `total` bytes of which `done` are there already. */
void pg_begin(progress *p, const char *name, uint64_t total, uint64_t done, double now);
void pg_set_done(progress *p, uint64_t done);
void pg_set_path(progress *p, const char *path);
/* Take a rate sample and redraw (on a terminal); call a few times a second. */
void pg_tick(progress *p, double now);
/* Remove the bar for good (before the final stdout line). */
void pg_end(progress *p);
/* One line on stderr (newline added), above the bar. */
void pg_print(progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The bar's text as drawn (without escapes); for tests. */
void pg_format(const progress *p, char *out, size_t cap);
/* Bytes per second over the sample window (0 while unknown). */
double pg_rate(const progress *p);
/* "12.3 MB" style, powers of 1000. */
void pg_size(uint64_t bytes, char *out, size_t cap);

#endif
