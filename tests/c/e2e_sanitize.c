/* End-to-end run of the whole C core, meant to be built with
 * -fsanitize=address,undefined -fno-sanitize-recover=all (tests/test_sanitizers.py):
 * two engines on 127.0.0.1, a dialed session and a listener, talking through
 * a relay socket that drops, duplicates, reorders and (with crypto) flips
 * bits, while a rogue socket sprays the listener with garbage.  Each
 * direction carries a pseudo-random stream that is checked byte for byte and
 * by hash; both sides close with linger while data is still in flight.
 * Everything is freed at the end so LeakSanitizer can vouch for no leaks.
 *
 *   e2e_sanitize [seed [kib]]   exit 0: every scenario delivered intact */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "crypt.h"
#include "sess.h"
#include "snmp.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: reproducible from the seed printed on failure */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static int chance(unsigned per_mille) { return rnd() % 1000 < per_mille; }

static uint32_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* The payload of one direction: byte i of stream `tag` is a function of i. */
static uint8_t stream_byte(uint32_t tag, uint64_t i)
{
    uint64_t x = (i / 8 + 1) * 0x9E3779B97F4A7C15ull ^ tag;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return (uint8_t)(x >> (8 * (i % 8)));
}

typedef struct {
    uint32_t tag;
    uint64_t total, sent, received;
    uint64_t hash_sent, hash_received; /* FNV-1a 64 */
    uint64_t first_bad;                /* offset of the first wrong byte, or total */
} flow;

static void fnv(uint64_t *h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ p[i]) * 0x100000001B3ull;
}

static int udp_socket(struct sockaddr_in *bound)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("socket");
        exit(2);
    }
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        perror("bind");
        exit(2);
    }
    *bound = a;
    return fd;
}

static int same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
}

/* The lossy link: datagrams from the client go to the server and back,
 * each one subject to the link's faults.  One held datagram gives reordering. */
typedef struct {
    int fd;
    struct sockaddr_in client, server;
    int tamper;
    uint8_t held[2048];
    ssize_t held_len;
    struct sockaddr_in held_to;
    uint64_t dropped, duplicated, reordered, tampered;
} relay;

static void relay_pump(relay *r)
{
    uint8_t buf[2048];
    for (;;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(r->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        if (n < 0)
            return;
        struct sockaddr_in to = same_addr(&from, &r->client) ? r->server : r->client;
        if (chance(30)) {
            r->dropped++;
            continue;
        }
        if (r->tamper && n > 0 && chance(10)) {
            buf[rnd() % (size_t)n] ^= (uint8_t)(1u << (rnd() % 8));
            r->tampered++;
        }
        if (r->held_len < 0 && chance(10)) {
            memcpy(r->held, buf, (size_t)n);
            r->held_len = n;
            r->held_to = to;
            r->reordered++;
            continue;
        }
        sendto(r->fd, buf, (size_t)n, 0, (struct sockaddr *)&to, sizeof to);
        if (chance(10)) {
            sendto(r->fd, buf, (size_t)n, 0, (struct sockaddr *)&to, sizeof to);
            r->duplicated++;
        }
        if (r->held_len >= 0 && chance(200)) {
            sendto(r->fd, r->held, (size_t)r->held_len, 0, (struct sockaddr *)&r->held_to, sizeof r->held_to);
            r->held_len = -1;
        }
    }
}

/* One end of the conversation. */
typedef struct {
    const char *name;
    gk_engine *eng;
    gk_udp *udp;
    gk_sess *sess;          /* NULL once closed */
    flow out, in;
    int closed, freed, lingered;
} end;

static void pump_send(end *e, uint32_t now)
{
    static uint8_t chunk[16384];
    while (e->sess && e->out.sent < e->out.total) {
        uint64_t left = e->out.total - e->out.sent;
        int want = (int)(left < sizeof chunk ? left : sizeof chunk);
        for (int i = 0; i < want; i++)
            chunk[i] = stream_byte(e->out.tag, e->out.sent + (uint64_t)i);
        int took = gk_sess_send(e->sess, chunk, want, now);
        if (took <= 0)
            return;
        fnv(&e->out.hash_sent, chunk, (size_t)took);
        e->out.sent += (uint64_t)took;
    }
}

static void pump_recv(end *e, uint32_t now)
{
    static uint8_t buf[70000];
    while (e->sess) {
        /* odd reader sizes exercise the leftover path of message mode */
        int cap = (int)(rnd() % 3 == 0 ? 1 + rnd() % 700 : sizeof buf);
        int got = gk_sess_recv(e->sess, buf, cap, now);
        if (got <= 0)
            return;
        for (int i = 0; i < got; i++) {
            uint64_t at = e->in.received + (uint64_t)i;
            if (e->in.first_bad == e->in.total && (at >= e->in.total || buf[i] != stream_byte(e->in.tag, at)))
                e->in.first_bad = at;
        }
        fnv(&e->in.hash_received, buf, (size_t)got);
        e->in.received += (uint64_t)got;
    }
}

static void maybe_close(end *e, uint32_t now)
{
    /* Close as soon as everything is queued and everything expected has
     * arrived: the last segments are still in flight, so linger must carry
     * them over the lossy link. */
    if (e->sess && e->out.sent == e->out.total && e->in.received >= e->in.total) {
        if (gk_sess_close(e->sess, now, 15000))
            e->freed = 1;
        else
            e->lingered = 1;
        e->sess = NULL;
        e->closed = 1;
    }
}

static int handle_events(end *e, uint32_t now, uint64_t *rogue_sessions)
{
    gk_event ev[64];
    int n, bad = 0;
    while ((n = gk_engine_take_events(e->eng, ev, 64)) > 0) {
        for (int i = 0; i < n; i++) {
            if (ev[i].flags & GK_EV_FREED)
                e->freed = 1;
            if (ev[i].flags & GK_EV_ACCEPT) {
                gk_sess *s = ev[i].sess;
                struct sockaddr_in peer;
                gk_sess_peer(s, &peer, sizeof peer);
                gk_sess_accepted(s);
                if (!e->sess && !e->closed && gk_sess_conv(s) == 0x600DF00D) {
                    e->sess = s;
                } else {
                    (*rogue_sessions)++;
                    gk_sess_close(s, now, 0);
                }
                continue;
            }
            if ((ev[i].flags & GK_EV_DEAD) && ev[i].sess == e->sess && e->sess) {
                fprintf(stderr, "%s: session ended, status %d\n", e->name, gk_sess_status(e->sess));
                bad = 1;
            }
        }
    }
    return bad;
}

typedef struct {
    const char *name;
    int crypt;   /* 0 none at all, 1 'none', 2 xor, 3 tea, 4 sm4, 5 salsa20 */
    int ds, ps;
    int stream;
} scenario;

static gk_crypt *make_crypt(int kind)
{
    uint8_t key[32], pad[GK_MTU_LIMIT];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 13 + 5);
    for (int i = 0; i < GK_MTU_LIMIT; i++)
        pad[i] = (uint8_t)(i * 151 + 3);
    switch (kind) {
    case 1: return gk_crypt_new_none();
    case 2: return gk_crypt_new_xor(pad);
    case 3: return gk_crypt_new_tea(key, 16);
    case 4: return gk_crypt_new_sm4(key);
    case 5: return gk_crypt_new_salsa20(key);
    default: return NULL;
    }
}

static int run(const scenario *sc, uint64_t bytes)
{
    gk_snmp before = gk_stats;
    uint8_t seed[48];
    for (int i = 0; i < 48; i++)
        seed[i] = (uint8_t)rnd();
    gk_crypt *crypt = make_crypt(sc->crypt);
    gk_config cfg = {.mtu = 1400, .sndwnd = 256, .rcvwnd = 256, .nodelay = 1, .interval = 10,
                     .resend = 2, .nc = 1, .stream = sc->stream, .data_shards = sc->ds,
                     .parity_shards = sc->ps, .dead_link = 0, .idle_timeout_ms = 0};

    struct sockaddr_in sa, ca, ra, ga;
    int sfd = udp_socket(&sa), cfd = udp_socket(&ca);
    relay rl = {.fd = udp_socket(&ra), .client = ca, .server = sa, .held_len = -1,
                .tamper = sc->crypt > 0};
    int rogue = udp_socket(&ga);

    end server = {.name = "server", .eng = gk_engine_new(seed)};
    end client = {.name = "client", .eng = gk_engine_new(seed)};
    server.udp = gk_udp_new(server.eng, sfd, 1, &cfg, crypt, 64, 16);
    client.udp = gk_udp_new(client.eng, cfd, 0, &cfg, crypt, 64, 16);
    gk_udp_set_mmsg(server.udp, 0); /* the recvfrom/sendto fallback on one side */
    uint32_t now = now_ms();
    client.sess = gk_udp_dial(client.udp, &ra, sizeof ra, 0x600DF00D, !sc->stream, now);
    if (!server.eng || !client.eng || !server.udp || !client.udp || !client.sess) {
        fprintf(stderr, "setup failed\n");
        exit(2);
    }
    client.out = (flow){.tag = 1, .total = bytes, .hash_sent = 14695981039346656037ull};
    server.in = (flow){.tag = 1, .total = bytes, .first_bad = bytes, .hash_received = 14695981039346656037ull};
    server.out = (flow){.tag = 2, .total = bytes / 2, .hash_sent = 14695981039346656037ull};
    client.in = (flow){.tag = 2, .total = bytes / 2, .first_bad = bytes / 2,
                       .hash_received = 14695981039346656037ull};

    uint64_t rogue_sessions = 0, garbage = 0;
    uint32_t start = now, deadline = now + 60000;
    int bad = 0;
    while (!(server.freed && client.freed) && !bad) {
        now = now_ms();
        if ((int32_t)(now - deadline) >= 0) {
            fprintf(stderr, "timed out\n");
            for (int k = 0; k < 2; k++) {
                const end *e = k ? &client : &server;
                gk_kcp_info info;
                if (!e->sess)
                    continue;
                gk_sess_get_info(e->sess, &info);
                fprintf(stderr, "%s: snd_una %u snd_nxt %u rcv_nxt %u rmt_wnd %u cwnd %u snd_que %u "
                        "snd_buf %u rcv_que %u rcv_buf %u xmit %u max_seg_xmit %u status %d\n",
                        e->name, info.snd_una, info.snd_nxt, info.rcv_nxt, info.rmt_wnd, info.cwnd,
                        info.nsnd_que, info.nsnd_buf, info.nrcv_que, info.nrcv_buf, info.xmit,
                        info.max_seg_xmit, gk_sess_status(e->sess));
            }
            bad = 1;
            break;
        }
        if (chance(300)) {
            uint8_t junk[200];
            size_t n = rnd() % sizeof junk;
            for (size_t i = 0; i < n; i++)
                junk[i] = (uint8_t)rnd();
            sendto(rogue, junk, n, 0, (struct sockaddr *)&sa, sizeof sa);
            garbage++;
        }
        relay_pump(&rl);
        end *ends[2] = {&server, &client};
        uint32_t wait = 10;
        for (int k = 0; k < 2; k++) {
            end *e = ends[k];
            if (gk_udp_read(e->udp, now, 8) < 0) {
                fprintf(stderr, "%s: read error\n", e->name);
                bad = 1;
            }
            bad |= handle_events(e, now, &rogue_sessions);
            pump_recv(e, now);
            pump_send(e, now);
            maybe_close(e, now);
            uint32_t w = gk_engine_update(e->eng, now);
            bad |= handle_events(e, now, &rogue_sessions);
            if (w < wait)
                wait = w;
        }
        struct pollfd pfd[3] = {{sfd, POLLIN, 0}, {cfd, POLLIN, 0}, {rl.fd, POLLIN, 0}};
        poll(pfd, 3, (int)(wait ? wait : 1));
    }
    /* As closing the listener does: a late duplicate from the relay may have
     * started an unproven session, which only waits for its expiry. */
    gk_udp_stop_listening(server.udp);

    const end *ends[2] = {&server, &client};
    for (int k = 0; k < 2; k++) {
        const flow *in = &ends[k]->in, *out = &ends[1 - k]->out;
        if (in->received != in->total || in->first_bad != in->total || in->hash_received != out->hash_sent) {
            fprintf(stderr, "%s: received %llu of %llu, first wrong byte at %llu, hash %016llx vs %016llx\n",
                    ends[k]->name, (unsigned long long)in->received, (unsigned long long)in->total,
                    (unsigned long long)in->first_bad, (unsigned long long)in->hash_received,
                    (unsigned long long)out->hash_sent);
            bad = 1;
        }
    }
    for (int k = 0; k < 2 && !bad; k++)
        if (gk_engine_sessions(ends[k]->eng) != 0) {
            fprintf(stderr, "%s: %d sessions left after close\n", ends[k]->name,
                    gk_engine_sessions(ends[k]->eng));
            bad = 1;
        }
    uint64_t recovered = gk_stats.FECRecovered - before.FECRecovered;
    uint64_t csum = gk_stats.InCsumErrors - before.InCsumErrors;
    if (sc->ds && !recovered) {
        fprintf(stderr, "FEC on but nothing recovered\n");
        bad = 1;
    }
    if (sc->crypt && rl.tampered && !csum) {
        fprintf(stderr, "tampered packets but no CRC errors counted\n");
        bad = 1;
    }
    printf("%-22s %s %.1f s: dropped %llu dup %llu reordered %llu tampered %llu garbage %llu "
           "rogue sessions %llu, FEC recovered %llu, CRC errors %llu, retrans %llu, lingered %d\n",
           sc->name, bad ? "FAIL" : "ok", (double)(uint32_t)(now - start) / 1000,
           (unsigned long long)rl.dropped, (unsigned long long)rl.duplicated,
           (unsigned long long)rl.reordered, (unsigned long long)rl.tampered,
           (unsigned long long)garbage, (unsigned long long)rogue_sessions,
           (unsigned long long)recovered, (unsigned long long)csum,
           (unsigned long long)(gk_stats.RetransSegs - before.RetransSegs),
           server.lingered + client.lingered);
    fflush(stdout);

    /* A session still held (only on failure) is freed with its engine. */
    gk_engine_free(server.eng);
    gk_engine_free(client.eng);
    gk_crypt_free(crypt);
    close(sfd);
    close(cfd);
    close(rl.fd);
    close(rogue);
    return bad;
}

int main(int argc, char **argv)
{
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
    uint64_t kib = argc > 2 ? strtoull(argv[2], NULL, 0) : 2048;
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    printf("seed %llu, %llu KiB per scenario\n", (unsigned long long)seed, (unsigned long long)kib);
    static const scenario scenarios[] = {
        {"plain", 0, 0, 0, 0},
        {"plain stream", 0, 0, 0, 1},
        {"fec 10/3", 0, 10, 3, 0},
        {"crypt none + fec 3/2", 1, 3, 2, 1},
        {"xor", 2, 0, 0, 0},
        {"tea + fec 10/3", 3, 10, 3, 1},
        {"sm4 + fec 3/2", 4, 3, 2, 0},
        {"salsa20", 5, 0, 0, 1},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
        failed += run(&scenarios[i], kib * 1024);
    printf("scenarios: %d ok, %d failed\n", (int)(sizeof scenarios / sizeof scenarios[0]) - failed, failed);
    return failed ? 1 : 0;
}
