// Command peer is the kcp-go 5.6.1 reference peer used by gkcp's interop
// tests and benchmarks.  See tests/gopeer.py for the Python side and the
// usage text below for the command line.
//
// Build (Debian packages, no modules):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o peer ./gkcp/bench/goref/peer
//
// (gkcp.bench.gobuild does this into ~/.cache/gkcp/go for the tests and the
// benchmark.)
//
// Output protocol: one line per event on stdout, written in a single write:
//
//	READY <ip:port>                               (listen, once listening)
//	SINK <n> <sha256-hex> <seconds>               (listen -role sink, per session)
//	SOURCE <n> <hex-sent> <hex-peer>              (listen -role source, per session)
//	ECHO <n>                                      (listen -role echo, per session)
//	EXIT                                          (listen, after all sessions)
//	SEND <n> <hex-sent> <hex-peer> <seconds> <MB/s>
//	RECV <n> <hex> <seconds>
//	ECHO <n> <hex-sent> <hex-recv> <seconds>      (dial -role echo)
//	RTT <count> <p50_us> <p99_us>
//	WORK <user-seconds> <system-seconds>          (CPU of the timed part: first session's start to last result)
//	CPU <user-seconds> <system-seconds>           (getrusage of this process)
//	SNMP <json of kcp.DefaultSnmp>
//	TIMEOUT / STAT ...                            (exit status 3)
//	ERROR <message>                               (exit status 1, 2 for usage)
//
// Payload bytes: the stream for seed S is the concatenation of the 65536-byte
// chunks SHAKE128("gkcp-peer" || u64le(S) || u64le(k)) for k = 0, 1, ...,
// cut to the requested length (tests/gopeer.py: stream_bytes).
package main

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	kcp "github.com/xtaci/kcp-go"
	"golang.org/x/crypto/pbkdf2"
	"golang.org/x/crypto/sha3"
)

const chunkSize = 65536

// ---------------------------------------------------------------- output

var outMu sync.Mutex

func emit(format string, a ...interface{}) {
	line := fmt.Sprintf(format, a...) + "\n"
	outMu.Lock()
	os.Stdout.WriteString(line)
	outMu.Unlock()
}

func cpuLine() {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		emit("CPU %.6f %.6f", tvSeconds(ru.Utime), tvSeconds(ru.Stime))
	}
}

// The timed part's CPU: benchmarks divide the work of a transfer, not the
// process's start-up, by the bytes moved.
var (
	workMu               sync.Mutex
	workBegin, workEnd   syscall.Rusage
	workBegun, workEnded bool
)

func markWorkBegin() {
	workMu.Lock()
	defer workMu.Unlock()
	if !workBegun && syscall.Getrusage(syscall.RUSAGE_SELF, &workBegin) == nil {
		workBegun = true
	}
}

func markWorkEnd() {
	workMu.Lock()
	defer workMu.Unlock()
	if syscall.Getrusage(syscall.RUSAGE_SELF, &workEnd) == nil {
		workEnded = true
	}
}

func workLine() {
	workMu.Lock()
	defer workMu.Unlock()
	if workBegun && workEnded {
		emit("WORK %.6f %.6f", tvSeconds(workEnd.Utime)-tvSeconds(workBegin.Utime),
			tvSeconds(workEnd.Stime)-tvSeconds(workBegin.Stime))
	}
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

func snmpLine() {
	js, err := json.Marshal(kcp.DefaultSnmp.Copy())
	if err != nil {
		emit("ERROR snmp: %v", err)
		os.Exit(1)
	}
	emit("SNMP %s", js)
}

func die(code int, format string, a ...interface{}) {
	emit("ERROR "+format, a...)
	os.Exit(code)
}

// progress counters, reported on TIMEOUT
var bytesIn, bytesOut, sessionsDone int64

// ---------------------------------------------------------------- payload

// stream produces the deterministic payload described in the package comment.
type stream struct {
	seed  uint64
	chunk uint64
	buf   []byte
	pos   int
}

func newStream(seed int64) *stream {
	return &stream{seed: uint64(seed), buf: make([]byte, chunkSize), pos: chunkSize}
}

func (s *stream) refill() {
	var hdr [9 + 16]byte
	copy(hdr[:], "gkcp-peer")
	binary.LittleEndian.PutUint64(hdr[9:], s.seed)
	binary.LittleEndian.PutUint64(hdr[17:], s.chunk)
	h := sha3.NewShake128()
	h.Write(hdr[:])
	h.Read(s.buf)
	s.chunk++
	s.pos = 0
}

// next returns up to max bytes of the stream; the slice is valid until the
// following call.
func (s *stream) next(max int) []byte {
	if s.pos == len(s.buf) {
		s.refill()
	}
	n := len(s.buf) - s.pos
	if n > max {
		n = max
	}
	b := s.buf[s.pos : s.pos+n]
	s.pos += n
	return b
}

// ---------------------------------------------------------------- settings

type config struct {
	addr                           string
	role                           string
	nbytes                         int64
	sessions                       int
	nodelay, interval, resend, nc  int
	mode                           string
	sndwnd, rcvwnd, mtu            int
	stream, acknodelay, writedelay bool
	ds, ps                         int
	crypt, keyHex, pass            string
	sockbuf                        int
	timeout, linger, idle          float64
	seed                           int64
	count, size                    int
	tellwnd                        bool
	acceptDelay                    float64
	lockCrypt                      bool
}

var modes = map[string][4]int{
	"default": {0, 100, 0, 0}, // kcp-go NewKCP
	"normal":  {0, 40, 2, 1},  // kcptun presets (docs/wire.md §9)
	"fast":    {0, 30, 2, 1},
	"fast2":   {1, 20, 2, 1},
	"fast3":   {1, 10, 2, 1},
}

// kcptun 20210922 key cut per cipher name: bytes of the derived key passed on.
var keyCut = map[string]int{
	"aes": 32, "aes-128": 16, "aes-192": 24, "twofish": 32, "sm4": 16,
	"blowfish": 32, "cast5": 16, "3des": 24, "tea": 16, "xtea": 16,
	"salsa20": 32, "xor": 32, "none": 32,
}

func parseFlags(cmd string, args []string) *config {
	c := &config{}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:0", "listen / dial address")
	if cmd == "listen" {
		fs.StringVar(&c.role, "role", "sink", "sink|source|echo")
		fs.IntVar(&c.sessions, "sessions", 1, "sessions to serve (concurrently) before exiting")
		fs.Float64Var(&c.acceptDelay, "acceptdelay", 0, "seconds to wait after Accept before applying settings (reproduces docs/wire.md §6)")
		fs.BoolVar(&c.tellwnd, "tellwnd", true, "after applying windows to an accepted session, announce them with a WINS (avoids kcp-go's 7 s window stall, docs/wire.md §6); false = plain kcp-go")
	} else {
		fs.StringVar(&c.role, "role", "send", "send|recv|echo|rtt")
	}
	// accepted (and ignored) by listen too, so both sides can share settings
	fs.IntVar(&c.count, "count", 100, "dial rtt: round trips")
	fs.IntVar(&c.size, "size", 64, "dial rtt: bytes per round trip")
	fs.Int64Var(&c.nbytes, "bytes", 1<<20, "payload bytes (listen echo: 0 = until -idle / -timeout)")
	fs.IntVar(&c.nodelay, "nodelay", 0, "SetNoDelay nodelay")
	fs.IntVar(&c.interval, "interval", 100, "SetNoDelay interval (ms)")
	fs.IntVar(&c.resend, "resend", 0, "SetNoDelay resend")
	fs.IntVar(&c.nc, "nc", 0, "SetNoDelay nc")
	fs.StringVar(&c.mode, "mode", "", "normal|fast|fast2|fast3|default; explicit -nodelay/-interval/-resend/-nc override it")
	fs.IntVar(&c.sndwnd, "sndwnd", 32, "send window (segments)")
	fs.IntVar(&c.rcvwnd, "rcvwnd", 32, "receive window (segments)")
	fs.IntVar(&c.mtu, "mtu", 1400, "MTU (UDP payload bytes)")
	fs.BoolVar(&c.stream, "stream", false, "stream mode")
	fs.BoolVar(&c.acknodelay, "acknodelay", false, "SetACKNoDelay")
	fs.BoolVar(&c.writedelay, "writedelay", false, "SetWriteDelay")
	fs.IntVar(&c.ds, "ds", 0, "FEC data shards (0 = off)")
	fs.IntVar(&c.ps, "ps", 0, "FEC parity shards (0 = off)")
	fs.StringVar(&c.crypt, "crypt", "", "kcptun cipher name; empty = no BlockCrypt (no 20-byte header)")
	fs.StringVar(&c.keyHex, "key", "", "key bytes in hex (cut per cipher like kcptun when longer)")
	fs.StringVar(&c.pass, "pass", "", "passphrase, kcptun derivation (default kcptun's \"it's a secrect\")")
	fs.BoolVar(&c.lockCrypt, "lockcrypt", false, "serialise Encrypt/Decrypt (kcp-go shares one BlockCrypt between goroutines; tjfoc sm4 is not safe for that)")
	fs.IntVar(&c.sockbuf, "sockbuf", 4<<20, "socket buffer bytes (0 = leave alone)")
	fs.Float64Var(&c.timeout, "timeout", 60, "overall deadline in seconds")
	fs.Float64Var(&c.linger, "linger", 3, "seconds to wait for our last data to be acknowledged before Close")
	fs.Float64Var(&c.idle, "idle", 0, "per-read idle limit in seconds (0 = none); ends a listen echo session normally")
	fs.Int64Var(&c.seed, "seed", 1, "payload seed")
	if err := fs.Parse(args); err != nil {
		die(2, "usage: %v", err)
	}
	if fs.NArg() != 0 {
		die(2, "usage: unexpected arguments %q", fs.Args())
	}
	if c.mode != "" && c.mode != "manual" {
		m, ok := modes[c.mode]
		if !ok {
			die(2, "usage: unknown -mode %q", c.mode)
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["nodelay"] {
			c.nodelay = m[0]
		}
		if !set["interval"] {
			c.interval = m[1]
		}
		if !set["resend"] {
			c.resend = m[2]
		}
		if !set["nc"] {
			c.nc = m[3]
		}
	}
	if c.nbytes < 0 || c.sessions < 0 || c.count < 0 || c.size < 0 {
		die(2, "usage: negative -bytes/-sessions/-count/-size")
	}
	return c
}

// lockedCrypt serialises a BlockCrypt.  kcp-go 5.6.1 uses one BlockCrypt
// from several goroutines at once (a listener's read loop decrypts while its
// sessions encrypt; a dialed session's read loop decrypts while it sends).
// tjfoc/gmsm's SM4 keeps scratch buffers in the cipher object, so with "sm4"
// that race corrupts packets now and then (they fail the CRC: InCsumErrors).
type lockedCrypt struct {
	mu sync.Mutex
	b  kcp.BlockCrypt
}

func (l *lockedCrypt) Encrypt(dst, src []byte) { l.mu.Lock(); l.b.Encrypt(dst, src); l.mu.Unlock() }
func (l *lockedCrypt) Decrypt(dst, src []byte) { l.mu.Lock(); l.b.Decrypt(dst, src); l.mu.Unlock() }

func (c *config) blockCrypt() (kcp.BlockCrypt, error) {
	b, err := c.newBlockCrypt()
	if err != nil || b == nil || !c.lockCrypt {
		return b, err
	}
	return &lockedCrypt{b: b}, nil
}

func (c *config) newBlockCrypt() (kcp.BlockCrypt, error) {
	if c.crypt == "" {
		if c.keyHex != "" || c.pass != "" {
			return nil, errors.New("-key/-pass given without -crypt")
		}
		return nil, nil
	}
	cut, ok := keyCut[c.crypt]
	if !ok {
		return nil, fmt.Errorf("unknown -crypt %q", c.crypt)
	}
	var key []byte
	switch {
	case c.keyHex != "" && c.pass != "":
		return nil, errors.New("give -key or -pass, not both")
	case c.keyHex != "":
		k, err := hex.DecodeString(c.keyHex)
		if err != nil {
			return nil, fmt.Errorf("-key: %v", err)
		}
		key = k
	default:
		pass := c.pass
		if pass == "" {
			pass = "it's a secrect"
		}
		key = pbkdf2.Key([]byte(pass), []byte("kcp-go"), 4096, 32, sha1.New)
	}
	if len(key) > cut {
		key = key[:cut]
	}
	switch c.crypt {
	case "aes", "aes-128", "aes-192":
		return kcp.NewAESBlockCrypt(key)
	case "twofish":
		return kcp.NewTwofishBlockCrypt(key)
	case "sm4":
		return kcp.NewSM4BlockCrypt(key)
	case "blowfish":
		return kcp.NewBlowfishBlockCrypt(key)
	case "cast5":
		return kcp.NewCast5BlockCrypt(key)
	case "3des":
		return kcp.NewTripleDESBlockCrypt(key)
	case "tea":
		return kcp.NewTEABlockCrypt(key)
	case "xtea":
		return kcp.NewXTEABlockCrypt(key)
	case "salsa20":
		return kcp.NewSalsa20BlockCrypt(key)
	case "xor":
		return kcp.NewSimpleXORBlockCrypt(key)
	default: // "none"
		return kcp.NewNoneBlockCrypt(key)
	}
}

// apply configures a session the way kcp-go applications do.
func (c *config) apply(s *kcp.UDPSession, own bool) {
	s.SetStreamMode(c.stream)
	s.SetWriteDelay(c.writedelay)
	s.SetNoDelay(c.nodelay, c.interval, c.resend, c.nc)
	s.SetWindowSize(c.sndwnd, c.rcvwnd)
	if !s.SetMtu(c.mtu) {
		die(1, "SetMtu(%d) refused", c.mtu)
	}
	s.SetACKNoDelay(c.acknodelay)
	if own && c.sockbuf > 0 {
		if err := s.SetReadBuffer(c.sockbuf); err != nil {
			die(1, "SetReadBuffer: %v", err)
		}
		if err := s.SetWriteBuffer(c.sockbuf); err != nil {
			die(1, "SetWriteBuffer: %v", err)
		}
	}
}

func (c *config) setIdle(s *kcp.UDPSession) {
	if c.idle > 0 {
		s.SetReadDeadline(time.Now().Add(secs(c.idle)))
	}
}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// ---------------------------------------------------------------- lingering

// waitSent waits until the session's send queue and send buffer are empty
// (all our data acknowledged) or d has passed.  kcp-go 5.6.1 does not export
// this, so the session's kcp and mu fields are reached by reflection.
func waitSent(s *kcp.UDPSession, d time.Duration) bool {
	v := reflect.ValueOf(s).Elem()
	kf, mf := v.FieldByName("kcp"), v.FieldByName("mu")
	if !kf.IsValid() || !mf.IsValid() {
		time.Sleep(d)
		return false
	}
	k := *(**kcp.KCP)(unsafe.Pointer(kf.UnsafeAddr()))
	mu := (*sync.Mutex)(unsafe.Pointer(mf.UnsafeAddr()))
	deadline := time.Now().Add(d)
	for {
		mu.Lock()
		n := k.WaitSnd()
		mu.Unlock()
		if n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// tellWindow makes the session's next flush carry a WINS segment.
//
// An accepted session runs with kcp-go's 32/32 windows until the application
// applies its own.  If 32 segments reached its receive queue before that, it
// advertised window 0; enlarging rcv_wnd afterwards announces nothing, and a
// sender with nothing in flight waits for its 7 s window probe.  Setting
// IKCP_ASK_TELL (what kcp-go itself does when a full queue drains) sends the
// new window on the next timer run.  kcp-go 5.6.1 has no public call for it.
func tellWindow(s *kcp.UDPSession) {
	v := reflect.ValueOf(s).Elem()
	kf, mf := v.FieldByName("kcp"), v.FieldByName("mu")
	if !kf.IsValid() || !mf.IsValid() {
		return
	}
	k := *(**kcp.KCP)(unsafe.Pointer(kf.UnsafeAddr()))
	pf := reflect.ValueOf(k).Elem().FieldByName("probe")
	if !pf.IsValid() || pf.Kind() != reflect.Uint32 {
		return
	}
	mu := (*sync.Mutex)(unsafe.Pointer(mf.UnsafeAddr()))
	mu.Lock()
	*(*uint32)(unsafe.Pointer(pf.UnsafeAddr())) |= kcp.IKCP_ASK_TELL
	mu.Unlock()
}

// ---------------------------------------------------------------- I/O helpers

// writeStream writes n bytes of the payload stream, hashing them.
func writeStream(s *kcp.UDPSession, st *stream, n int64) ([]byte, error) {
	h := sha256.New()
	for left := n; left > 0; {
		max := chunkSize
		if int64(max) > left {
			max = int(left)
		}
		b := st.next(max)
		h.Write(b)
		if _, err := s.Write(b); err != nil {
			return nil, err
		}
		atomic.AddInt64(&bytesOut, int64(len(b)))
		left -= int64(len(b))
	}
	return h.Sum(nil), nil
}

// readHash reads exactly n bytes, hashing them.
func readHash(c *config, s *kcp.UDPSession, n int64) ([]byte, error) {
	h := sha256.New()
	buf := make([]byte, chunkSize)
	for left := n; left > 0; {
		max := int64(len(buf))
		if max > left {
			max = left
		}
		c.setIdle(s)
		m, err := s.Read(buf[:max])
		if m > 0 {
			h.Write(buf[:m])
			left -= int64(m)
			atomic.AddInt64(&bytesIn, int64(m))
		}
		if err != nil && left > 0 {
			return nil, fmt.Errorf("read after %d of %d bytes: %v", n-left, n, err)
		}
	}
	return h.Sum(nil), nil
}

func readFull(c *config, s *kcp.UDPSession, b []byte) error {
	c.setIdle(s)
	_, err := io.ReadFull(s, b)
	if err == nil {
		atomic.AddInt64(&bytesIn, int64(len(b)))
	}
	return err
}

func writeAll(s *kcp.UDPSession, b []byte) error {
	_, err := s.Write(b)
	if err == nil {
		atomic.AddInt64(&bytesOut, int64(len(b)))
	}
	return err
}

// ---------------------------------------------------------------- listen

func listen(c *config) {
	switch c.role {
	case "sink", "source", "echo":
	default:
		die(2, "usage: listen -role must be sink|source|echo, not %q", c.role)
	}
	block, err := c.blockCrypt()
	if err != nil {
		die(1, "%v", err)
	}
	l, err := kcp.ListenWithOptions(c.addr, block, c.ds, c.ps)
	if err != nil {
		die(1, "listen: %v", err)
	}
	if c.sockbuf > 0 {
		if err := l.SetReadBuffer(c.sockbuf); err != nil {
			die(1, "listener SetReadBuffer: %v", err)
		}
		if err := l.SetWriteBuffer(c.sockbuf); err != nil {
			die(1, "listener SetWriteBuffer: %v", err)
		}
	}
	emit("READY %s", l.Addr().String())

	var wg sync.WaitGroup
	for i := 0; i < c.sessions; i++ {
		s, err := l.AcceptKCP()
		if err != nil {
			die(1, "accept: %v", err)
		}
		if c.acceptDelay > 0 {
			time.Sleep(secs(c.acceptDelay))
		}
		c.apply(s, false)
		if c.tellwnd {
			tellWindow(s)
		}
		wg.Add(1)
		go func(s *kcp.UDPSession) {
			defer wg.Done()
			serve(c, s)
			atomic.AddInt64(&sessionsDone, 1)
		}(s)
	}
	wg.Wait()
	l.Close()
	emit("EXIT")
}

func serve(c *config, s *kcp.UDPSession) {
	markWorkBegin()
	start := time.Now()
	switch c.role {
	case "sink":
		sum, err := readHash(c, s, c.nbytes)
		if err != nil {
			die(1, "sink: %v", err)
		}
		secs := time.Since(start).Seconds()
		if err := writeAll(s, sum); err != nil {
			die(1, "sink: write digest: %v", err)
		}
		emit("SINK %d %x %.6f", c.nbytes, sum, secs)
	case "source":
		var one [1]byte
		if err := readFull(c, s, one[:]); err != nil {
			die(1, "source: read opening byte: %v", err)
		}
		sent, err := writeStream(s, newStream(c.seed), c.nbytes)
		if err != nil {
			die(1, "source: write: %v", err)
		}
		peer := make([]byte, sha256.Size)
		if err := readFull(c, s, peer); err != nil {
			die(1, "source: read digest: %v", err)
		}
		emit("SOURCE %d %x %x", c.nbytes, sent, peer)
	case "echo":
		buf := make([]byte, chunkSize)
		var n int64
		lastRead := time.Now()
		for c.nbytes == 0 || n < c.nbytes {
			c.setIdle(s)
			m, err := s.Read(buf)
			if m > 0 {
				lastRead = time.Now()
				atomic.AddInt64(&bytesIn, int64(m))
				if werr := writeAll(s, buf[:m]); werr != nil {
					die(1, "echo: write: %v", werr)
				}
				n += int64(m)
			}
			if err != nil {
				// kcp-go's deadline error is a plain "timeout" error, not a
				// net.Error: recognise the idle limit by the clock.
				if c.idle > 0 && time.Since(lastRead) >= secs(c.idle) {
					break
				}
				die(1, "echo: read after %d bytes: %v", n, err)
			}
		}
		emit("ECHO %d", n)
	}
	markWorkEnd()
	waitSent(s, secs(c.linger))
	s.Close()
}

// ---------------------------------------------------------------- dial

func dial(c *config) {
	switch c.role {
	case "send", "recv", "echo", "rtt":
	default:
		die(2, "usage: dial -role must be send|recv|echo|rtt, not %q", c.role)
	}
	block, err := c.blockCrypt()
	if err != nil {
		die(1, "%v", err)
	}
	markWorkBegin()
	start := time.Now()
	s, err := kcp.DialWithOptions(c.addr, block, c.ds, c.ps)
	if err != nil {
		die(1, "dial: %v", err)
	}
	c.apply(s, true)

	switch c.role {
	case "send":
		sent, err := writeStream(s, newStream(c.seed), c.nbytes)
		if err != nil {
			die(1, "send: write: %v", err)
		}
		peer := make([]byte, sha256.Size)
		if err := readFull(c, s, peer); err != nil {
			die(1, "send: read digest: %v", err)
		}
		el := time.Since(start).Seconds()
		emit("SEND %d %x %x %.6f %.3f", c.nbytes, sent, peer, el, float64(c.nbytes)/el/1e6)
	case "recv":
		if err := writeAll(s, []byte{1}); err != nil {
			die(1, "recv: write opening byte: %v", err)
		}
		sum, err := readHash(c, s, c.nbytes)
		if err != nil {
			die(1, "recv: %v", err)
		}
		el := time.Since(start).Seconds()
		if err := writeAll(s, sum); err != nil {
			die(1, "recv: write digest: %v", err)
		}
		emit("RECV %d %x %.6f", c.nbytes, sum, el)
	case "echo":
		var sent []byte
		werr := make(chan error, 1)
		go func() {
			var err error
			sent, err = writeStream(s, newStream(c.seed), c.nbytes)
			werr <- err
		}()
		got, err := readHash(c, s, c.nbytes)
		if err != nil {
			die(1, "echo: %v", err)
		}
		if err := <-werr; err != nil {
			die(1, "echo: write: %v", err)
		}
		emit("ECHO %d %x %x %.6f", c.nbytes, sent, got, time.Since(start).Seconds())
	case "rtt":
		if c.count == 0 || c.size == 0 {
			die(2, "usage: rtt needs -count and -size > 0")
		}
		st := newStream(c.seed)
		msg := make([]byte, c.size)
		back := make([]byte, c.size)
		samples := make([]float64, 0, c.count)
		for i := 0; i < c.count; i++ {
			for j := 0; j < c.size; {
				j += copy(msg[j:], st.next(c.size-j))
			}
			t0 := time.Now()
			if err := writeAll(s, msg); err != nil {
				die(1, "rtt: write: %v", err)
			}
			if err := readFull(c, s, back); err != nil {
				die(1, "rtt: read round %d: %v", i, err)
			}
			samples = append(samples, float64(time.Since(t0).Nanoseconds())/1e3)
			if string(back) != string(msg) {
				die(1, "rtt: round %d echoed different bytes", i)
			}
		}
		sort.Float64s(samples)
		emit("RTT %d %.1f %.1f", c.count, pct(samples, 50), pct(samples, 99))
	}
	markWorkEnd()
	waitSent(s, secs(c.linger))
	s.Close()
}

// pct: nearest-rank percentile of sorted samples.
func pct(sorted []float64, p float64) float64 {
	rank := int(p/100*float64(len(sorted)) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// ---------------------------------------------------------------- main

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  peer listen -addr 127.0.0.1:0 -role sink|source|echo -bytes N -sessions K
              [-tellwnd=true -acceptdelay S] [common flags]
  peer dial -addr host:port -role send|recv|echo|rtt -bytes N [-count M -size B] [common flags]
common flags: -mode -nodelay -interval -resend -nc -sndwnd -rcvwnd -mtu -stream
  -acknodelay -writedelay -ds -ps -crypt -key -pass -lockcrypt -sockbuf -timeout
  -linger -idle -seed
("peer listen -h" lists them with defaults)`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		die(2, "usage: missing subcommand")
	}
	cmd := os.Args[1]
	if cmd != "listen" && cmd != "dial" {
		usage()
		die(2, "usage: unknown subcommand %q", cmd)
	}
	c := parseFlags(cmd, os.Args[2:])
	var timer *time.Timer
	if c.timeout > 0 {
		timer = time.AfterFunc(secs(c.timeout), func() {
			emit("TIMEOUT")
			emit("STAT bytes_in=%d bytes_out=%d sessions_done=%d",
				atomic.LoadInt64(&bytesIn), atomic.LoadInt64(&bytesOut), atomic.LoadInt64(&sessionsDone))
			cpuLine()
			snmpLine()
			os.Exit(3)
		})
	}
	if cmd == "listen" {
		listen(c)
	} else {
		dial(c)
	}
	if timer != nil && !timer.Stop() {
		select {} // the deadline fired first: its handler reports and exits
	}
	workLine()
	cpuLine()
	snmpLine()
	os.Exit(0)
}
