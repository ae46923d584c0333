/* Shared by the bench/ load generators: a raw protocol client that
 * registers a name at the rendezvous and binds a UDP socket (Register,
 * RegisterResult, UdpBind with the return-routability challenge), with
 * blocking I/O and exit(1) on any error. */
#ifndef PL_BENCH_PEER_H
#define PL_BENCH_PEER_H

#include <stddef.h>
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
/* The one ephemeral identity key every bench peer registers with (a key may
 * hold any number of names). */
struct identity *bench_key(void);
/* A whole Register frame (length header included) for name, signed over the
 * ServerHello nonce (WIRE_NONCE_LEN bytes) with bench_key(): one ECDSA sign.
 * Returns its length; dies if it does not fit in cap. */
size_t bench_register_frame(const uint8_t *nonce, const char *name, const char *client_version,
                            uint8_t *out, size_t cap);
/* Raise the open-file limit to its hard maximum; exit(2) with a hint if
 * `need` descriptors still do not fit (the limit is 20000 here). */
void bench_raise_nofile(size_t need);
/* Register `name` at srv over TCP and bind a fresh UDP socket (4 MiB buffers). */
void bench_register(bench_peer *p, const netaddr *srv, const char *name);

#endif
