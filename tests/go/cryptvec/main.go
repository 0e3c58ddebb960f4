// cryptvec prints, as JSON, packets sealed by kcp-go 5.6.1's own BlockCrypts
// (built the way sess.go and kcptun build them) from fixed nonces, plus raw
// block encryptions by the Go ciphers gkcp reimplements.  tests/test_crypt.py
// checks gkcp against them byte for byte.
package main

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"math/rand"
	"os"

	"github.com/tjfoc/gmsm/sm4"
	kcp "github.com/xtaci/kcp-go"
	"golang.org/x/crypto/pbkdf2"
	"golang.org/x/crypto/tea"
	"golang.org/x/crypto/twofish"
	"golang.org/x/crypto/xtea"
)

type packet struct {
	Name   string  `json:"name"`
	Key    string  `json:"key"`
	Kcptun *string `json:"kcptun"`
	Nonce  string  `json:"nonce"`
	Plain  string  `json:"plain"`
	Sealed string  `json:"sealed"`
}

type block struct {
	Cipher string `json:"cipher"`
	Key    string `json:"key"`
	In     string `json:"in"`
	Out    string `json:"out"`
}

type output struct {
	KcptunKey string   `json:"kcptun_key"`
	Packets   []packet `json:"packets"`
	Blocks    []block  `json:"blocks"`
}

var rng = rand.New(rand.NewSource(20210922))

func random(n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

func construct(name string, key []byte) kcp.BlockCrypt {
	var bc kcp.BlockCrypt
	var err error
	switch name {
	case "none":
		bc, err = kcp.NewNoneBlockCrypt(key)
	case "xor":
		bc, err = kcp.NewSimpleXORBlockCrypt(key)
	case "aes", "aes-128", "aes-192":
		bc, err = kcp.NewAESBlockCrypt(key)
	case "salsa20":
		bc, err = kcp.NewSalsa20BlockCrypt(key)
	case "blowfish":
		bc, err = kcp.NewBlowfishBlockCrypt(key)
	case "cast5":
		bc, err = kcp.NewCast5BlockCrypt(key)
	case "3des":
		bc, err = kcp.NewTripleDESBlockCrypt(key)
	case "tea":
		bc, err = kcp.NewTEABlockCrypt(key)
	case "xtea":
		bc, err = kcp.NewXTEABlockCrypt(key)
	case "twofish":
		bc, err = kcp.NewTwofishBlockCrypt(key)
	case "sm4":
		bc, err = kcp.NewSM4BlockCrypt(key)
	}
	if err != nil || bc == nil {
		panic(name)
	}
	return bc
}

// seal frames and encrypts like sess.go's output path.
func seal(bc kcp.BlockCrypt, nonce, plain []byte) []byte {
	buf := append([]byte(nil), plain...)
	copy(buf[:16], nonce)
	binary.LittleEndian.PutUint32(buf[16:20], crc32.ChecksumIEEE(buf[20:]))
	bc.Encrypt(buf, buf)
	return buf
}

func addPackets(out *output, name string, key []byte, pass *string) {
	bc := construct(name, key)
	for _, n := range []int{20, 21, 27, 28, 36, 100, 1400, 1500} {
		plain := random(n)
		nonce := random(16)
		out.Packets = append(out.Packets, packet{
			Name: name, Key: hex.EncodeToString(key), Kcptun: pass,
			Nonce: hex.EncodeToString(nonce), Plain: hex.EncodeToString(plain),
			Sealed: hex.EncodeToString(seal(bc, nonce, plain)),
		})
	}
}

func main() {
	var out output
	pass := "it's a secrect"
	full := pbkdf2.Key([]byte(pass), []byte("kcp-go"), 4096, 32, sha1.New)
	out.KcptunKey = hex.EncodeToString(full)

	// kcptun's key cut per -crypt name (server/main.go).
	cut := map[string]int{"aes": 32, "aes-128": 16, "aes-192": 24, "twofish": 32, "sm4": 16,
		"blowfish": 32, "cast5": 16, "3des": 24, "tea": 16, "xtea": 16, "salsa20": 32,
		"xor": 32, "none": 32}
	for _, name := range []string{"none", "xor", "aes", "aes-128", "aes-192", "salsa20", "blowfish",
		"cast5", "3des", "tea", "xtea", "twofish", "sm4"} {
		addPackets(&out, name, full[:cut[name]], &pass)
	}
	// Other key lengths the constructors accept.
	for _, c := range []struct {
		name string
		n    int
	}{{"aes", 16}, {"aes", 24}, {"twofish", 16}, {"twofish", 24}, {"blowfish", 1},
		{"blowfish", 2}, {"blowfish", 3}, {"blowfish", 4}, {"blowfish", 56},
		{"salsa20", 10}, {"salsa20", 40}, {"xor", 5}} {
		addPackets(&out, c.name, random(c.n), nil)
	}

	for i := 0; i < 8; i++ {
		key, in := random(16), random(8)
		t, _ := tea.NewCipherWithRounds(key, 16)
		o := make([]byte, 8)
		t.Encrypt(o, in)
		out.Blocks = append(out.Blocks, block{"tea16", hex.EncodeToString(key), hex.EncodeToString(in), hex.EncodeToString(o)})
		x, _ := xtea.NewCipher(key)
		x.Encrypt(o, in)
		out.Blocks = append(out.Blocks, block{"xtea", hex.EncodeToString(key), hex.EncodeToString(in), hex.EncodeToString(o)})
		in16 := random(16)
		o16 := make([]byte, 16)
		s, _ := sm4.NewCipher(key)
		s.Encrypt(o16, in16)
		out.Blocks = append(out.Blocks, block{"sm4", hex.EncodeToString(key), hex.EncodeToString(in16), hex.EncodeToString(o16)})
		for _, kl := range []int{16, 24, 32} {
			k := random(kl)
			tf, _ := twofish.NewCipher(k)
			tf.Encrypt(o16, in16)
			out.Blocks = append(out.Blocks, block{"twofish", hex.EncodeToString(k), hex.EncodeToString(in16), hex.EncodeToString(o16)})
		}
	}

	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(&out); err != nil {
		panic(err)
	}
}
