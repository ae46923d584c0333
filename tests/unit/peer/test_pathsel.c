/* Unit tests for peer/pathsel.c: which path carries a connection's stream.
 *
 * Rules checked (peer/pathsel.h, docs/PROTOCOL.md 5.4): two tiers, direct
 * (direct-udp, direct-tcp) before relay (relay-udp, relay-tcp), udp before
 * tcp when both come up at once; the controlling side takes the best path
 * up, upgrades to a direct path as soon as one is up, never flaps within a
 * tier and moves down only when its active path dies; the controlled side
 * waits for the first nomination (or relay-tcp, which has none) and then
 * follows the controlling side's traffic except down a tier while its own
 * path works; the connection fails only when nothing is up and nothing can
 * come up. */
#include <criterion/criterion.h>
#include <string.h>

#include "pathsel.h"

/* ---- helpers ------------------------------------------------------------ */

#define DU PL_PATH_DIRECT_UDP
#define DT PL_PATH_DIRECT_TCP
#define RU PL_PATH_RELAY_UDP
#define RT PL_PATH_RELAY_TCP
#define NONE PL_PATH_NONE

/* A view with the paths in `up` (a bit per path kind) up, those in `over`
 * over; everything else still pending. */
static pathsel_view view(unsigned up, unsigned over)
{
    pathsel_view v;
    memset(&v, 0, sizeof(v));
    for (int p = 1; p < PATHSEL_N; p++) {
        v.up[p] = (up >> p) & 1;
        v.over[p] = (over >> p) & 1;
    }
    return v;
}

#define B(p) (1u << (p))
#define ALL (B(DU) | B(DT) | B(RU) | B(RT))

static const char *name(int p)
{
    static const char *n[] = {"none", "direct-udp", "direct-tcp", "relay-udp", "relay-tcp"};
    return p >= 0 && p < PATHSEL_N ? n[p] : "?";
}

#define CHOOSE(up, over, active, controlling, nominated, want)                                     \
    do {                                                                                           \
        pathsel_view v_ = view((up), (over));                                                      \
        int got_ = pathsel_choose(&v_, (active), (controlling), (nominated));                      \
        cr_assert_eq(got_, (want), "up %#x over %#x active %s %s nominated %s: got %s, want %s",   \
                     (unsigned)(up), (unsigned)(over), name(active),                               \
                     (controlling) ? "controlling" : "controlled", name(nominated), name(got_),    \
                     name(want));                                                                  \
    } while (0)

#define FOLLOW(up, active, path, want)                                                             \
    do {                                                                                           \
        pathsel_view v_ = view((up), 0);                                                           \
        bool got_ = pathsel_follow(&v_, (active), (path));                                         \
        cr_assert_eq(got_, (want), "up %#x active %s traffic on %s: follow %d, want %d",           \
                     (unsigned)(up), name(active), name(path), got_, (want));                      \
    } while (0)

/* ---- tiers -------------------------------------------------------------- */

Test(pathsel, tiers)
{
    cr_assert_eq(pathsel_tier(DU), 0);
    cr_assert_eq(pathsel_tier(DT), 0);
    cr_assert_eq(pathsel_tier(RU), 1);
    cr_assert_eq(pathsel_tier(RT), 1);
    cr_assert_eq(pathsel_tier(NONE), 2);
}

/* ---- controlling side --------------------------------------------------- */

/* Before connecting: the best path up, in the order direct-udp, direct-tcp,
 * relay-udp, relay-tcp; nothing up yet: none. */
Test(pathsel, controlling_takes_best_up_path)
{
    CHOOSE(ALL, 0, NONE, true, NONE, DU);
    CHOOSE(B(DT) | B(RU) | B(RT), 0, NONE, true, NONE, DT);
    CHOOSE(B(DU) | B(RT), 0, NONE, true, NONE, DU);
    CHOOSE(B(RU) | B(RT), 0, NONE, true, NONE, RU);
    CHOOSE(B(RT), 0, NONE, true, NONE, RT);
    CHOOSE(B(DT) | B(RT), 0, NONE, true, NONE, DT);
    CHOOSE(0, 0, NONE, true, NONE, NONE);
    CHOOSE(0, B(DU) | B(DT), NONE, true, NONE, NONE);
    /* the controlling side does not wait for a nomination */
    CHOOSE(B(RU), 0, NONE, true, DU, RU);
}

/* Relay first, then upgrade to a direct path as soon as one is up. */
Test(pathsel, controlling_upgrades_relay_to_direct)
{
    CHOOSE(B(RU), 0, RU, true, NONE, RU);
    CHOOSE(B(RU) | B(DT), 0, RU, true, NONE, DT);
    CHOOSE(B(RU) | B(DU), 0, RU, true, NONE, DU);
    CHOOSE(B(RU) | B(DU) | B(DT), 0, RU, true, NONE, DU);
    CHOOSE(B(RT) | B(DT), 0, RT, true, NONE, DT);
}

/* No flapping within a tier, no move down while the active path works. */
Test(pathsel, controlling_keeps_working_path_of_its_tier)
{
    CHOOSE(B(DT) | B(DU), 0, DT, true, NONE, DT);
    CHOOSE(ALL, 0, DT, true, NONE, DT);
    CHOOSE(B(DT) | B(RU) | B(RT), 0, DT, true, NONE, DT);
    CHOOSE(B(RT) | B(RU), 0, RT, true, NONE, RT);
    CHOOSE(ALL, 0, DU, true, NONE, DU);
}

/* The active path died: the best remaining path up, down a tier if need
 * be; none when nothing is up. */
Test(pathsel, controlling_moves_when_active_path_dies)
{
    CHOOSE(B(DT) | B(RU) | B(RT), B(DU), DU, true, NONE, DT);
    CHOOSE(B(RU) | B(RT), B(DU) | B(DT), DU, true, NONE, RU);
    CHOOSE(B(RT), B(DU), DT, true, NONE, RT);
    CHOOSE(B(RT), 0, RU, true, NONE, RT);
    CHOOSE(0, ALL, DU, true, NONE, NONE);
    CHOOSE(0, 0, RT, true, NONE, NONE);
}

/* ---- controlled side ---------------------------------------------------- */

/* Before connecting it waits for the controlling side's first nomination,
 * even with paths up, so both report the same first path. */
Test(pathsel, controlled_waits_for_first_nomination)
{
    CHOOSE(0, 0, NONE, false, NONE, NONE);
    CHOOSE(B(DU), 0, NONE, false, NONE, NONE);
    CHOOSE(B(DU) | B(RU), 0, NONE, false, NONE, NONE);
    /* nominated but not up yet */
    CHOOSE(B(DU) | B(RT), 0, NONE, false, DT, NONE);
    /* the nomination up: taken, even when a better path is up too */
    CHOOSE(B(DT), 0, NONE, false, DT, DT);
    CHOOSE(B(DU) | B(RU), 0, NONE, false, RU, RU);
    CHOOSE(ALL, 0, NONE, false, DU, DU);
}

/* relay-tcp has no nomination: with nothing nominated it is taken as soon
 * as it is up. */
Test(pathsel, controlled_takes_relay_tcp_without_nomination)
{
    CHOOSE(B(RT), 0, NONE, false, NONE, RT);
    CHOOSE(B(RT) | B(DU), 0, NONE, false, NONE, RT);
    CHOOSE(B(RT) | B(DU), 0, NONE, false, DU, DU);
}

/* The nominated path is over: fall back to the best path up (none if
 * nothing is up).  With no nomination and nothing pending any more, take
 * what works. */
Test(pathsel, controlled_falls_back_when_nomination_over)
{
    CHOOSE(B(DT) | B(RU), B(DU), NONE, false, DU, DT);
    CHOOSE(B(RU), B(DU) | B(DT), NONE, false, DU, RU);
    CHOOSE(0, B(DU), NONE, false, DU, NONE);
    CHOOSE(B(RU), B(DU) | B(DT) | B(RT), NONE, false, NONE, RU);
    CHOOSE(B(DT) | B(RU), B(DU) | B(RT), NONE, false, NONE, DT);
    CHOOSE(0, ALL, NONE, false, NONE, NONE);
    CHOOSE(B(RU), B(DU) | B(DT), NONE, false, NONE, NONE); /* relay-tcp pending */
}

/* Connected: the controlled side moves up a tier by itself (a direct path
 * is up on its side only once the controlling side nominated it, and the
 * controlling side always takes a direct path when one is up), never
 * between two working paths of one tier (it follows data there, see
 * below), and takes the best path up when its own dies. */
Test(pathsel, controlled_connected_upgrades_keeps_or_falls_back)
{
    CHOOSE(B(RU) | B(DU), 0, RU, false, RU, DU);
    CHOOSE(B(RT) | B(DT), 0, RT, false, NONE, DT);
    CHOOSE(B(RT) | B(RU), 0, RT, false, NONE, RT);
    CHOOSE(B(DT) | B(DU), 0, DT, false, DT, DT);
    CHOOSE(B(RU) | B(RT), B(DU), DU, false, DU, RU);
    CHOOSE(0, B(DU), DU, false, DU, NONE);
}

/* ---- following the controlling side ------------------------------------- */

Test(pathsel, follow_upgrade_and_same_tier)
{
    FOLLOW(B(RU) | B(DU), RU, DU, true);
    FOLLOW(B(RT) | B(DT), RT, DT, true);
    FOLLOW(B(DU) | B(DT), DU, DT, true);
    FOLLOW(B(DU) | B(DT), DT, DU, true);
    FOLLOW(B(RU) | B(RT), RT, RU, true);
    FOLLOW(B(DU), NONE, DU, true);
}

Test(pathsel, follow_downgrade_only_when_active_is_down)
{
    FOLLOW(B(DU) | B(RU), DU, RU, false);
    FOLLOW(B(DT) | B(RT), DT, RT, false);
    FOLLOW(B(RU), DU, RU, true);
    FOLLOW(B(RT), DT, RT, true);
}

Test(pathsel, follow_never_to_a_path_down_or_the_same)
{
    FOLLOW(B(RU), RU, DU, false);
    FOLLOW(B(DU), DU, DU, false);
    FOLLOW(ALL, DU, NONE, false);
    FOLLOW(0, NONE, DU, false);
}

/* ---- failing the connection --------------------------------------------- */

Test(pathsel, all_over)
{
    pathsel_view v = view(0, ALL);
    cr_assert(pathsel_all_over(&v));
    v = view(B(RT), ALL);
    cr_assert_not(pathsel_all_over(&v), "relay-tcp is up");
    v = view(0, B(DU) | B(DT) | B(RU));
    cr_assert_not(pathsel_all_over(&v), "relay-tcp may still come up");
    v = view(0, 0);
    cr_assert_not(pathsel_all_over(&v));
    v = view(B(DU), 0);
    cr_assert_not(pathsel_all_over(&v));
}
