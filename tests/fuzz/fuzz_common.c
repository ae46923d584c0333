/* Checks shared by the envelope targets: what the code after wire_decode
 * relies on (fuzz.h). */
#include "fuzz.h"

#include <string.h>

#include "addr.h"
#include "names.h"
#include "wire.h"

/* An endpoint is either refused by netaddr_from_endpoint or becomes an
 * address that prints and parses back to itself (logs, candidate lists). */
static void check_endpoint(const Punchline__Endpoint *ep)
{
    netaddr a, b;
    char text[NETADDR_STRLEN];
    if (netaddr_from_endpoint(ep, &a) != 0)
        return;
    FUZZ_CHECK(ep->ip.len == 4 || ep->ip.len == 16);
    FUZZ_CHECK(netaddr_port(&a) == ep->port && ep->port != 0);
    netaddr_format(&a, text, sizeof(text));
    FUZZ_CHECK(netaddr_parse(text, &b, false) == 0);
    FUZZ_CHECK(netaddr_equal(&a, &b));
    (void)netaddr_is_usable_candidate(&a);
    (void)netaddr_is_loopback(&a);
}

static void check_candidates(Punchline__Candidate **c, size_t n, size_t max)
{
    FUZZ_CHECK(n <= max);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(c[i] && c[i]->endpoint);
        check_endpoint(c[i]->endpoint);
    }
}

static void check_text(const char *s, size_t max)
{
    FUZZ_CHECK(s && strlen(s) <= max);
}

void fuzz_check_envelope(const uint8_t *buf, size_t len, Punchline__Envelope *e)
{
    FUZZ_CHECK(e->version == WIRE_VERSION);
    FUZZ_CHECK(wire_validate(e) == WIRE_OK);
    FUZZ_CHECK(strcmp(wire_body_name(e), "unknown") != 0);

    /* Canonical encoding (PROTOCOL.md 1.3): the decoded message re-encodes
     * to as many bytes as were received, and what it re-encodes to decodes
     * and re-encodes to itself.  (Not necessarily to the same bytes: fields
     * in another order pass, which is harmless: each field is there once.) */
    uint8_t *again = malloc(len + 1), *third = malloc(len + 1);
    FUZZ_CHECK(again && third);
    int n = wire_encode(e, again, len + 1);
    FUZZ_CHECK(n >= 0 && (size_t)n == len);
    Punchline__Envelope *e2 = NULL;
    FUZZ_CHECK(wire_decode(again, len, &e2, NULL) == WIRE_OK);
    FUZZ_CHECK(e2->body_case == e->body_case);
    FUZZ_CHECK(wire_encode(e2, third, len + 1) == n && memcmp(again, third, len) == 0);
    wire_free(e2);
    free(third);
    free(again);

    switch (e->body_case) {
    case PUNCHLINE__ENVELOPE__BODY_REGISTER:
        check_text(e->register_->client_version, WIRE_MAX_TEXT);
        check_text(e->register_->token, WIRE_MAX_TOKEN);
        (void)name_valid_cstr(e->register_->name);
        check_candidates(e->register_->candidates, e->register_->n_candidates,
                         WIRE_MAX_HOST_CANDIDATES);
        break;
    case PUNCHLINE__ENVELOPE__BODY_REGISTER_RESULT:
        if (e->register_result->observed_tcp)
            check_endpoint(e->register_result->observed_tcp);
        break;
    case PUNCHLINE__ENVELOPE__BODY_UDP_BIND:
        FUZZ_CHECK(e->udp_bind->padding.len <= WIRE_MAX_PADDING);
        break;
    case PUNCHLINE__ENVELOPE__BODY_UDP_BOUND:
        FUZZ_CHECK(e->udp_bound->observed_udp);
        check_endpoint(e->udp_bound->observed_udp);
        break;
    case PUNCHLINE__ENVELOPE__BODY_CONNECT_REQUEST:
        (void)name_valid_cstr(e->connect_request->peer_name);
        break;
    case PUNCHLINE__ENVELOPE__BODY_INCOMING:
        FUZZ_CHECK(name_valid_cstr(e->incoming->peer_name));
        break;
    case PUNCHLINE__ENVELOPE__BODY_CANDIDATES:
        check_text(e->candidates->peer_name, NAME_MAX_LEN);
        check_candidates(e->candidates->candidates, e->candidates->n_candidates,
                         WIRE_MAX_CANDIDATES);
        break;
    case PUNCHLINE__ENVELOPE__BODY_PUNCH_START:
        FUZZ_CHECK(name_valid_cstr(e->punch_start->peer_name));
        FUZZ_CHECK(e->punch_start->secret.len == WIRE_SECRET_LEN);
        break;
    case PUNCHLINE__ENVELOPE__BODY_SERVER_HELLO:
        FUZZ_CHECK(e->server_hello->nonce.len == WIRE_NONCE_LEN);
        check_text(e->server_hello->server_version, WIRE_MAX_TEXT);
        break;
    case PUNCHLINE__ENVELOPE__BODY_SECURE: {
        const Punchline__Secure *m = e->secure;
        FUZZ_CHECK(m->dtls.len >= 1 && m->dtls.len <= WIRE_UDP_MAX);
        /* what a peer does with it before the channel sees the record */
        static const uint8_t secret[WIRE_SECRET_LEN] = {1, 2, 3};
        (void)wire_secure_needs_mac(m->dtls.data, m->dtls.len);
        (void)wire_secure_accept(secret, m->session_id, m, m->session_id & 1);
        break;
    }
    case PUNCHLINE__ENVELOPE__BODY_CLOSE:
        check_text(e->close->reason, WIRE_MAX_TEXT);
        break;
    case PUNCHLINE__ENVELOPE__BODY_ERROR:
        check_text(e->error->text, WIRE_MAX_TEXT);
        break;
    case PUNCHLINE__ENVELOPE__BODY_PROBE:
        FUZZ_CHECK(e->probe->mac.len == WIRE_MAC_LEN);
        if (e->probe->mapped)
            check_endpoint(e->probe->mapped);
        break;
    case PUNCHLINE__ENVELOPE__BODY_DATA:
        FUZZ_CHECK(e->data->payload.len <= WIRE_MAX_PAYLOAD);
        break;
    case PUNCHLINE__ENVELOPE__BODY_RELAY_OPEN:
        FUZZ_CHECK(e->relay_open->mac.len == WIRE_MAC_LEN);
        break;
    default:
        break;
    }
}

int fuzz_decode_envelope(const uint8_t *buf, size_t len)
{
    Punchline__Envelope *env = NULL;
    uint32_t version = 12345;
    int rc = wire_decode(buf, len, &env, &version);
    FUZZ_CHECK(rc == WIRE_OK || rc == WIRE_E_MALFORMED || rc == WIRE_E_VERSION);
    FUZZ_CHECK((rc == WIRE_OK) == (env != NULL));
    if (rc == WIRE_E_VERSION)
        FUZZ_CHECK(version != 0 && version != WIRE_VERSION);
    if (env) {
        fuzz_check_envelope(buf, len, env);
        wire_free(env);
    }
    return rc;
}
