#include "lineedit.h"

#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define LE_MAX 4096

static struct termios saved;
static bool active;
static char buf[LE_MAX + 1];
static size_t len;
static const char *prompt = "> ";

static void redraw(void)
{
    /* \r + erase line, then prompt and the pending input */
    fprintf(stderr, "\r\033[K%s%.*s", prompt, (int)len, buf);
    fflush(stderr);
}

bool le_begin(const char *p)
{
    if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO) || tcgetattr(STDIN_FILENO, &saved) != 0)
        return false;
    struct termios raw = saved;
    raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO | ISIG);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) != 0)
        return false;
    active = true;
    if (p)
        prompt = p;
    redraw();
    return true;
}

void le_end(void)
{
    if (!active)
        return;
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    active = false;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

bool le_active(void)
{
    return active;
}

int le_feed(unsigned char ch, const char **line, size_t *out_len)
{
    switch (ch) {
    case '\r':
    case '\n':
        buf[len] = 0;
        *line = buf;
        *out_len = len;
        fprintf(stderr, "\r\033[K");
        len = 0;
        return LE_LINE; /* the caller prints the sent line above, then redraws */
    case 3: /* Ctrl-C */
        return LE_INTERRUPT;
    case 4: /* Ctrl-D: EOF on an empty line, like a shell */
        return len == 0 ? LE_EOF : LE_NONE;
    case 21: /* Ctrl-U: clear the line */
        len = 0;
        break;
    case 127:
    case 8: /* backspace: drop one UTF-8 character */
        while (len > 0 && ((unsigned char)buf[len - 1] & 0xC0) == 0x80)
            len--;
        if (len > 0)
            len--;
        break;
    default:
        if ((ch >= 32 || ch == '\t') && len < LE_MAX)
            buf[len++] = (char)ch;
        break;
    }
    redraw();
    return LE_NONE;
}

void le_print(FILE *f, const char *text)
{
    if (active) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    fputs(text, f);
    fputc('\n', f);
    fflush(f);
    if (active)
        redraw();
}
