/* Internal layout of sessions, sockets and the engine, shared by sess.c,
 * pipeline.c and sched.c.  Not exposed through cffi.  A datagram goes one
 * way: io.c reads a batch -> sess.c routes each datagram (dialed address,
 * session table, replacement, unproven sessions, proof, accept backlog) ->
 * pipeline.c takes it through crypt -> FEC -> KCP -> the session's events.
 * Out: KCP's output -> pipeline.c (FEC, crypt header) -> the socket's send
 * batch -> sess.c, which has pipeline.c seal it and writes it through io.c
 * (at the end of each call into the engine, or when pipeline.c hands out a
 * full batch through write_batch: the pipeline knows no writer).  sess.c also holds
 * the sessions' lifecycle and the API; sched.c the timer heap. */
#ifndef GK_SESS_IMPL_H
#define GK_SESS_IMPL_H
#include <stdint.h>
#include <sys/socket.h>
#include "crypt.h"
#include "fec.h"
#include "io.h"
#include "kcp.h"
#include "replay.h"
#include "sess.h"

/* A peer whose acknowledgements went back (a reset, or stale datagrams)
 * must still answer behind this long after the doubt began before the
 * session ends: duplicated and reordered datagrams come in bursts, and a
 * live peer answers the asks sent meanwhile with its real una. */
#define RESET_CONFIRM_MS 1000u

/* Datagrams of an unproven session handed to KCP; later ones before the
 * proof are only answered (the peer resends them once acknowledged
 * nothing). */
#define UNPROVEN_FEED_MAX 8

/* An address normalised for hashing and comparison. */
typedef struct gk_addr_key {
    uint16_t family;
    uint16_t port;
    uint32_t scope;
    uint8_t  ip[16];
} gk_addr_key;

struct gk_sess {
    uint32_t id;
    uint32_t conv;
    gk_kcp *kcp;
    gk_udp *udp;
    gk_config cfg;
    gk_fec_encoder *fec_enc;   /* NULL: FEC off for sending */
    gk_fec_decoder *fec_dec;   /* created on the first FEC packet */

    struct sockaddr_storage peer;
    socklen_t peerlen;
    gk_addr_key key;

    uint32_t last_rx;          /* when the peer last sent a valid KCP packet */
    uint32_t last_probe;       /* when keepalive last asked (starts as last_rx) */
    uint32_t peer_una;         /* the most the peer has acknowledged (its una), once peer_una_known */
    uint32_t suspect_at;       /* reset_suspect: since when */
    uint32_t due;              /* next flush, engine clock */
    int heap_index;            /* -1 when not scheduled */
    int event_index;           /* -1 when no event is pending */
    uint32_t linger_until;

    unsigned want_read : 1;
    unsigned want_write : 1;
    unsigned closing : 1;      /* Python has let go; lingering */
    unsigned unaccepted : 1;
    unsigned unproven : 1;     /* listener side: the peer has not answered a window ask yet */
    unsigned heard : 1;        /* a valid KCP packet came from the peer */
    unsigned peer_una_known : 1;
    unsigned reset_suspect : 1; /* a packet acknowledged less than peer_una, none since did not */
    unsigned reset_reasked : 1; /* suspect: asked again once RESET_CONFIRM_MS had passed */
    unsigned held : 1;         /* on the engine's held list (its input flush waits) */
    uint8_t reasked;           /* unproven: window asks sent unprompted */
    uint8_t fed;               /* unproven: datagrams handed to KCP */
    uint32_t born;             /* unproven: when the first datagram arrived */
    gk_sess *unproven_prev, *unproven_next;  /* unproven: the socket's queue, oldest first */
    gk_sess *held_next;        /* the engine's held list */
    int status;

    gk_sess *hash_next;
    gk_sess *udp_prev, *udp_next;  /* every session of the socket, in any state */

    uint8_t *left;             /* rest of a message larger than the reader's buffer */
    int left_off, left_len;
};

struct gk_udp {
    gk_engine *eng;
    int fd;
    int listening;
    int mmsg;
    int backlog, unaccepted;
    gk_config cfg;
    const gk_crypt *crypt;
    gk_batch rx, tx;
    void (*write_batch)(gk_udp *u); /* sess.c's writer, for a full send batch */
    uint8_t **seal_pkts;       /* scratch for gk_crypt_encrypt_many */
    size_t *seal_lens;
    /* Nonces come from one generator per socket: random nonces need only be
     * unpredictable and unique, not tied to a session, and sealing a whole
     * batch at once lets the cipher run several packets side by side. */
    gk_nonce nonce;

    gk_sess **buckets;         /* listening sockets: sessions by peer address */
    uint32_t nbuckets;         /* power of two */
    int nsess;
    gk_sess *dialed;           /* the session of a dialing socket */
    gk_sess *unproven_head, *unproven_tail;
    int nunproven;
    gk_replay *replay;         /* listening with crypt, else NULL */
    gk_sess *all;              /* every session, for teardown */
    gk_udp *eng_prev, *eng_next;

    int dirty;                 /* has queued datagrams */
    gk_udp *dirty_next;
    uint32_t last_read;        /* when the socket was last read (engine clock) */
    int read_error;            /* -errno a read inside gk_sess_send met, for gk_udp_take_error */
};

struct gk_engine {
    gk_sess **heap;
    int heap_len, heap_cap;
    gk_event *events;
    int nevents, events_cap;
    gk_udp *dirty;
    gk_sess *held;             /* sessions whose input flush waits for gk_engine_flush */
    int read_errors;           /* sockets with a read_error not taken yet */
    gk_udp *udps;
    gk_nonce seeder;           /* draws each session's nonce key */
    uint32_t next_id;
    uint32_t planned;          /* when the updater runs next */
    int wake;                  /* a session became due before `planned` */
    uint64_t hash_k0, hash_k1;
    int nsess;
};

/* sched.c */
int gk_sched_put(gk_engine *eng, gk_sess *s, uint32_t due);
void gk_sched_remove(gk_engine *eng, gk_sess *s);
gk_sess *gk_sched_peek(const gk_engine *eng);

/* pipeline.c: packets through the layers; it never looks sessions up */
void gk_pipe_output(uint8_t *buf, int len, void *user);
/* Decrypts (crypt sockets) and checks one datagram in place: returns its FEC
 * type (0: plain KCP, GK_FEC_TYPE_DATA, GK_FEC_TYPE_PARITY) with *pkt and
 * *len past the crypt header, or -1 if it was dropped (counted). */
int gk_pipe_open(gk_udp *u, uint8_t **pkt, int *len, uint32_t now);
/* An opened datagram for s (as routed by sess.c) through FEC into KCP, then
 * s's events. */
void gk_pipe_deliver(gk_sess *s, const uint8_t *pkt, int len, int fec_type, uint32_t now);
/* Encrypts (crypt sockets) every datagram in u's send batch, which is then
 * ready for the socket. */
void gk_pipe_seal(gk_udp *u);
void gk_pipe_hold(gk_sess *s);
void gk_pipe_unhold(gk_sess *s);
void gk_pipe_flush_held(gk_engine *eng, uint32_t now);

/* sess.c: one datagram read from u, routed to its session (see above) and
 * handed to the pipeline */
void gk_udp_input(gk_udp *u, uint8_t *pkt, int len, const struct sockaddr_storage *from,
                  socklen_t fromlen, uint32_t now);
/* sess.c: writes the send batch of every socket that has one queued */
void gk_udp_write_dirty(gk_engine *eng);
/* sess.c, the session's events and state, used by the pipeline */
void gk_sess_end(gk_sess *s, int status);
void gk_sess_post(gk_sess *s, uint32_t flags);
void gk_sess_check_ready(gk_sess *s);
void gk_sess_wake(gk_sess *s, uint32_t now);

#endif
