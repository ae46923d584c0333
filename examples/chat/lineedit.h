/* A tiny line editor for punchline-chat on a terminal: the prompt and what
 * you are typing stay on the last line while incoming messages are printed
 * above it.  Not used when stdin is not a TTY. */
#ifndef CHAT_LINEEDIT_H
#define CHAT_LINEEDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum le_event { LE_NONE = 0, LE_LINE, LE_EOF, LE_INTERRUPT };

/* Put the terminal in non-canonical, no-echo mode.  false if not a TTY. */
bool le_begin(const char *prompt);
/* Restore the terminal (idempotent; safe from atexit). */
void le_end(void);
bool le_active(void);
/* Feed one input byte.  On LE_LINE the line (without newline) is in *line,
 * valid until the next call. */
int le_feed(unsigned char ch, const char **line, size_t *len);
/* Print one line to f (stdout or stderr).  While the editor is active the
 * line goes above the prompt and the prompt + pending input are redrawn. */
void le_print(FILE *f, const char *text);

#endif
