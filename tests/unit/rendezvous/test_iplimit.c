/* rendezvous/iplimit.c: per-source pending cap, rate, /64 grouping, expiry,
 * table bound. */
#include <criterion/criterion.h>

#include "iplimit.h"

static netaddr addr(const char *s)
{
    netaddr a;
    cr_assert_eq(netaddr_parse(s, &a, false), 0, "%s", s);
    return a;
}

Test(iplimit, pending_cap_per_source_and_release)
{
    iplimit_config c = {.max_pending = 3, .rate_per_s = 1000};
    iplimit *l = iplimit_new(&c);
    netaddr a = addr("198.51.100.1:1000"), a2 = addr("198.51.100.1:2000"), b = addr("198.51.100.2:1000");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(iplimit_admit(l, i == 1 ? &a2 : &a, 0), IPL_OK, "#%d", i);
    cr_assert_eq(iplimit_admit(l, &a, 0), IPL_TOO_MANY, "the port does not matter");
    cr_assert_eq(iplimit_admit(l, &b, 0), IPL_OK, "another source is not affected");
    iplimit_release(l, &a);
    cr_assert_eq(iplimit_admit(l, &a, 0), IPL_OK, "one slot freed by a registration/close");
    cr_assert_eq(iplimit_admit(l, &a, 0), IPL_TOO_MANY);
    iplimit_free(l);
}

Test(iplimit, rate_and_burst)
{
    iplimit_config c = {.max_pending = 1000, .rate_per_s = 10, .burst = 5};
    iplimit *l = iplimit_new(&c);
    netaddr a = addr("203.0.113.9:1");
    for (int i = 0; i < 5; i++)
        cr_assert_eq(iplimit_admit(l, &a, 1000), IPL_OK);
    cr_assert_eq(iplimit_admit(l, &a, 1000), IPL_TOO_FAST);
    cr_assert_eq(iplimit_admit(l, &a, 1099), IPL_TOO_FAST, "a token needs 100 ms");
    cr_assert_eq(iplimit_admit(l, &a, 1100), IPL_OK);
    cr_assert_eq(iplimit_admit(l, &a, 1100), IPL_TOO_FAST);
    iplimit_free(l);
}

Test(iplimit, ipv6_grouped_by_slash64)
{
    iplimit_config c = {.max_pending = 2, .rate_per_s = 1000};
    iplimit *l = iplimit_new(&c);
    netaddr x = addr("[2001:db8:1:2::1]:5"), y = addr("[2001:db8:1:2:ffff::9]:6"),
            z = addr("[2001:db8:1:3::1]:5");
    cr_assert_eq(iplimit_admit(l, &x, 0), IPL_OK);
    cr_assert_eq(iplimit_admit(l, &y, 0), IPL_OK);
    cr_assert_eq(iplimit_admit(l, &x, 0), IPL_TOO_MANY, "same /64");
    cr_assert_eq(iplimit_admit(l, &z, 0), IPL_OK, "another /64");
    iplimit_free(l);
}

Test(iplimit, ipv4_mapped_clients_of_a_dual_stack_socket_are_separate)
{
    iplimit_config c = {.max_pending = 1, .rate_per_s = 1000};
    iplimit *l = iplimit_new(&c);
    netaddr a = addr("[::ffff:127.0.0.1]:1"), b = addr("[::ffff:127.0.0.2]:1"),
            a4 = addr("127.0.0.1:9");
    cr_assert_eq(iplimit_admit(l, &a, 0), IPL_OK);
    cr_assert_eq(iplimit_admit(l, &b, 0), IPL_OK, "another IPv4 address, not the same /64");
    cr_assert_eq(iplimit_admit(l, &a, 0), IPL_TOO_MANY);
    cr_assert_eq(iplimit_admit(l, &a4, 0), IPL_TOO_MANY, "mapped and plain IPv4 are one source");
    iplimit_free(l);
}

Test(iplimit, idle_sources_expire_and_the_table_is_bounded)
{
    iplimit_config c = {.max_pending = 5, .rate_per_s = 10, .burst = 10, .max_sources = 2};
    iplimit *l = iplimit_new(&c);
    netaddr a = addr("192.0.2.1:1"), b = addr("192.0.2.2:1"), d = addr("192.0.2.3:1");
    cr_assert_eq(iplimit_admit(l, &a, 0), IPL_OK);
    cr_assert_eq(iplimit_admit(l, &b, 0), IPL_OK);
    /* full: a new source is let in untracked (not limited) rather than
     * locking every new honest peer out during a flood */
    for (int i = 0; i < 10; i++)
        cr_assert_eq(iplimit_admit(l, &d, 0), IPL_UNTRACKED);
    iplimit_release(l, &d); /* a no-op for an untracked source */
    cr_assert_eq(iplimit_sources(l), 2);
    iplimit_release(l, &a);
    iplimit_expire(l, 500);
    cr_assert_eq(iplimit_sources(l), 2, "not idle long enough yet");
    iplimit_expire(l, 10000);
    cr_assert_eq(iplimit_sources(l), 1, "a (nothing pending) expired, b (pending) stays");
    cr_assert_eq(iplimit_admit(l, &d, 10000), IPL_OK);
    iplimit_free(l);
}
