/* punchline-msg-load's TCP modes (bench/msg_load_tcp.c); the UDP modes and
 * main() are in bench/msg_load.c. */
#ifndef PL_BENCH_MSG_LOAD_H
#define PL_BENCH_MSG_LOAD_H

#include <stdbool.h>

#include "addr.h"

/* Is mode one of msg_load_tcp's? */
bool msg_load_tcp_mode(const char *mode);
/* Run mode against srv; args are the arguments after the mode.  Returns the
 * exit status (2 for bad arguments). */
int msg_load_tcp(const netaddr *srv, double seconds, const char *mode, int argc, char **argv);

#endif
