#include "log.h"

#include <stdarg.h>
#include <stdio.h>

void plog(const pl_logger *lg, int level, const char *fmt, ...)
{
    if (!lg || !lg->fn || level > lg->level)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    lg->fn(level, msg, lg->user);
}
