/* Limits shared by every layer of the packet pipeline. */
#ifndef GK_COMMON_H
#define GK_COMMON_H

#define GK_MTU_LIMIT      1500  /* largest UDP payload read or written (kcp-go mtuLimit) */
#define GK_CRYPT_HEADER   20    /* nonce 16 + CRC-32 4, present iff a cipher is configured */
#define GK_NONCE_SIZE     16
#define GK_FEC_HEADER     8     /* seqid 4 + type 2 + size 2, present iff FEC is on */
#define GK_FEC_TYPE_DATA   0xF1
#define GK_FEC_TYPE_PARITY 0xF2
#define GK_KCP_OVERHEAD   24    /* KCP segment header */
#define GK_BUF_ALIGN      64    /* packet and shard buffers start on cache lines */

#endif
