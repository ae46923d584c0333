/* The library never prints (ARCHITECTURE.md rule 7): messages go to the
 * application's log callback, if any. */
#ifndef PL_LOG_H
#define PL_LOG_H

#include <stdint.h>

#include "punchline/punchline.h"

typedef struct pl_logger {
    pl_log_fn fn;
    void *user;
    int level;
} pl_logger;

void plog(const pl_logger *lg, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
