#include "pathsel.h"

/* Preference order: the tiers, and udp before tcp within a tier. */
static const int order[] = {PL_PATH_DIRECT_UDP, PL_PATH_DIRECT_TCP, PL_PATH_RELAY_UDP,
                            PL_PATH_RELAY_TCP};

int pathsel_tier(int path)
{
    switch (path) {
    case PL_PATH_DIRECT_UDP:
    case PL_PATH_DIRECT_TCP: return 0;
    case PL_PATH_RELAY_UDP:
    case PL_PATH_RELAY_TCP: return 1;
    default: return 2;
    }
}

static bool valid(int path)
{
    return path > PL_PATH_NONE && path < PATHSEL_N;
}

static int best_up(const pathsel_view *v)
{
    for (unsigned i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (v->up[order[i]])
            return order[i];
    return PL_PATH_NONE;
}

int pathsel_choose(const pathsel_view *v, int active, bool controlling, int first_nominated)
{
    if (valid(active) && v->up[active]) {
        /* Up a tier, on both sides: a direct path is up on the controlled
         * side only after the controlling side nominated it, and the
         * controlling side always moves to a direct path that is up.
         * Within a tier nobody moves (the controlled side follows data). */
        int best = best_up(v);
        if (pathsel_tier(best) < pathsel_tier(active))
            return best;
        return active;
    }
    if (valid(active) || controlling)
        return best_up(v); /* first path, or the active one died */
    /* Controlled, not connected yet: wait for the controlling side's first
     * nomination so both report the same first path. */
    if (valid(first_nominated)) {
        if (v->up[first_nominated])
            return first_nominated;
        return v->over[first_nominated] ? best_up(v) : PL_PATH_NONE;
    }
    /* relay-tcp has no nomination: both sides get RelayReady at once */
    if (v->up[PL_PATH_RELAY_TCP])
        return PL_PATH_RELAY_TCP;
    /* nothing nominated and nothing else can come up: take what works */
    bool pending = false;
    for (int p = 1; p < PATHSEL_N; p++)
        if (!v->up[p] && !v->over[p])
            pending = true;
    return pending ? PL_PATH_NONE : best_up(v);
}

bool pathsel_follow(const pathsel_view *v, int active, int path)
{
    if (!valid(path) || !v->up[path] || path == active)
        return false;
    if (!valid(active) || !v->up[active])
        return true;
    return pathsel_tier(path) <= pathsel_tier(active);
}

bool pathsel_all_over(const pathsel_view *v)
{
    for (int p = 1; p < PATHSEL_N; p++)
        if (v->up[p] || !v->over[p])
            return false;
    return true;
}
