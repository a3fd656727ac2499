package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Params are Argon2id cost parameters.
type Params struct {
	Memory      uint32 // KiB
	Iterations  uint32
	Parallelism uint8
	SaltLen     uint32 // bytes
	KeyLen      uint32 // bytes
}

// DefaultParams follow the OWASP Password Storage Cheat Sheet's first
// Argon2id option (m=19 MiB, t=2, p=1): strong enough for production while
// keeping one hash in the tens of milliseconds, which matters because the
// login endpoint pays for it on every attempt.
var DefaultParams = Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// TestParams are deliberately weak so that tests which create many users stay
// fast. Never use them in production.
var TestParams = Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// ErrMalformedHash is returned by [Hasher.Verify] when the stored hash is not
// an Argon2id PHC string this package can verify. It signals corrupt data,
// not a wrong password.
var ErrMalformedHash = errors.New("auth: malformed argon2id hash")

// Limits on parameters read back from a stored hash. A corrupted or planted
// row must not be able to make one verification allocate gigabytes or spin
// for minutes, because the semaphore counts hashes, not bytes.
const (
	minSaltLen      = 8 // RFC 9106 minimum
	minKeyLen       = 16
	maxKeyLen       = 1024
	maxMemoryKiB    = 1 << 20 // 1 GiB
	maxIterations   = 64
	phcVersionField = "v=19"
)

var b64 = base64.RawStdEncoding.Strict()

// Hasher hashes and verifies passwords with Argon2id. It is safe for
// concurrent use; at most the configured number of hashes run at a time,
// so peak memory is bounded by roughly maxConcurrent × Params.Memory.
type Hasher struct {
	params Params
	sem    chan struct{}
	dummy  func() string

	// kdf is argon2.IDKey; tests replace it to observe concurrency.
	kdf func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte
}

// NewHasher returns a Hasher that hashes new passwords with p and runs at most
// maxConcurrent hashes at once; maxConcurrent <= 0 means runtime.GOMAXPROCS(0),
// since Argon2 is CPU-bound and more parallel hashes than CPUs only add memory.
//
// NewHasher panics if p is unusable (zero iterations or parallelism, memory
// below 8×parallelism KiB, salt shorter than 8 bytes or key shorter than 16):
// that is a configuration error which must stop startup.
func NewHasher(p Params, maxConcurrent int) *Hasher {
	if err := p.check(); err != nil {
		panic("auth: NewHasher: " + err.Error())
	}
	if maxConcurrent <= 0 {
		maxConcurrent = runtime.GOMAXPROCS(0)
	}
	h := &Hasher{
		params: p,
		sem:    make(chan struct{}, maxConcurrent),
		kdf:    argon2.IDKey,
	}
	// The dummy hash needs only the right parameters and shapes: Verify's
	// cost is the derivation from the candidate password, not the stored key,
	// so random salt and key suffice and building it costs no Argon2 run.
	h.dummy = sync.OnceValue(func() string {
		salt := make([]byte, p.SaltLen)
		key := make([]byte, p.KeyLen)
		// crypto/rand.Read never fails (it aborts the process instead).
		_, _ = rand.Read(salt)
		_, _ = rand.Read(key)
		return encodePHC(p, salt, key)
	})
	return h
}

// Params returns the parameters used for new hashes.
func (h *Hasher) Params() Params { return h.params }

// Hash returns the PHC string of password under a fresh random salt. It waits
// for a free hashing slot and returns ctx.Err() if ctx ends first.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: read salt: %w", err)
	}
	key, err := h.derive(ctx, []byte(password), salt, h.params, h.params.KeyLen)
	if err != nil {
		return "", err
	}
	return encodePHC(h.params, salt, key), nil
}

// Verify reports whether password matches the PHC string phc. The cost
// parameters come from phc itself, so hashes made with older parameters keep
// verifying (see [Hasher.NeedsRehash]). A wrong password is (false, nil); a
// malformed phc is (false, error wrapping [ErrMalformedHash]); if ctx ends
// while waiting for a hashing slot the error is ctx.Err().
func (h *Hasher) Verify(ctx context.Context, password, phc string) (bool, error) {
	d, err := decodePHC(phc)
	if err != nil {
		return false, err
	}
	key, err := h.derive(ctx, []byte(password), d.salt, d.params, uint32(len(d.key)))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(key, d.key) == 1, nil
}

// VerifyDummy costs as much as one Verify against a hash made with the
// Hasher's parameters, and always fails. Call it when no account matches the
// submitted email so that response time does not reveal which emails are
// registered.
func (h *Hasher) VerifyDummy(ctx context.Context, password string) {
	_, _ = h.Verify(ctx, password, h.dummy())
}

// NeedsRehash reports whether phc was made with parameters other than the
// Hasher's (or cannot be parsed), so the caller can re-hash the password after
// a successful login and migrate stored hashes gradually.
func (h *Hasher) NeedsRehash(phc string) bool {
	d, err := decodePHC(phc)
	if err != nil {
		return true
	}
	return d.params != h.params
}

// derive runs one Argon2id derivation inside a semaphore slot.
func (h *Hasher) derive(ctx context.Context, password, salt []byte, p Params, keyLen uint32) ([]byte, error) {
	// Checked first because select picks randomly among ready cases: a
	// request that is already gone should never start a hash.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-h.sem }()
	return h.kdf(password, salt, p.Iterations, p.Memory, p.Parallelism, keyLen), nil
}

func (p Params) check() error {
	switch {
	case p.Iterations < 1:
		return errors.New("iterations must be at least 1")
	case p.Parallelism < 1:
		return errors.New("parallelism must be at least 1")
	case p.Memory < 8*uint32(p.Parallelism):
		return errors.New("memory must be at least 8 KiB per lane")
	case p.SaltLen < minSaltLen:
		return fmt.Errorf("salt must be at least %d bytes", minSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("key length must be between %d and %d bytes", minKeyLen, maxKeyLen)
	}
	return nil
}

func encodePHC(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Iterations, p.Parallelism,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

type decodedPHC struct {
	params    Params
	salt, key []byte
}

func decodePHC(s string) (decodedPHC, error) {
	var d decodedPHC
	// "$argon2id$v=19$m=..,t=..,p=..$salt$key" splits into six fields, the
	// first empty.
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return d, fmt.Errorf("%w: not an argon2id PHC string", ErrMalformedHash)
	}
	// x/crypto implements only version 0x13; an older-version hash would
	// verify as a mismatch, which is worse than an honest error.
	if f[2] != phcVersionField {
		return d, fmt.Errorf("%w: unsupported version %q", ErrMalformedHash, f[2])
	}
	m, t, p, err := parseCost(f[3])
	if err != nil {
		return d, err
	}
	if d.salt, err = b64.DecodeString(f[4]); err != nil {
		return d, fmt.Errorf("%w: salt: %w", ErrMalformedHash, err)
	}
	if d.key, err = b64.DecodeString(f[5]); err != nil {
		return d, fmt.Errorf("%w: key: %w", ErrMalformedHash, err)
	}
	d.params = Params{
		Memory:      m,
		Iterations:  t,
		Parallelism: p,
		SaltLen:     uint32(len(d.salt)),
		KeyLen:      uint32(len(d.key)),
	}
	if err := d.params.check(); err != nil {
		return d, fmt.Errorf("%w: %w", ErrMalformedHash, err)
	}
	if m > maxMemoryKiB || t > maxIterations {
		return d, fmt.Errorf("%w: cost m=%d,t=%d exceeds the verification limit", ErrMalformedHash, m, t)
	}
	return d, nil
}

// parseCost parses "m=<KiB>,t=<iterations>,p=<parallelism>" in exactly that
// order, as every mainstream Argon2 library writes it.
func parseCost(s string) (m, t uint32, p uint8, err error) {
	kv := strings.Split(s, ",")
	if len(kv) != 3 {
		return 0, 0, 0, fmt.Errorf("%w: cost parameters %q", ErrMalformedHash, s)
	}
	var vals [3]uint64
	for i, name := range [3]string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(kv[i], name)
		bits := 32
		if i == 2 {
			bits = 8
		}
		n, perr := strconv.ParseUint(v, 10, bits)
		if !ok || perr != nil {
			return 0, 0, 0, fmt.Errorf("%w: cost parameters %q", ErrMalformedHash, s)
		}
		vals[i] = n
	}
	return uint32(vals[0]), uint32(vals[1]), uint8(vals[2]), nil
}
