// kcpvec drives kcp-go 5.6.1's bare ARQ state machine (kcp.NewKCP) through a
// script read as JSON from stdin and prints, as JSON on stdout, what each
// step returned and the packets it made kcp-go output (hex).  The gkcp test
// suite replays the same script on its C core and compares the packets.
//
// Script: {"conv": N, "steps": [{"op": ..., ...}, ...]} with ops
//   nodelay {args: [nodelay, interval, resend, nc]}   wndsize {args: [snd, rcv]}
//   mtu {n}  reserve {n}  stream {n}  send {data}  recv {n}
//   input {data, regular, ack_nodelay}  flush {ack_only}
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"time"
	"unsafe"

	kcp "github.com/xtaci/kcp-go"
)

// flush is kcp-go's only way to run a flush on demand (Update schedules on
// the wall clock), so reach the unexported method directly.
//
//go:linkname kcpFlush github.com/xtaci/kcp-go.(*KCP).flush
func kcpFlush(k *kcp.KCP, ackOnly bool) uint32

type step struct {
	Op         string `json:"op"`
	Args       []int  `json:"args"`
	N          int    `json:"n"`
	Data       string `json:"data"`
	Regular    bool   `json:"regular"`
	AckNoDelay bool   `json:"ack_nodelay"`
	AckOnly    bool   `json:"ack_only"`
}

type result struct {
	Ret     int      `json:"ret"`
	Data    string   `json:"data"`
	Packets []string `json:"packets"`
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kcpvec:", err)
	os.Exit(1)
}

func main() {
	var script struct {
		Conv  uint32 `json:"conv"`
		Steps []step `json:"steps"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&script); err != nil {
		fail(err)
	}
	// kcp-go stamps PUSH segments with milliseconds since it was loaded;
	// start that clock well above the "old" ts values the script uses.
	time.Sleep(30 * time.Millisecond)

	var packets []string
	k := kcp.NewKCP(script.Conv, func(buf []byte, size int) {
		packets = append(packets, hex.EncodeToString(buf[:size]))
	})

	results := make([]result, 0, len(script.Steps))
	for _, s := range script.Steps {
		packets = []string{}
		r := result{}
		data, err := hex.DecodeString(s.Data)
		if err != nil {
			fail(err)
		}
		switch s.Op {
		case "nodelay":
			r.Ret = k.NoDelay(s.Args[0], s.Args[1], s.Args[2], s.Args[3])
		case "wndsize":
			r.Ret = k.WndSize(s.Args[0], s.Args[1])
		case "mtu":
			r.Ret = k.SetMtu(s.N)
		case "reserve":
			if !k.ReserveBytes(s.N) {
				r.Ret = -1
			}
		case "stream":
			f := reflect.ValueOf(k).Elem().FieldByName("stream")
			*(*int32)(unsafe.Pointer(f.UnsafeAddr())) = int32(s.N)
		case "send":
			r.Ret = k.Send(data)
		case "recv":
			buf := make([]byte, s.N)
			r.Ret = k.Recv(buf)
			if r.Ret > 0 {
				r.Data = hex.EncodeToString(buf[:r.Ret])
			}
		case "input":
			r.Ret = k.Input(data, s.Regular, s.AckNoDelay)
		case "flush":
			kcpFlush(k, s.AckOnly)
		default:
			fail(fmt.Errorf("unknown op %q", s.Op))
		}
		r.Packets = packets
		results = append(results, r)
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fail(err)
	}
}
