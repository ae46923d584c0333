/* Shared by the bench/ load generators: a raw protocol client that
 * registers a name at the rendezvous and binds a UDP socket (Register,
 * RegisterResult, UdpBind with the return-routability challenge), with
 * blocking I/O and exit(1) on any error. */
#ifndef PL_BENCH_PEER_H
#define PL_BENCH_PEER_H

#include <stdint.h>

#include "addr.h"
#include "frame.h"
#include "wire.h"

typedef struct bench_peer {
    int tcp, udp;
    frame_reader fr;
    uint64_t token;
} bench_peer;

/* Print "PROGRAM: what[: strerror]" and exit(1). */
void bench_die(const char *what) __attribute__((noreturn));
/* The program name bench_die prints. */
extern const char *bench_prog;

void bench_send_frame(int fd, Punchline__Envelope *env);
/* The next envelope on fd; dies unless its body is `body`. */
Punchline__Envelope *bench_expect(int fd, frame_reader *fr, int body);
/* Register `name` at srv over TCP and bind a fresh UDP socket (4 MiB buffers). */
void bench_register(bench_peer *p, const netaddr *srv, const char *name);

#endif
