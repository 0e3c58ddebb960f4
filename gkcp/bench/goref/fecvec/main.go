// fecvec produces reference data for gkcp's FEC tests and benchmark from the
// real implementations: klauspost/reedsolomon (Debian 1.9.13) and kcp-go.
//
//	fecvec rs SEED           Reed-Solomon parity for random shards, JSON
//	fecvec kcp SEED DS PS    every packet a kcp-go FEC session writes, JSON
//	fecvec bench MS          ns per encode / reconstruct of several shapes, JSON
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/reedsolomon"
	kcp "github.com/xtaci/kcp-go"
)

func die(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func atoi(s string) int {
	v, err := strconv.Atoi(s)
	if err != nil {
		die(err)
	}
	return v
}

type rsVector struct {
	DS     int      `json:"ds"`
	PS     int      `json:"ps"`
	Size   int      `json:"size"`
	Shards []string `json:"shards"`
}

func rsVectors(seed int64) {
	rng := rand.New(rand.NewSource(seed))
	shapes := [][2]int{{10, 3}, {3, 2}, {1, 1}, {20, 10}, {128, 127}, {2, 1}, {255, 1}, {128, 128}}
	var out []rsVector
	for _, sh := range shapes {
		for rep := 0; rep < 3; rep++ {
			size := 1 + rng.Intn(1500)
			enc, err := reedsolomon.New(sh[0], sh[1])
			if err != nil {
				die(err)
			}
			shards := make([][]byte, sh[0]+sh[1])
			for i := range shards {
				shards[i] = make([]byte, size)
				if i < sh[0] {
					rng.Read(shards[i])
				}
			}
			if err := enc.Encode(shards); err != nil {
				die(err)
			}
			v := rsVector{DS: sh[0], PS: sh[1], Size: size}
			for _, s := range shards {
				v.Shards = append(v.Shards, hex.EncodeToString(s))
			}
			out = append(out, v)
		}
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

// recordConn is a net.PacketConn that keeps every datagram written to it and
// never delivers anything.
type recordConn struct {
	mu      sync.Mutex
	packets [][]byte
	closed  chan struct{}
}

func (c *recordConn) ReadFrom(b []byte) (int, net.Addr, error) {
	<-c.closed
	return 0, nil, net.ErrClosed
}

func (c *recordConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	c.packets = append(c.packets, append([]byte(nil), b...))
	c.mu.Unlock()
	return len(b), nil
}

func (c *recordConn) Close() error                       { return nil }
func (c *recordConn) LocalAddr() net.Addr                { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *recordConn) SetDeadline(t time.Time) error      { return nil }
func (c *recordConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *recordConn) SetWriteDeadline(t time.Time) error { return nil }

type kcpCapture struct {
	DS      int      `json:"ds"`
	PS      int      `json:"ps"`
	Packets []string `json:"packets"`
}

func kcpPackets(seed int64, ds, ps int) {
	rng := rand.New(rand.NewSource(seed))
	conn := &recordConn{closed: make(chan struct{})}
	raddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}
	sess, err := kcp.NewConn3(uint32(rng.Int31()), raddr, nil, ds, ps, conn)
	if err != nil {
		die(err)
	}
	sess.SetNoDelay(1, 10, 2, 1)
	sess.SetWindowSize(1024, 1024)
	// One segment per message, of mixed lengths; fewer than the peer's
	// assumed window of 32, since no ACK ever comes back.  The sleep lets
	// the 200 ms RTO retransmit them too, packed into fuller packets.
	for i := 0; i < 30; i++ {
		msg := make([]byte, 1+rng.Intn(1300))
		rng.Read(msg)
		if _, err := sess.Write(msg); err != nil {
			die(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	sess.Close()
	close(conn.closed)
	conn.mu.Lock()
	out := kcpCapture{DS: ds, PS: ps}
	for _, p := range conn.packets {
		out.Packets = append(out.Packets, hex.EncodeToString(p))
	}
	conn.mu.Unlock()
	json.NewEncoder(os.Stdout).Encode(out)
}

type benchResult struct {
	DS       int     `json:"ds"`
	PS       int     `json:"ps"`
	Size     int     `json:"size"`
	Lost     int     `json:"lost"`
	EncodeNs float64 `json:"encode_ns"`
	ReconNs  float64 `json:"reconstruct_ns"`
}

// timeIt runs f in batches until ms milliseconds have passed and returns ns per call.
func timeIt(ms int, f func()) float64 {
	for i := 0; i < 100; i++ {
		f()
	}
	n := 0
	start := time.Now()
	limit := time.Duration(ms) * time.Millisecond
	for time.Since(start) < limit {
		for i := 0; i < 100; i++ {
			f()
		}
		n += 100
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func bench(ms int) {
	cases := []struct{ ds, ps, size int }{
		{10, 3, 1400}, {10, 3, 1408}, {10, 3, 65536}, {3, 2, 1400}, {20, 10, 1400},
	}
	var out []benchResult
	for _, c := range cases {
		enc, err := reedsolomon.New(c.ds, c.ps)
		if err != nil {
			die(err)
		}
		n := c.ds + c.ps
		bufs := make([][]byte, n)
		shards := make([][]byte, n)
		for i := range bufs {
			bufs[i] = make([]byte, c.size)
			rand.Read(bufs[i])
			shards[i] = bufs[i]
		}
		r := benchResult{DS: c.ds, PS: c.ps, Size: c.size}
		r.EncodeNs = timeIt(ms, func() { enc.Encode(shards) })
		lost := c.ps
		if lost > 3 {
			lost = 3
		}
		r.Lost = lost
		r.ReconNs = timeIt(ms, func() {
			// as kcp-go does: missing shards are empty slices with capacity,
			// so the library rebuilds them in place without allocating
			for i := range shards {
				shards[i] = bufs[i]
			}
			for i := 0; i < lost; i++ {
				shards[i] = bufs[i][:0]
			}
			if err := enc.ReconstructData(shards); err != nil {
				die(err)
			}
		})
		out = append(out, r)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}

func main() {
	if len(os.Args) < 3 {
		die(fmt.Errorf("usage: fecvec rs SEED | kcp SEED DS PS | bench MS"))
	}
	switch os.Args[1] {
	case "rs":
		rsVectors(int64(atoi(os.Args[2])))
	case "kcp":
		if len(os.Args) != 5 {
			die(fmt.Errorf("usage: fecvec kcp SEED DS PS"))
		}
		kcpPackets(int64(atoi(os.Args[2])), atoi(os.Args[3]), atoi(os.Args[4]))
	case "bench":
		bench(atoi(os.Args[2]))
	default:
		die(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}
