// snappyframes: golang/snappy's framing format exactly as kcptun uses it
// (generic.CompStream: a buffered snappy.Writer flushed after every Write,
// and snappy.Reader), for gkcp's byte-exact tests.
//
//	snappyframes encode   stdin: records |u32le n|n bytes|, one Write+Flush
//	                      each; stdout: the framed stream
//	snappyframes decode   stdin: a framed stream; stdout: the decoded bytes;
//	                      a corrupt stream prints the error on stderr, exit 1
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/golang/snappy"
)

func encode(in io.Reader, out io.Writer) error {
	w := snappy.NewBufferedWriter(out)
	var size [4]byte
	for {
		if _, err := io.ReadFull(in, size[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		record := make([]byte, binary.LittleEndian.Uint32(size[:]))
		if _, err := io.ReadFull(in, record); err != nil {
			return err
		}
		if _, err := w.Write(record); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: snappyframes encode|decode")
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	var err error
	switch os.Args[1] {
	case "encode":
		err = encode(bufio.NewReader(os.Stdin), out)
	case "decode":
		_, err = io.Copy(out, snappy.NewReader(bufio.NewReader(os.Stdin)))
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
	if flushErr := out.Flush(); err == nil {
		err = flushErr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
