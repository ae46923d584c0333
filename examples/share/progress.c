/* punchline-share progress bar (see progress.h). */
#include "progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define BAR_WIDTH 20

void pg_init(progress *p, bool tty)
{
    memset(p, 0, sizeof(*p));
    p->tty = tty;
    snprintf(p->path, sizeof(p->path), "-");
}

void pg_begin(progress *p, const char *name, uint64_t total, uint64_t done, double now)
{
    /* cut the name to 24 bytes at a UTF-8 character boundary */
    size_t n = strlen(name);
    if (n > 24) {
        n = 23;
        while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
            n--;
        snprintf(p->name, sizeof(p->name), "%.*s~", (int)n, name);
    } else {
        snprintf(p->name, sizeof(p->name), "%s", name);
    }
    p->total = total;
    p->done = done;
    p->t0 = now;
    p->ns = p->head = 0;
    p->active = true;
    pg_tick(p, now);
}

void pg_set_done(progress *p, uint64_t done)
{
    p->done = done;
}

void pg_set_path(progress *p, const char *path)
{
    snprintf(p->path, sizeof(p->path), "%s", path);
}

void pg_size(uint64_t bytes, char *out, size_t cap)
{
    static const char *unit[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1000 && u < 6)
        v /= 1000, u++;
    if (u == 0)
        snprintf(out, cap, "%llu B", (unsigned long long)bytes);
    else
        snprintf(out, cap, "%.1f %s", v, unit[u]);
}

double pg_rate(const progress *p)
{
    if (p->ns < 2)
        return 0;
    unsigned newest = (p->head + PG_SAMPLES - 1) % PG_SAMPLES;
    unsigned oldest = (p->head + PG_SAMPLES - p->ns) % PG_SAMPLES;
    double dt = p->st[newest] - p->st[oldest];
    if (dt <= 0)
        return 0;
    return (double)(p->sb[newest] - p->sb[oldest]) / dt;
}

static void eta_text(double s, char *out, size_t cap)
{
    if (s < 0 || s > 359999) {
        snprintf(out, cap, "--:--");
        return;
    }
    unsigned long t = (unsigned long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, cap, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, cap, "%lu:%02lu", t / 60, t % 60);
}

void pg_format(const progress *p, char *out, size_t cap)
{
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    if (frac > 1)
        frac = 1;
    char bar[BAR_WIDTH + 1], done[24], total[24], rate[24], eta[24];
    int fill = (int)(frac * BAR_WIDTH);
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[BAR_WIDTH] = 0;
    pg_size(p->done, done, sizeof(done));
    pg_size(p->total, total, sizeof(total));
    double r = pg_rate(p);
    pg_size((uint64_t)r, rate, sizeof(rate));
    if (r > 0)
        eta_text((double)(p->total - (p->done < p->total ? p->done : p->total)) / r, eta, sizeof(eta));
    else
        snprintf(eta, sizeof(eta), "--:--");
    snprintf(out, cap, "%s [%s] %3d%% %s/%s %s/s ETA %s %s", p->name, bar, (int)(frac * 100), done,
             total, rate, eta, p->path);
}

static void draw(progress *p)
{
    char line[256];
    struct winsize ws;
    pg_format(p, line, sizeof(line));
    /* a line wider than the terminal would wrap and \r would not reach its start */
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && ws.ws_col <= sizeof(line))
        line[ws.ws_col - 1] = 0;
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    p->shown = true;
}

static void clear(progress *p)
{
    if (p->shown) {
        fputs("\r\033[K", stderr);
        p->shown = false;
    }
}

void pg_tick(progress *p, double now)
{
    if (!p->active)
        return;
    p->st[p->head] = now;
    p->sb[p->head] = p->done;
    p->head = (p->head + 1) % PG_SAMPLES;
    if (p->ns < PG_SAMPLES)
        p->ns++;
    if (p->tty)
        draw(p);
}

void pg_end(progress *p)
{
    clear(p);
    fflush(stderr);
    p->active = false;
}

void pg_print(progress *p, const char *fmt, ...)
{
    va_list ap;
    clear(p);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (p->active && p->tty)
        draw(p);
    fflush(stderr);
}
