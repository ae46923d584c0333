#ifndef PL_NAMES_H
#define PL_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#define NAME_MAX_LEN 63

/* A peer name: 1..63 bytes of [A-Za-z0-9._-].  Anything else (control
 * characters, NUL, non-ASCII, spaces) is refused so names are safe to print
 * and to use in logs. */
bool name_valid(const char *s, size_t len);
bool name_valid_cstr(const char *s);

#endif
