// smuxpeer: Go smux 1.5.16 over kcp-go 5.6.1 (or TCP), the reference peer of
// gkcp's smux interop tests (tests/test_interop_smux.py, tests/smuxpeer.py).
//
//	smuxpeer listen -addr 127.0.0.1:0 [settings]   accept one connection, serve -streams streams
//	smuxpeer dial -addr HOST:PORT -ops UDEF -bytes N [settings]
//	                                              open -streams streams at once; stream i
//	                                              runs op i mod len(-ops) with payload seed i+1
//	smuxpeer capture -smuxver V                   print the bytes smux writes for a fixed
//	                                              exchange over an in-memory pipe
//
// Every stream starts with the opener's request |op u8|n u64le|seed u64le|;
// payload bytes are the stream of tests/gopeer.py (SHAKE128 chunks).  The ops,
// as the opener sees them:
//
//	U  send n payload bytes; read the 32-byte SHA-256 of them; then EOF
//	D  read n payload bytes, then EOF
//	E  send n payload bytes and read them back, then EOF
//	F  send n payload bytes, then Close (the acceptor reads until EOF)
//
// The acceptor closes its stream (FIN) when its part is done; the opener
// closes after EOF (F: after sending).  Output, one line per event:
//
//	READY <ip:port>                        (listen)
//	STREAM <id> <op> <n> <sha256-hex>      (each stream: the payload it carried)
//	DONE                                   (all streams finished)
//	C2S <hex> / S2C <hex>                  (capture)
//	ERROR <message>                        (exit 1)  TIMEOUT (exit 3)
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"sync"
	"time"

	kcp "github.com/xtaci/kcp-go"
	"github.com/xtaci/smux"
	"golang.org/x/crypto/sha3"
)

const chunkSize = 65536

var outMu sync.Mutex

func emit(format string, a ...interface{}) {
	line := fmt.Sprintf(format, a...) + "\n"
	outMu.Lock()
	os.Stdout.WriteString(line)
	outMu.Unlock()
}

func fail(err error) {
	emit("ERROR %v", err)
	os.Exit(1)
}

// ---------------------------------------------------------------- payload

// payload writes or checks the deterministic stream of one seed.
type payload struct {
	seed  uint64
	chunk uint64
	buf   []byte
}

func (p *payload) next() []byte {
	var hdr [25]byte
	copy(hdr[:], "gkcp-peer")
	binary.LittleEndian.PutUint64(hdr[9:], p.seed)
	binary.LittleEndian.PutUint64(hdr[17:], p.chunk)
	p.chunk++
	out := make([]byte, chunkSize)
	sha3.ShakeSum128(out, hdr[:])
	return out
}

// write sends n payload bytes to w, hashing them into h.
func (p *payload) write(w io.Writer, n int64, h hash.Hash) error {
	for n > 0 {
		b := p.next()
		if int64(len(b)) > n {
			b = b[:n]
		}
		h.Write(b)
		if _, err := w.Write(b); err != nil {
			return err
		}
		n -= int64(len(b))
	}
	return nil
}

// readCheck reads exactly n bytes from r and compares them to the payload.
func (p *payload) readCheck(r io.Reader, n int64, h hash.Hash) error {
	got := make([]byte, chunkSize)
	for n > 0 {
		want := p.next()
		if int64(len(want)) > n {
			want = want[:n]
		}
		if _, err := io.ReadFull(r, got[:len(want)]); err != nil {
			return err
		}
		if !bytes.Equal(got[:len(want)], want) {
			return errors.New("payload bytes differ")
		}
		h.Write(want)
		n -= int64(len(want))
	}
	return nil
}

func expectEOF(r io.Reader) error {
	var one [1]byte
	n, err := r.Read(one[:])
	if n != 0 || err != io.EOF {
		return fmt.Errorf("expected EOF, got %d bytes, %v", n, err)
	}
	return nil
}

// ---------------------------------------------------------------- settings

type settings struct {
	addr, transport, ops string
	streams              int
	nbytes               int64
	timeout, linger      time.Duration
	smuxver, smuxbuf     int
	streambuf, framesize int
	keepalive, deadAfter int
	sndwnd, rcvwnd       int
}

func parse(args []string) settings {
	var s settings
	fs := flag.NewFlagSet("smuxpeer", flag.ExitOnError)
	fs.StringVar(&s.addr, "addr", "127.0.0.1:0", "listen or dial address")
	fs.StringVar(&s.transport, "transport", "kcp", "kcp or tcp")
	fs.StringVar(&s.ops, "ops", "U", "dial: the streams' ops, in turn (U, D, E, F)")
	fs.IntVar(&s.streams, "streams", 1, "streams to open (dial) or serve (listen)")
	fs.Int64Var(&s.nbytes, "bytes", 1<<20, "payload bytes per stream (dial)")
	fs.DurationVar(&s.timeout, "timeout", 60*time.Second, "give up after this long (TIMEOUT, exit 3)")
	fs.DurationVar(&s.linger, "linger", time.Second, "stay this long after DONE, so the last frames arrive")
	fs.IntVar(&s.smuxver, "smuxver", 1, "smux version")
	fs.IntVar(&s.smuxbuf, "smuxbuf", 4194304, "smux MaxReceiveBuffer")
	fs.IntVar(&s.streambuf, "streambuf", 65536, "smux MaxStreamBuffer")
	fs.IntVar(&s.framesize, "framesize", 32768, "smux MaxFrameSize")
	fs.IntVar(&s.keepalive, "keepalive", 10, "smux KeepAliveInterval, seconds")
	fs.IntVar(&s.deadAfter, "keepalivetimeout", 30, "smux KeepAliveTimeout, seconds")
	fs.IntVar(&s.sndwnd, "sndwnd", 1024, "KCP send window")
	fs.IntVar(&s.rcvwnd, "rcvwnd", 1024, "KCP receive window")
	fs.Parse(args)
	return s
}

func (s settings) smuxConfig() *smux.Config {
	c := smux.DefaultConfig()
	c.Version = s.smuxver
	c.MaxReceiveBuffer = s.smuxbuf
	c.MaxStreamBuffer = s.streambuf
	c.MaxFrameSize = s.framesize
	c.KeepAliveInterval = time.Duration(s.keepalive) * time.Second
	c.KeepAliveTimeout = time.Duration(s.deadAfter) * time.Second
	if err := smux.VerifyConfig(c); err != nil {
		fail(err)
	}
	return c
}

// tune gives a KCP session kcptun's fast settings in stream mode.
func (s settings) tune(conn *kcp.UDPSession) {
	conn.SetStreamMode(true)
	conn.SetWriteDelay(false)
	conn.SetNoDelay(1, 10, 2, 1)
	conn.SetWindowSize(s.sndwnd, s.rcvwnd)
	conn.SetMtu(1400)
}

func (s settings) listen() (net.Listener, error) {
	if s.transport == "tcp" {
		return net.Listen("tcp", s.addr)
	}
	return kcp.ListenWithOptions(s.addr, nil, 0, 0)
}

func (s settings) accept(l net.Listener) (net.Conn, error) {
	if kl, ok := l.(*kcp.Listener); ok {
		conn, err := kl.AcceptKCP()
		if err == nil {
			s.tune(conn)
		}
		return conn, err
	}
	return l.Accept()
}

func (s settings) dial() (net.Conn, error) {
	if s.transport == "tcp" {
		return net.Dial("tcp", s.addr)
	}
	conn, err := kcp.DialWithOptions(s.addr, nil, 0, 0)
	if err == nil {
		s.tune(conn)
	}
	return conn, err
}

// ---------------------------------------------------------------- streams

// serve runs the acceptor's part of one stream.
func serve(st *smux.Stream) error {
	var req [17]byte
	if _, err := io.ReadFull(st, req[:]); err != nil {
		return fmt.Errorf("stream %d request: %v", st.ID(), err)
	}
	op, n := req[0], int64(binary.LittleEndian.Uint64(req[1:]))
	p := &payload{seed: binary.LittleEndian.Uint64(req[9:])}
	h := sha256.New()
	var err error
	switch op {
	case 'U':
		if err = p.readCheck(st, n, h); err == nil {
			_, err = st.Write(h.Sum(nil))
		}
	case 'D':
		err = p.write(st, n, h)
	case 'E':
		buf := make([]byte, chunkSize)
		for left := n; left > 0 && err == nil; {
			k := int64(len(buf))
			if k > left {
				k = left
			}
			if _, err = io.ReadFull(st, buf[:k]); err == nil {
				h.Write(buf[:k])
				_, err = st.Write(buf[:k])
				left -= k
			}
		}
	case 'F':
		if err = p.readCheck(st, n, h); err == nil {
			err = expectEOF(st)
		}
	default:
		err = fmt.Errorf("unknown op %q", op)
	}
	if err != nil {
		return fmt.Errorf("stream %d op %c: %v", st.ID(), op, err)
	}
	emit("STREAM %d %c %d %s", st.ID(), op, n, hex.EncodeToString(h.Sum(nil)))
	return st.Close()
}

// open runs the opener's part of one stream.
func open(sess *smux.Session, op byte, n int64, seed uint64) error {
	st, err := sess.OpenStream()
	if err != nil {
		return err
	}
	var req [17]byte
	req[0] = op
	binary.LittleEndian.PutUint64(req[1:], uint64(n))
	binary.LittleEndian.PutUint64(req[9:], seed)
	if _, err = st.Write(req[:]); err != nil {
		return err
	}
	p := &payload{seed: seed}
	h := sha256.New()
	switch op {
	case 'U':
		if err = p.write(st, n, h); err == nil {
			digest := make([]byte, sha256.Size)
			if _, err = io.ReadFull(st, digest); err == nil && !bytes.Equal(digest, h.Sum(nil)) {
				err = errors.New("digest from the acceptor differs")
			}
		}
	case 'D':
		err = p.readCheck(st, n, h)
	case 'E':
		sendErr := make(chan error, 1)
		go func() { sendErr <- (&payload{seed: seed}).write(st, n, sha256.New()) }()
		err = p.readCheck(st, n, h)
		if e := <-sendErr; err == nil {
			err = e
		}
	case 'F':
		err = p.write(st, n, h)
	default:
		err = fmt.Errorf("unknown op %q", op)
	}
	if err == nil && op != 'F' {
		err = expectEOF(st)
	}
	if err != nil {
		return fmt.Errorf("stream %d op %c: %v", st.ID(), op, err)
	}
	emit("STREAM %d %c %d %s", st.ID(), op, n, hex.EncodeToString(h.Sum(nil)))
	return st.Close()
}

// ---------------------------------------------------------------- commands

func runListen(s settings) {
	l, err := s.listen()
	if err != nil {
		fail(err)
	}
	emit("READY %s", l.Addr())
	conn, err := s.accept(l)
	if err != nil {
		fail(err)
	}
	sess, err := smux.Server(conn, s.smuxConfig())
	if err != nil {
		fail(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < s.streams; i++ {
		st, err := sess.AcceptStream()
		if err != nil {
			fail(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(st); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	emit("DONE")
	time.Sleep(s.linger)
	sess.Close()
}

func runDial(s settings) {
	if s.ops == "" {
		fail(errors.New("-ops must name at least one op"))
	}
	conn, err := s.dial()
	if err != nil {
		fail(err)
	}
	sess, err := smux.Client(conn, s.smuxConfig())
	if err != nil {
		fail(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < s.streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := open(sess, s.ops[i%len(s.ops)], s.nbytes, uint64(i+1)); err != nil {
				fail(err)
			}
		}(i)
	}
	wg.Wait()
	emit("DONE")
	time.Sleep(s.linger)
	sess.Close()
}

// tap records what one side of a net.Pipe writes.
type tap struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (t *tap) Write(b []byte) (int, error) {
	t.mu.Lock()
	t.out.Write(b)
	t.mu.Unlock()
	return t.Conn.Write(b)
}

func (t *tap) hex() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return hex.EncodeToString(t.out.Bytes())
}

// runCapture: the client opens a stream, writes "hello", the server reads it
// (version 2: a UPD goes back), the server writes "hi" and closes, the client
// reads "hi" and EOF and closes.
func runCapture(s settings) {
	a, b := net.Pipe()
	clientSide, serverSide := &tap{Conn: a}, &tap{Conn: b}
	config := s.smuxConfig()
	config.KeepAliveDisabled = true
	client, err := smux.Client(clientSide, config)
	if err != nil {
		fail(err)
	}
	server, err := smux.Server(serverSide, config)
	if err != nil {
		fail(err)
	}
	cs, err := client.OpenStream()
	if err != nil {
		fail(err)
	}
	if _, err = cs.Write([]byte("hello")); err != nil {
		fail(err)
	}
	ss, err := server.AcceptStream()
	if err != nil {
		fail(err)
	}
	buf := make([]byte, 16)
	if _, err = io.ReadFull(ss, buf[:5]); err != nil {
		fail(err)
	}
	if _, err = ss.Write([]byte("hi")); err != nil {
		fail(err)
	}
	ss.Close()
	if _, err = io.ReadFull(cs, buf[:2]); err != nil {
		fail(err)
	}
	if err = expectEOF(cs); err != nil {
		fail(err)
	}
	// net.Pipe writes return once the other side read them, and smux's
	// calls return once their frames were written: the capture is complete.
	cs.Close()
	emit("C2S %s", clientSide.hex())
	emit("S2C %s", serverSide.hex())
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: smuxpeer listen|dial|capture [flags]")
		os.Exit(2)
	}
	s := parse(os.Args[2:])
	go func() {
		time.Sleep(s.timeout)
		emit("TIMEOUT")
		os.Exit(3)
	}()
	switch os.Args[1] {
	case "listen":
		runListen(s)
	case "dial":
		runDial(s)
	case "capture":
		runCapture(s)
	default:
		fmt.Fprintln(os.Stderr, "usage: smuxpeer listen|dial|capture [flags]")
		os.Exit(2)
	}
}
