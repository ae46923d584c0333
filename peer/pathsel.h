/* Which path carries a connection's stream: the policy, as pure functions
 * (no I/O, no clock; ARCHITECTURE.md rule 1).  docs/PROTOCOL.md 5.4.
 *
 * Paths rank in two tiers: direct (direct-udp, direct-tcp) before relay
 * (relay-udp, relay-tcp); within a tier, the first path up wins and is kept
 * (no flapping between two working paths of one tier), with udp listed
 * before tcp when both come up in the same step.
 *
 * The controlling side decides: it takes the best path that is up, moves up
 * to a direct path as soon as one is verified (relay-first, then upgrade),
 * and moves down only when its active path dies.  The controlled side
 * follows: it activates the path the controlling side nominated first; it
 * moves up to a direct path once one is up on its side too (which needs the
 * controlling side's nomination, so both sides upgrade, even on an idle
 * connection); and within a tier it follows the path the controlling side's
 * traffic arrives on, but never a step down while its own active path still
 * works (stale packets from an abandoned relay path must not drag it back).
 */
#ifndef PL_PATHSEL_H
#define PL_PATHSEL_H

#include <stdbool.h>

#include "punchline/punchline.h"

#define PATHSEL_N 5 /* indexed by enum pl_path_kind */

typedef struct pathsel_view {
    bool up[PATHSEL_N];     /* verified both ways and usable now */
    bool over[PATHSEL_N];   /* not wanted, failed or dead: will not come up by itself */
} pathsel_view;

/* 0 for direct paths, 1 for relay paths, 2 for NONE. */
int pathsel_tier(int path);
/* The path that should be active now, given the current one (PL_PATH_NONE
 * before connecting) and, on the controlled side, the path nominated first
 * (PL_PATH_NONE if none yet).  Returns PL_PATH_NONE when nothing is usable
 * yet; the caller fails the connection if pathsel_all_over() too. */
int pathsel_choose(const pathsel_view *v, int active, bool controlling, int first_nominated);
/* Controlled side: traffic from the controlling side arrived on `path`
 * (which is up).  Should the stream follow it there? */
bool pathsel_follow(const pathsel_view *v, int active, int path);
/* No path is up and none can come up any more. */
bool pathsel_all_over(const pathsel_view *v);

#endif
