/* Batched datagram I/O: the only file of the core that makes system calls.
 * Internal to the core (not exposed through cffi). */
#ifndef GK_IO_H
#define GK_IO_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "common.h"

/* Room for one datagram: 1500 bytes rounded up so every slot starts on a
 * cache line, which keeps FEC shards and cipher blocks aligned. */
#define GK_SLOT_SIZE 1536

/* A set of datagram slots used for one recvmmsg or one sendmmsg. */
typedef struct gk_batch {
    int cap;                       /* slots */
    int n;                         /* slots in use */
    uint8_t *bufs;                 /* cap * GK_SLOT_SIZE, 64-byte aligned */
    int *lens;                     /* payload length of each slot */
    struct sockaddr_storage *addrs;
    socklen_t *addrlens;
    void *msgs;                    /* struct mmsghdr[cap], kept opaque here */
    void *iovs;                    /* struct iovec[cap] */
    int primed;                    /* receive batch: every header set up for recvmmsg */
} gk_batch;

int gk_batch_init(gk_batch *b, int cap);
void gk_batch_free(gk_batch *b);
static inline uint8_t *gk_batch_slot(const gk_batch *b, int i) { return b->bufs + (size_t)i * GK_SLOT_SIZE; }

/* Reads up to b->cap datagrams into b (b->n is set).  Returns the count,
 * 0 if nothing was waiting, or -errno.  Datagrams longer than the slot are
 * marked with length -1 (counted by the caller as truncated). mmsg = 0 uses
 * plain recvfrom (the fallback path, also used by tests). */
int gk_io_recv(int fd, gk_batch *b, int mmsg);
/* Writes the b->n queued datagrams and empties b.  Datagrams the kernel
 * refuses (full buffer, unreachable peer) are dropped and counted in OutErrs:
 * KCP retransmits them, and blocking here would stall every session. */
void gk_io_send(int fd, gk_batch *b, int mmsg);

#endif
