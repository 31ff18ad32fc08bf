package repo

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/argon2"
)

// Object envelopes. Every object other than a pack blob (config, key, index,
// snapshot, lock, pack header) is stored as one tag byte and a body:
//
//	tagPlain:  payload || BLAKE3-256(payload)
//	tagSealed: nonce(12) || AES-256-GCM(payload) with its 16-byte tag
//
// The tag lets a reader refuse an object whose kind does not match the
// repository (a plain object planted in an encrypted repository).
const (
	tagPlain  = 0x01
	tagSealed = 0x02

	checksumLen = 32
	nonceLen    = 12
	gcmTagLen   = 16
	keyLen      = 32
)

// sealer protects objects and blobs: AES-256-GCM under the master key when
// the repository is encrypted, a BLAKE3 checksum otherwise.
type sealer struct {
	aead cipher.AEAD // nil when unencrypted
}

func newSealer(masterKey []byte) (sealer, error) {
	if masterKey == nil {
		return sealer{}, nil
	}
	a, err := newGCM(masterKey)
	if err != nil {
		return sealer{}, err
	}
	return sealer{aead: a}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("create AES cipher: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("create AES-GCM: %w", err)
	}
	return a, nil
}

// sealObject wraps payload in an envelope.
func (s sealer) sealObject(payload []byte) ([]byte, error) {
	if s.aead == nil {
		out := make([]byte, 0, 1+len(payload)+checksumLen)
		out = append(out, tagPlain)
		out = append(out, payload...)
		sum := blake3.Sum256(payload)
		return append(out, sum[:]...), nil
	}
	out := make([]byte, 1, 1+nonceLen+len(payload)+gcmTagLen)
	out[0] = tagSealed
	b, err := s.seal(out, payload)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// openObject checks and unwraps an envelope.
func (s sealer) openObject(obj []byte) ([]byte, error) {
	if len(obj) < 1 {
		return nil, errors.New("empty object")
	}
	switch obj[0] {
	case tagPlain:
		if s.aead != nil {
			return nil, errors.New("unencrypted object in an encrypted repository")
		}
		return openPlain(obj)
	case tagSealed:
		if s.aead == nil {
			return nil, errors.New("encrypted object in an unencrypted repository")
		}
		return s.open(obj[1:])
	default:
		return nil, fmt.Errorf("unknown object tag 0x%02x", obj[0])
	}
}

// openPlain checks a plain envelope's checksum; config and key objects are
// always plain because they are read before any key is known.
func openPlain(obj []byte) ([]byte, error) {
	if len(obj) < 1+checksumLen || obj[0] != tagPlain {
		return nil, errors.New("not a checksummed object")
	}
	payload := obj[1 : len(obj)-checksumLen]
	sum := blake3.Sum256(payload)
	if string(sum[:]) != string(obj[len(obj)-checksumLen:]) {
		return nil, errors.New("checksum mismatch")
	}
	return payload, nil
}

// seal appends nonce||ciphertext to dst.
func (s sealer) seal(dst, plain []byte) ([]byte, error) {
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("read random nonce: %w", err)
	}
	dst = append(dst, nonce[:]...)
	return s.aead.Seal(dst, nonce[:], plain, nil), nil
}

// open decrypts nonce||ciphertext.
func (s sealer) open(b []byte) ([]byte, error) {
	if len(b) < nonceLen+gcmTagLen {
		return nil, errors.New("ciphertext too short")
	}
	p, err := s.aead.Open(nil, b[:nonceLen], b[nonceLen:], nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return p, nil
}

// kdfParams are the argon2id parameters stored in each key object.
type kdfParams struct {
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memory_kib"`
	Threads uint8  `json:"threads"`
}

// defaultKDF follows RFC 9106's second recommended option (64 MiB, t=3), which
// takes a fraction of a second on the appliance's small machines.
var defaultKDF = kdfParams{Time: 3, Memory: 64 * 1024, Threads: 4}

// maxKDFMemory bounds what a key object may ask for, so a hostile key file
// cannot make Open allocate without limit.
const maxKDFMemory = 4 << 20 // KiB: 4 GiB

func deriveKEK(password, salt []byte, p kdfParams) ([]byte, error) {
	if err := checkKDFParams(p); err != nil {
		return nil, err
	}
	return argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, keyLen), nil
}

// checkKDFParams bounds what a hostile key object can make a reader spend.
func checkKDFParams(p kdfParams) error {
	if p.Time < 1 || p.Time > 100 || p.Memory < 8 || p.Memory > maxKDFMemory || p.Threads < 1 {
		return fmt.Errorf("argon2id parameters out of range: time=%d memory=%dKiB threads=%d", p.Time, p.Memory, p.Threads)
	}
	return nil
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("read random bytes: %w", err)
	}
	return b, nil
}
