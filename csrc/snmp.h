/* Process-wide counters, named as kcp-go's Snmp (snmp.go) plus gkcp's own
 * additions at the end.  Single-threaded by design (one gevent hub drives the
 * core), so plain increments suffice.  build_ffi.py reads the field list from
 * this struct, so keep one `uint64_t Name;` per line. */
#ifndef GK_SNMP_H
#define GK_SNMP_H
#include <stdint.h>

typedef struct gk_snmp {
    uint64_t BytesSent;        /* bytes accepted from the application */
    uint64_t BytesReceived;    /* bytes delivered to the application */
    uint64_t MaxConn;          /* most sessions open at once */
    uint64_t ActiveOpens;      /* sessions dialed */
    uint64_t PassiveOpens;     /* sessions accepted */
    uint64_t CurrEstab;        /* sessions open now */
    uint64_t InErrs;           /* packets refused before KCP (too short, bad FEC header, no session to take them) */
    uint64_t InCsumErrors;     /* CRC-32 mismatch after decryption */
    uint64_t KCPInErrors;      /* packets KCP refused (conv, cmd, len) */
    uint64_t InPkts;           /* UDP datagrams read */
    uint64_t OutPkts;          /* UDP datagrams written */
    uint64_t InSegs;           /* KCP segments read */
    uint64_t OutSegs;          /* KCP segments written */
    uint64_t InBytes;          /* UDP payload bytes read */
    uint64_t OutBytes;         /* UDP payload bytes written */
    uint64_t RetransSegs;      /* all retransmissions */
    uint64_t FastRetransSegs;  /* retransmissions by fast resend */
    uint64_t EarlyRetransSegs; /* retransmissions by early retransmit */
    uint64_t LostSegs;         /* retransmissions by RTO */
    uint64_t RepeatSegs;       /* duplicate PUSH segments received */
    uint64_t FECParityShards;  /* FEC parity packets received */
    uint64_t FECErrs;          /* recovered shards with an impossible size field */
    uint64_t FECRecovered;     /* data shards rebuilt and handed to KCP */
    uint64_t FECShortShards;   /* data shards dropped from the FEC queue unused */
    /* gkcp additions */
    uint64_t FECShapeErrs;     /* FEC packets whose group shape could not be trusted: not used for recovery */
    uint64_t InTruncated;      /* datagrams longer than the 1500-byte read buffer */
    uint64_t OutErrs;          /* datagrams the kernel refused to send (counted, KCP retransmits) */
    uint64_t AcceptDrops;      /* sessions proven while the accept backlog was full (freed: nothing was acknowledged) */
    uint64_t DeadLinks;        /* sessions ended by the dead-link or idle limit */
    uint64_t InWrongPeer;      /* datagrams to a dialed session from an address other than the one dialed */
    uint64_t InReplays;        /* authentic datagrams a listening socket had seen before (replays, network duplicates) */
    uint64_t UnprovenEvicted;  /* unproven sessions freed to make room for newer ones */
    uint64_t UnprovenExpired;  /* unproven sessions freed because their address never answered */
    uint64_t KeepaliveProbes;  /* window asks sent because the peer was silent for the keepalive interval */
    uint64_t KeepaliveTimeouts;/* sessions ended because no keepalive probe was answered */
    uint64_t PeerResets;       /* sessions ended because the peer acknowledged less than before (GK_ST_RESET) */
} gk_snmp;

extern gk_snmp gk_stats;

#endif
