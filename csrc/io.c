#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "sess.h"
#include "snmp.h"

int gk_batch_init(gk_batch *b, int cap)
{
    memset(b, 0, sizeof(*b));
    b->cap = cap;
    if (posix_memalign((void **)&b->bufs, GK_BUF_ALIGN, (size_t)cap * GK_SLOT_SIZE) != 0) {
        b->bufs = NULL;
        return -1;
    }
    b->lens = calloc((size_t)cap, sizeof(int));
    b->addrs = calloc((size_t)cap, sizeof(struct sockaddr_storage));
    b->addrlens = calloc((size_t)cap, sizeof(socklen_t));
    b->msgs = calloc((size_t)cap, sizeof(struct mmsghdr));
    b->iovs = calloc((size_t)cap, sizeof(struct iovec));
    if (!b->lens || !b->addrs || !b->addrlens || !b->msgs || !b->iovs) {
        gk_batch_free(b);
        return -1;
    }
    return 0;
}

void gk_batch_free(gk_batch *b)
{
    free(b->bufs);
    free(b->lens);
    free(b->addrs);
    free(b->addrlens);
    free(b->msgs);
    free(b->iovs);
    memset(b, 0, sizeof(*b));
}

static void prepare(gk_batch *b, int i, size_t len)
{
    struct mmsghdr *m = (struct mmsghdr *)b->msgs + i;
    struct iovec *v = (struct iovec *)b->iovs + i;
    v->iov_base = gk_batch_slot(b, i);
    v->iov_len = len;
    memset(&m->msg_hdr, 0, sizeof(m->msg_hdr));
    m->msg_hdr.msg_name = &b->addrs[i];
    m->msg_hdr.msg_namelen = b->addrlens[i] ? b->addrlens[i] : sizeof(struct sockaddr_storage);
    m->msg_hdr.msg_iov = v;
    m->msg_hdr.msg_iovlen = 1;
    m->msg_len = 0;
}

static void account_in(gk_batch *b, int i, unsigned flags, size_t got)
{
    if (flags & MSG_TRUNC) {
        b->lens[i] = -1;
        gk_stats.InTruncated++;
    } else {
        b->lens[i] = (int)got;
        gk_stats.InBytes += got;
    }
    gk_stats.InPkts++;
}

static int recv_plain(int fd, gk_batch *b)
{
    int n = 0;
    while (n < b->cap) {
        b->addrlens[n] = sizeof(struct sockaddr_storage);
        ssize_t got = recvfrom(fd, gk_batch_slot(b, n), GK_MTU_LIMIT, MSG_DONTWAIT | MSG_TRUNC,
                               (struct sockaddr *)&b->addrs[n], &b->addrlens[n]);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (n == 0)
                return -errno;
            break;
        }
        account_in(b, n, got > GK_MTU_LIMIT ? MSG_TRUNC : 0, (size_t)got);
        n++;
    }
    b->n = n;
    return n;
}

int gk_io_recv(int fd, gk_batch *b, int mmsg)
{
    if (!mmsg)
        return recv_plain(fd, b);
    /* The kernel writes only msg_len, msg_namelen and msg_flags of the
     * headers it fills: set every header up once, then after each call
     * reset just the fields of those it used. */
    if (!b->primed) {
        for (int i = 0; i < b->cap; i++) {
            b->addrlens[i] = 0;
            prepare(b, i, GK_MTU_LIMIT);
        }
        b->primed = 1;
    }
    int got;
    do {
        got = recvmmsg(fd, (struct mmsghdr *)b->msgs, (unsigned)b->cap, MSG_DONTWAIT, NULL);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        b->n = 0;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == ENOSYS)
            return recv_plain(fd, b);
        return -errno;
    }
    for (int i = 0; i < got; i++) {
        struct mmsghdr *m = (struct mmsghdr *)b->msgs + i;
        b->addrlens[i] = m->msg_hdr.msg_namelen;
        account_in(b, i, (unsigned)m->msg_hdr.msg_flags, m->msg_len);
        m->msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        m->msg_hdr.msg_flags = 0;
    }
    b->n = got;
    return got;
}

static void account_out(size_t bytes)
{
    gk_stats.OutPkts++;
    gk_stats.OutBytes += bytes;
}

static void send_plain(int fd, gk_batch *b)
{
    for (int i = 0; i < b->n; i++) {
        ssize_t put;
        do {
            put = sendto(fd, gk_batch_slot(b, i), (size_t)b->lens[i], MSG_DONTWAIT,
                         (struct sockaddr *)&b->addrs[i], b->addrlens[i]);
        } while (put < 0 && errno == EINTR);
        if (put < 0)
            gk_stats.OutErrs++;
        else
            account_out((size_t)put);
    }
}

void gk_io_send(int fd, gk_batch *b, int mmsg)
{
    if (b->n == 0)
        return;
    if (!mmsg) {
        send_plain(fd, b);
        b->n = 0;
        return;
    }
    b->primed = 0; /* these headers are set up for sending now */
    for (int i = 0; i < b->n; i++)
        prepare(b, i, (size_t)b->lens[i]);
    int done = 0;
    while (done < b->n) {
        int put = sendmmsg(fd, (struct mmsghdr *)b->msgs + done, (unsigned)(b->n - done), MSG_DONTWAIT);
        if (put < 0) {
            if (errno == EINTR)
                continue;
            /* The datagram at `done` is the one refused: skip it and go on
             * with the rest rather than dropping the whole batch. */
            gk_stats.OutErrs++;
            done++;
            continue;
        }
        for (int i = done; i < done + put; i++)
            account_out(((struct mmsghdr *)b->msgs)[i].msg_len);
        done += put;
    }
    b->n = 0;
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int gk_spin_readable(const int *fds, int nfds, uint32_t budget_us)
{
    struct pollfd pfds[GK_SPIN_MAX_FDS];
    if (nfds < 1 || nfds > GK_SPIN_MAX_FDS || budget_us > GK_SPIN_MAX_US)
        return -EINVAL;
    for (int i = 0; i < nfds; i++) {
        pfds[i].fd = fds[i];
        pfds[i].events = POLLIN;
        pfds[i].revents = 0;
    }
    /* unsigned 64-bit nanoseconds from boot: no wrap in practice, and the
     * difference below is taken in the same type */
    const uint64_t start = monotonic_ns(), budget_ns = (uint64_t)budget_us * 1000u;
    uint64_t last = start;
    for (;;) {
        int rc = poll(pfds, (nfds_t)nfds, 0);
        if (rc > 0)
            return GK_SPIN_READABLE;
        if (rc < 0 && errno != EINTR)
            return -errno;
        uint64_t now = monotonic_ns();
        if (now - last > (uint64_t)GK_SPIN_PREEMPT_US * 1000u)
            return GK_SPIN_PREEMPTED;
        if (now - start >= budget_ns)
            return GK_SPIN_NOTHING;
        last = now;
    }
}
