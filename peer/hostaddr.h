/* Host candidates: the addresses of this machine's interfaces. */
#ifndef PL_HOSTADDR_H
#define PL_HOSTADDR_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* Every up, non-loopback IPv4 interface address with the given port; at most
 * max entries.  Returns the count (0 if getifaddrs fails). */
size_t hostaddr_gather(netaddr *out, size_t max, uint16_t port);

#endif
