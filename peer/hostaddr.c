#include "hostaddr.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <string.h>

size_t hostaddr_gather(netaddr *out, size_t max, uint16_t port)
{
    struct ifaddrs *ifs = NULL;
    size_t n = 0;
    if (getifaddrs(&ifs) != 0)
        return 0;
    for (struct ifaddrs *i = ifs; i && n < max; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
            (i->ifa_flags & IFF_LOOPBACK))
            continue;
        netaddr a;
        netaddr_from_sockaddr(&a, i->ifa_addr, sizeof(struct sockaddr_in));
        a.u.in4.sin_port = htons(port);
        if (!netaddr_is_usable_candidate(&a))
            continue;
        bool dup = false;
        for (size_t j = 0; j < n; j++)
            dup = dup || netaddr_equal(&out[j], &a);
        if (!dup)
            out[n++] = a;
    }
    freeifaddrs(ifs);
    return n;
}
