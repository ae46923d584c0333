/* Unit tests for examples/share/progress.c: the progress bar's text (what a
 * terminal shows; drawing itself only happens on a TTY). */
#include <criterion/criterion.h>
#include <string.h>

#include "progress.h"

Test(progress, sizes)
{
    char b[24];
    pg_size(0, b, sizeof(b));
    cr_assert_str_eq(b, "0 B");
    pg_size(999, b, sizeof(b));
    cr_assert_str_eq(b, "999 B");
    pg_size(1500, b, sizeof(b));
    cr_assert_str_eq(b, "1.5 kB");
    pg_size(100000000, b, sizeof(b));
    cr_assert_str_eq(b, "100.0 MB");
    pg_size(UINT64_MAX, b, sizeof(b));
    cr_assert_str_eq(b, "18.4 EB");
}

/* Rate over the sample window, ETA from it, the path, and the bar. */
Test(progress, line)
{
    progress p;
    char line[256];
    pg_init(&p, false);
    pg_begin(&p, "file.bin", 100000000, 20000000, 10.0);
    pg_format(&p, line, sizeof(line));
    cr_assert_str_eq(line, "file.bin [####................]  20% 20.0 MB/100.0 MB 0 B/s ETA --:-- -");
    pg_set_path(&p, "direct-udp");
    pg_set_done(&p, 30000000);
    pg_tick(&p, 11.0); /* 10 MB in 1 s */
    pg_format(&p, line, sizeof(line));
    cr_assert_str_eq(line, "file.bin [######..............]  30% 30.0 MB/100.0 MB 10.0 MB/s ETA 0:07 "
                           "direct-udp");
    pg_set_done(&p, 100000000);
    pg_tick(&p, 18.0);
    pg_format(&p, line, sizeof(line));
    cr_assert(strstr(line, "[####################] 100%"), "%s", line);
    cr_assert(strstr(line, "ETA 0:00"), "%s", line);
    pg_end(&p);
}

/* The sample window slides: an old fast period does not inflate the rate. */
Test(progress, window_slides)
{
    progress p;
    pg_init(&p, false);
    pg_begin(&p, "x", UINT64_MAX / 2, 0, 0.0);
    uint64_t done = 0;
    for (int i = 1; i <= 10; i++) {
        done += 100000000;
        pg_set_done(&p, done);
        pg_tick(&p, i);
    }
    for (int i = 11; i <= 40; i++) {
        done += 1000;
        pg_set_done(&p, done);
        pg_tick(&p, i);
    }
    cr_assert_float_eq(pg_rate(&p), 1000.0, 0.01);
}

/* Long names are cut at a UTF-8 character boundary, with a '~'. */
Test(progress, long_name)
{
    progress p;
    char line[256];
    pg_init(&p, false);
    pg_begin(&p, "aaaaaaaaaaaaaaaaaaaaaa\xC3\xA9\xC3\xA9\xC3\xA9", 1, 0, 0);
    pg_format(&p, line, sizeof(line));
    cr_assert(!strncmp(line, "aaaaaaaaaaaaaaaaaaaaaa~ [", 25), "%s", line);
}
