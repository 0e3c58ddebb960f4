/* libFuzzer harness for everything a datagram from the network can reach.
 * tests/test_fuzz.py builds and runs it; by hand (clang 14 needs -U__ELF__,
 * see there):
 *   clang -g -O1 -U__ELF__ -fsanitize=fuzzer,address,undefined \
 *         -fno-sanitize-recover=all -Icsrc tests/fuzz/fuzz_input.c csrc/[a-z]*.c
 *   GKCP_FUZZ_TARGET=0 ./a.out CORPUS DIR/pipe tests/fuzz/regress
 * Seeds: python tests/fuzz/make_seeds.py DIR (one subfolder per target).
 *
 * Input layout (byte 0 picks the target unless GKCP_FUZZ_TARGET=n forces it):
 *   0 pipeline: cfg byte (cipher = b % NCIPHERS, FEC = b / NCIPHERS % 3,
 *               dial announces itself if b / (NCIPHERS * 3) is odd),
 *               flags byte (mtu, windows, nodelay, stream, ack_nodelay,
 *               write_delay, idle timeout), then ops until the input ends:
 *               op & 3 == 0/1  datagram to gk_udp_input: bit 2 dialer
 *                   socket, bits 3-5 source address, bit 6 unsealed (by
 *                   default the harness seals it with the socket's cipher,
 *                   so the fuzzer reaches past the CRC), then a length
 *                   (1 byte; 255 means 2 more bytes) and that many bytes;
 *                   bit 7: instead, the last sealed datagram again (a
 *                   replay; a listener with a cipher must drop it);
 *               op & 3 == 2    clock += next byte * 16 ms (bit 2: + 30 s),
 *                   gk_engine_update;
 *               op & 3 == 3    application call on session (op >> 5): bits
 *                   2-4 pick send / recv / close / configure / queries /
 *                   stop listening.
 *   1 kcp:      flags byte, sn byte, then ops on one gk_kcp (input, send,
 *               recv, flush, clock, windows, mtu, header room).
 *   2 fec:      shape byte, then FEC packets and clock steps to a decoder.
 *   3 crypt:    cipher byte, then packets: garbage decrypts; sealed ones must
 *               open to what was sealed.
 *   4 replay:   shape byte, then nonce checks (2-byte ids) and clock steps on
 *               one replay filter, against a model of what it must remember
 *               (sizes up to 4096 slots, so its tables grow and rotate).
 * The listener's unproven pool is built small (-DGK_UNPROVEN_MAX=4, see
 * test_fuzz.py) so that eviction is reached. 
 * Every engine, session, decoder and kcp is freed at the end of each input,
 * so LeakSanitizer sees leaks per input. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crypt.h"
#include "fec.h"
#include "kcp.h"
#include "replay.h"
#include "sess.h"
#include "sess_impl.h"
#include "snmp.h"

enum { T_PIPE, T_KCP, T_FEC, T_CRYPT, T_REPLAY, NTARGETS };

/* ---- input reader ---------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n;
} reader;

static unsigned u8(reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

/* Up to want bytes; *got says how many were left. */
static const uint8_t *take(reader *r, size_t want, size_t *got)
{
    size_t n = want < r->n ? want : r->n;
    const uint8_t *p = r->p;
    r->p += n;
    r->n -= n;
    *got = n;
    return p;
}

static size_t read_len(reader *r)
{
    size_t len = u8(r);
    if (len == 255)
        len = (u8(r) | u8(r) << 8) % 1600;
    return len;
}

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* ---- fixtures shared by all inputs ------------------------------------------ */

#define NCIPHERS 7   /* none at all, then the gk_crypt kinds below */
#define NADDRS 8
static gk_crypt *ciphers[NCIPHERS];
static int listen_fd, dial_fd;
static struct sockaddr_storage addrs[NADDRS];
static socklen_t addrlens[NADDRS];
static const uint8_t engine_seed[48] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
static int forced_target = -1;

static int udp_socket(struct sockaddr_in *bound)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    /* Nothing reads the sinks: a small buffer makes the kernel drop early. */
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t len = sizeof a;
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    if (bound)
        *bound = a;
    return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *t = getenv("GKCP_FUZZ_TARGET");
    if (t && *t)
        forced_target = atoi(t) % NTARGETS;

    uint8_t key[32], pad[GK_MTU_LIMIT];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < GK_MTU_LIMIT; i++)
        pad[i] = (uint8_t)(i * 131 + 7);
    ciphers[0] = NULL;
    ciphers[1] = gk_crypt_new_none();
    ciphers[2] = gk_crypt_new_xor(pad);
    ciphers[3] = gk_crypt_new_tea(key, 16);
    ciphers[4] = gk_crypt_new_sm4(key);
    ciphers[5] = gk_crypt_new_xtea(key);
    ciphers[6] = gk_crypt_new_salsa20(key);
    for (int i = 1; i < NCIPHERS; i++)
        CHECK(ciphers[i]);

    listen_fd = udp_socket(NULL);
    dial_fd = udp_socket(NULL);
    /* Sources 0-3: real sockets on 127.0.0.1 (replies are delivered and
     * dropped); 4: a loopback address nobody uses; 5: IPv6 (this AF_INET
     * socket cannot send there: the OutErrs path); 6: IPv4-mapped IPv6 of
     * source 0 (a different key for the same host); 7: port 0. */
    for (int i = 0; i < 4; i++) {
        struct sockaddr_in a;
        udp_socket(&a);
        memcpy(&addrs[i], &a, sizeof a);
        addrlens[i] = sizeof a;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addrs[4];
    a4->sin_family = AF_INET;
    a4->sin_port = htons(9);
    a4->sin_addr.s_addr = htonl(0x7F000002);
    addrlens[4] = sizeof *a4;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addrs[5];
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(4000);
    a6->sin6_addr = in6addr_loopback;
    addrlens[5] = sizeof *a6;
    a6 = (struct sockaddr_in6 *)&addrs[6];
    a6->sin6_family = AF_INET6;
    a6->sin6_port = ((struct sockaddr_in *)&addrs[0])->sin_port;
    a6->sin6_addr.s6_addr[10] = a6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&a6->sin6_addr.s6_addr[12], &((struct sockaddr_in *)&addrs[0])->sin_addr, 4);
    addrlens[6] = sizeof *a6;
    a4 = (struct sockaddr_in *)&addrs[7];
    a4->sin_family = AF_INET;
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addrlens[7] = sizeof *a4;
    return 0;
}

/* ---- target 0: the packet-input path through an engine -------------------------- */

#define MAXSESS 16
typedef struct {
    gk_engine *eng;
    gk_udp *lu, *du;
    gk_sess *sess[MAXSESS];
    int nsess;
    uint32_t now;
    gk_config cfg;
    uint8_t last[GK_MTU_LIMIT];  /* the last sealed datagram, as sent */
    size_t last_len;
    int last_src;
    int last_heard;              /* it reached the listener's replay filter */
    uint32_t last_at;
} pipe_state;

static void forget(pipe_state *ps, int i)
{
    ps->sess[i] = ps->sess[--ps->nsess];
}

static void take_events(pipe_state *ps)
{
    gk_event ev[32];
    int n;
    while ((n = gk_engine_take_events(ps->eng, ev, 32)) > 0) {
        for (int i = 0; i < n; i++) {
            if (ev[i].flags & GK_EV_FREED)
                CHECK(ev[i].sess == NULL);
            if (!(ev[i].flags & GK_EV_ACCEPT) || !ev[i].sess)
                continue;
            gk_sess *s = ev[i].sess;
            CHECK(gk_sess_id(s) == ev[i].id);
            if (ps->nsess == MAXSESS) {
                gk_sess_close(s, ps->now, 0);
                continue;
            }
            gk_sess_accepted(s);
            ps->sess[ps->nsess++] = s;
        }
    }
}

static void app_call(pipe_state *ps, unsigned op, reader *r)
{
    static uint8_t buf[70000];
    if (((op >> 2) & 7) == 6) {
        gk_udp_stop_listening(ps->lu);
        CHECK(gk_udp_sessions(ps->lu) + gk_udp_sessions(ps->du) == gk_engine_sessions(ps->eng));
        return;
    }
    if (!ps->nsess)
        return;
    int i = (int)(op >> 5) % ps->nsess;
    gk_sess *s = ps->sess[i];
    switch ((op >> 2) & 7) {
    case 0: {
        int len = (int)(u8(r) * 37 + 1);
        for (int k = 0; k < len; k++)
            buf[k] = (uint8_t)(k * 7);
        int took = gk_sess_send(s, buf, len, ps->now);
        CHECK(took <= len);
        break;
    }
    case 1:
    case 2: {
        unsigned b = u8(r);
        int cap = b & 1 ? (int)sizeof buf : (int)(b >> 1) + 1;
        int ready = gk_sess_readable(s);
        int got = gk_sess_recv(s, buf, cap, ps->now);
        CHECK(got <= cap);
        CHECK(ready == 0 || got > 0);
        break;
    }
    case 3: {
        uint32_t linger = u8(r) * 64;
        gk_sess_close(s, ps->now, linger);
        forget(ps, i);
        break;
    }
    case 4: {
        gk_config c = ps->cfg;
        unsigned b = u8(r);
        static const int shapes[4][2] = {{0, 0}, {10, 3}, {3, 2}, {1, 1}};
        c.data_shards = shapes[b & 3][0];
        c.parity_shards = shapes[b & 3][1];
        c.mtu = b & 4 ? 1400 : 100 + (int)(b >> 3);
        c.stream = (b >> 7) & 1;
        gk_sess_configure(s, &c);
        break;
    }
    case 5: {
        gk_kcp_info info;
        struct sockaddr_storage peer;
        gk_sess_get_info(s, &info);
        CHECK(gk_sess_peer(s, &peer, sizeof peer) > 0);
        CHECK(gk_sess_waitsnd(s) >= 0);
        CHECK(gk_sess_udp(s) != NULL);
        (void)gk_sess_conv(s);
        (void)gk_sess_status(s);
        break;
    }
    default:
        break;
    }
}

static void fuzz_pipe(reader *r)
{
    static const int shapes[3][2] = {{0, 0}, {10, 3}, {3, 2}};
    unsigned cb = u8(r), fl = u8(r);
    const gk_crypt *crypt = ciphers[cb % NCIPHERS];
    pipe_state ps = {.now = 0xFFFFF000u}; /* wraps during the run */
    gk_config *cfg = &ps.cfg;
    cfg->mtu = fl & 1 ? 1400 : 200;
    cfg->sndwnd = cfg->rcvwnd = fl & 2 ? 32 : 4;
    cfg->nodelay = (fl >> 2) & 1;
    cfg->interval = fl & 4 ? 10 : 100;
    cfg->resend = fl & 8 ? 2 : 0;
    cfg->nc = (fl >> 3) & 1;
    cfg->stream = (fl >> 4) & 1;
    cfg->ack_nodelay = (fl >> 5) & 1;
    cfg->write_delay = (fl >> 6) & 1;
    cfg->data_shards = shapes[cb / NCIPHERS % 3][0];
    cfg->parity_shards = shapes[cb / NCIPHERS % 3][1];
    cfg->dead_link = 8;
    cfg->idle_timeout_ms = fl & 0x80 ? 20000 : 0;

    ps.eng = gk_engine_new(engine_seed);
    CHECK(ps.eng);
    /* batch 4: a flush of more datagrams than that writes a full batch
     * mid-flush. */
    gk_udp *lu = ps.lu = gk_udp_new(ps.eng, listen_fd, 1, cfg, crypt, 4, 4);
    gk_udp *du = ps.du = gk_udp_new(ps.eng, dial_fd, 0, cfg, crypt, 4, 4);
    CHECK(lu && du);
    gk_sess *dialed = gk_udp_dial(du, &addrs[0], (int)addrlens[0], 0x01020304,
                                  (int)(cb / (NCIPHERS * 3)) & 1, ps.now);
    CHECK(dialed);
    ps.sess[ps.nsess++] = dialed;

    gk_nonce ng;
    uint8_t nseed[32] = {9};
    gk_nonce_init(&ng, nseed);

    while (r->n) {
        unsigned op = u8(r);
        switch (op & 3) {
        case 0:
        case 1: {
            gk_udp *u = op & 4 ? du : lu;
            int src = (op >> 3) & 7;
            if (op & 0x80) {
                if (!ps.last_len)
                    break;
                uint8_t *again = malloc(ps.last_len);
                CHECK(again);
                memcpy(again, ps.last, ps.last_len);
                uint64_t replays = gk_stats.InReplays;
                gk_udp_input(lu, again, (int)ps.last_len, &addrs[ps.last_src], addrlens[ps.last_src], ps.now);
                gk_udp_write_dirty(ps.eng);
                free(again);
                /* remembered for at least one window of the filter */
                if (ps.last_heard && ps.now - ps.last_at < GK_REPLAY_WINDOW_MS)
                    CHECK(gk_stats.InReplays == replays + 1);
                break;
            }
            int seal = crypt && !(op & 0x40);
            size_t got, len = read_len(r);
            const uint8_t *data = take(r, len, &got);
            size_t room = seal ? GK_CRYPT_HEADER : 0;
            if (got + room > GK_MTU_LIMIT)
                got = GK_MTU_LIMIT - room;
            /* Exactly the datagram's size, so any read past it is caught. */
            uint8_t *pkt = malloc(got + room + 1);
            CHECK(pkt);
            memcpy(pkt + room, data, got);
            if (seal) {
                gk_crypt_encrypt(crypt, &ng, pkt, got + room);
                memcpy(ps.last, pkt, got + room);
                ps.last_len = got + room;
                ps.last_src = src;
                ps.last_heard = u == lu;
                ps.last_at = ps.now;
            }
            gk_udp_input(u, pkt, (int)(got + room), &addrs[src], addrlens[src], ps.now);
            gk_udp_write_dirty(ps.eng);
            free(pkt);
            /* as the Python driver does after reading */
            if (gk_engine_pending(ps.eng) & GK_PENDING_WAKE)
                gk_engine_update(ps.eng, ps.now);
            break;
        }
        case 2:
            ps.now += u8(r) * 16 + (op & 4 ? 30000 : 0);
            gk_engine_update(ps.eng, ps.now);
            break;
        default:
            app_call(&ps, op, r);
            break;
        }
        take_events(&ps);
        CHECK(gk_engine_sessions(ps.eng) >= ps.nsess);
        CHECK(gk_udp_unproven(lu) <= GK_UNPROVEN_MAX && gk_udp_unproven(lu) <= gk_udp_sessions(lu));
    }
    /* As the Python objects would at exit: close what is held (lingering),
     * let the engine run, then free everything left. */
    for (int i = ps.nsess - 1; i >= 0; i--)
        gk_sess_close(ps.sess[i], ps.now, 1000);
    ps.nsess = 0;
    for (int k = 0; k < 3; k++) {
        ps.now += 500;
        gk_engine_update(ps.eng, ps.now);
        take_events(&ps);
    }
    for (int i = ps.nsess - 1; i >= 0; i--)
        gk_sess_close(ps.sess[i], ps.now, 0);
    gk_engine_free(ps.eng);
}

/* ---- target 1: one KCP state machine ------------------------------------------- */

/* Segments queued under a larger mss keep their size (as in kcp-go), so a
 * packet may exceed the current mtu: never the largest mtu set so far plus
 * the largest header room. */
static int kcp_mtu, kcp_room;

static void kcp_out(uint8_t *buf, int len, void *user)
{
    (void)user;
    static volatile uint8_t sink;
    CHECK(len > 0 && len <= kcp_mtu + kcp_room);
    sink = buf[0] ^ buf[len - 1];
    (void)sink;
}

static void fuzz_kcp(reader *r)
{
    static uint8_t buf[70000];
    unsigned fl = u8(r);
    uint32_t now = 0x7FFFFF00u;
    gk_kcp *k = gk_kcp_create(0x01020304, kcp_out, NULL);
    CHECK(k);
    kcp_mtu = 1400;
    kcp_room = (int)(fl & 3) * 8;
    CHECK(gk_kcp_reserve(k, kcp_room) == 0);
    if (fl & 4) {
        kcp_mtu = 100;
        CHECK(gk_kcp_setmtu(k, kcp_mtu) == 0);
    }
    gk_kcp_nodelay(k, (fl >> 3) & 1, fl & 0x10 ? 10 : 100, fl & 0x20 ? 2 : 0, (fl >> 6) & 1);
    gk_kcp_set_stream(k, (fl >> 7) & 1);
    if (u8(r) & 1)
        gk_kcp_set_next_sn(k, 0xFFFFFFF0u);

    while (r->n) {
        unsigned op = u8(r);
        switch (op & 7) {
        case 0:
        case 1:
        case 2: {
            size_t got, len = read_len(r);
            const uint8_t *data = take(r, len, &got);
            uint8_t *pkt = malloc(got + 1);
            CHECK(pkt);
            memcpy(pkt, data, got);
            uint32_t conv = 0;
            int cmds = gk_kcp_validate(pkt, (int)got, &conv);
            CHECK(cmds == -1 || (cmds > 0 && cmds < 16));
            int rc = gk_kcp_input(k, pkt, (int)got, !(op & 8), (op >> 4) & 1, now);
            /* what the validator passes, input takes whole */
            CHECK(cmds < 0 || conv != 0x01020304 || rc == 0);
            free(pkt);
            break;
        }
        case 3: {
            int len = (int)(u8(r) * 97 + 1);
            memset(buf, 0x5A, (size_t)len);
            gk_kcp_send(k, buf, len);
            break;
        }
        case 4: {
            int size = gk_kcp_peeksize(k);
            int cap = op & 8 ? (int)sizeof buf : (int)u8(r);
            int got = gk_kcp_recv(k, buf, cap);
            CHECK(got == -1 || got == -3 || got == size);
            break;
        }
        case 5:
            gk_kcp_flush(k, (op >> 3) & 1, now);
            break;
        case 6:
            now += u8(r) * 8 + (op & 8 ? 10000 : 0);
            gk_kcp_flush(k, 0, now);
            break;
        default: {
            unsigned b = u8(r);
            if (op & 16) {
                /* FEC or crypto switched on or off under queued data */
                int room = (int)(b & 3) * 8 + (b & 4 ? 20 : 0);
                if (gk_kcp_reserve(k, room) == 0 && room > kcp_room)
                    kcp_room = room;
            } else if (op & 8) {
                gk_kcp_wndsize(k, (int)b + 1 - 128, (int)(b * 3) - 200);
            } else if (gk_kcp_setmtu(k, 50 + (int)b * 5) == 0 && 50 + (int)b * 5 > kcp_mtu) {
                kcp_mtu = 50 + (int)b * 5;
            }
            gk_kcp_info info;
            gk_kcp_get_info(k, &info);
            CHECK(gk_kcp_waitsnd(k) >= 0);
            break;
        }
        }
    }
    gk_kcp_release(k);
}

/* ---- target 2: one FEC decoder --------------------------------------------------- */

static void fuzz_fec(reader *r)
{
    static const int shapes[5][2] = {{0, 0}, {10, 3}, {3, 2}, {1, 1}, {2, 7}};
    unsigned sb = u8(r);
    gk_fec_decoder *dec = gk_fec_decoder_new(shapes[sb % 5][0], shapes[sb % 5][1]);
    CHECK(dec);
    uint32_t now = 0xFFFFFF00u;
    gk_fec_recovered out[GK_FEC_MAX_RECOVERED];
    while (r->n) {
        unsigned op = u8(r);
        if ((op & 3) == 3) {
            now += u8(r) * 64;
            continue;
        }
        size_t got, len = read_len(r);
        const uint8_t *data = take(r, len, &got);
        uint8_t *pkt = malloc(got + 1);
        CHECK(pkt);
        memcpy(pkt, data, got);
        /* op bit 2: a tight out array (recovery must respect max_out) */
        int max = op & 4 ? 1 : GK_FEC_MAX_RECOVERED;
        int n = gk_fec_decode(dec, pkt, (int)got, now, out, max);
        free(pkt);
        CHECK(n >= -1 && n <= max);
        for (int i = 0; i < n; i++) {
            CHECK(out[i].len >= 0 && out[i].len <= GK_MTU_LIMIT);
            /* Touch every recovered byte: ASan checks the extent. */
            volatile uint8_t x = 0;
            for (int j = 0; j < out[i].len; j++)
                x ^= out[i].data[j];
            (void)x;
        }
        int ds, ps;
        gk_fec_decoder_shape(dec, &ds, &ps);
        CHECK(gk_fec_decoder_queued(dec) >= 0);
    }
    gk_fec_decoder_free(dec);
}

/* ---- target 3: packet decryption ---------------------------------------------------- */

static void fuzz_crypt(reader *r)
{
    const gk_crypt *c = ciphers[1 + u8(r) % (NCIPHERS - 1)];
    gk_nonce ng;
    uint8_t nseed[32] = {7};
    gk_nonce_init(&ng, nseed);
    while (r->n) {
        unsigned op = u8(r);
        size_t got, len = read_len(r);
        const uint8_t *data = take(r, len, &got);
        if (got > GK_MTU_LIMIT)
            got = GK_MTU_LIMIT;
        uint8_t *pkt = malloc(got + 1);
        CHECK(pkt);
        memcpy(pkt, data, got);
        if (op & 1 && got >= GK_CRYPT_HEADER) {
            gk_crypt_encrypt(c, &ng, pkt, got);
            if (op & 2) {
                /* One flipped bit in the CRC or payload: refused, or at
                 * worst (a CRC collision of CFB's garbled block) never
                 * opened as a different payload. */
                size_t bit = (size_t)u8(r) * 8 + (op >> 5);
                size_t span = (got - GK_NONCE_SIZE) * 8;
                bit = GK_NONCE_SIZE * 8 + bit % span;
                pkt[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                int rc = gk_crypt_decrypt(c, pkt, got);
                CHECK(rc == -2 || (rc == 0 && memcmp(pkt + GK_CRYPT_HEADER, data + GK_CRYPT_HEADER,
                                                    got - GK_CRYPT_HEADER) == 0));
            } else {
                CHECK(gk_crypt_decrypt(c, pkt, got) == 0);
                CHECK(memcmp(pkt + GK_CRYPT_HEADER, data + GK_CRYPT_HEADER, got - GK_CRYPT_HEADER) == 0);
            }
        } else {
            int rc = gk_crypt_decrypt(c, pkt, got);
            CHECK(got < GK_CRYPT_HEADER ? rc == -1 : (rc == 0 || rc == -2));
        }
        free(pkt);
    }
}

/* ---- target 4: the nonce replay filter ----------------------------------------- */

/* A nonce per id: distinct ids give distinct nonces. */
static void nonce_of(unsigned id, uint8_t out[GK_NONCE_SIZE])
{
    for (int i = 0; i < GK_NONCE_SIZE; i++)
        out[i] = (uint8_t)(id * 37 + (unsigned)i * 101 + (id >> 3));
    out[0] = (uint8_t)id;
    out[1] = (uint8_t)(id >> 8);
}

static void fuzz_replay(reader *r)
{
    /* Model: when each id was recorded, and how many records came after.
     * The filter must report a nonce recorded less than window_ms ago with
     * fewer than slots / 2 records after it, and never one not recorded. */
    enum { IDS = 4096 };
    static const uint32_t sizes[4] = {16, 128, 2048, 4096};
    unsigned shape = u8(r);
    uint32_t slots = sizes[shape & 3], window = 100u + (shape >> 2) * 50u;
    static const uint8_t key[16] = {3, 1, 4, 1, 5, 9, 2, 6};
    gk_replay *f = gk_replay_new(key, slots, window);
    CHECK(f);
    CHECK(!gk_replay_new(key, 24, window));
    static uint32_t recorded_at[IDS];
    static uint64_t serial[IDS];
    static uint8_t seen[IDS];
    uint32_t now = 0xFFFFFF00u;
    uint64_t records = 0;
    memset(seen, 0, sizeof seen);
    while (r->n) {
        unsigned op = u8(r);
        if ((op & 3) == 3) {
            now += u8(r) * (op & 4 ? 16u : 1u);
            continue;
        }
        unsigned id = (u8(r) | u8(r) << 8) % IDS;
        uint8_t nonce[GK_NONCE_SIZE];
        nonce_of(id, nonce);
        int hit = gk_replay_check(f, nonce, now);
        if (!seen[id])
            CHECK(hit == 0);
        else if (now - recorded_at[id] < window && records - serial[id] < slots / 2)
            CHECK(hit == 1);
        if (!hit) {
            seen[id] = 1;
            recorded_at[id] = now;
            serial[id] = ++records;
        }
    }
    gk_replay_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    unsigned t = u8(&r);
    switch (forced_target >= 0 ? (unsigned)forced_target : t % NTARGETS) {
    case T_PIPE: fuzz_pipe(&r); break;
    case T_KCP: fuzz_kcp(&r); break;
    case T_FEC: fuzz_fec(&r); break;
    case T_REPLAY: fuzz_replay(&r); break;
    default: fuzz_crypt(&r); break;
    }
    return 0;
}
