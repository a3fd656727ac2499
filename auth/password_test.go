package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"golang.org/x/crypto/argon2"
)

func TestHashVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	h := NewHasher(TestParams, 0)
	ctx := context.Background()

	phc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := h.Verify(ctx, "correct horse battery staple", phc)
	if err != nil || !ok {
		t.Fatalf("Verify(right password) = %v, %v; want true, nil", ok, err)
	}
	ok, err = h.Verify(ctx, "correct horse battery stapler", phc)
	if err != nil || ok {
		t.Fatalf("Verify(wrong password) = %v, %v; want false, nil", ok, err)
	}
	ok, err = h.Verify(ctx, "", phc)
	if err != nil || ok {
		t.Fatalf("Verify(empty password) = %v, %v; want false, nil", ok, err)
	}
}

func TestHashPHCFormat(t *testing.T) {
	t.Parallel()
	p := Params{Memory: 128, Iterations: 3, Parallelism: 2, SaltLen: 16, KeyLen: 32}
	phc, err := NewHasher(p, 1).Hash(context.Background(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	const head = "$argon2id$v=19$m=128,t=3,p=2$"
	if !strings.HasPrefix(phc, head) {
		t.Fatalf("PHC %q does not start with %q", phc, head)
	}
	f := strings.Split(phc, "$")
	if len(f) != 6 {
		t.Fatalf("PHC %q has %d fields, want 6", phc, len(f))
	}
	// Unpadded base64: 16 bytes -> 22 chars, 32 bytes -> 43 chars, and the
	// only '=' signs are the four in "v=", "m=", "t=", "p=".
	if len(f[4]) != 22 || len(f[5]) != 43 || strings.Count(phc, "=") != 4 {
		t.Fatalf("PHC %q: salt/key not unpadded base64 of 16/32 bytes", phc)
	}
	if DefaultParams != (Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}) {
		t.Fatalf("DefaultParams = %+v, want OWASP m=19456,t=2,p=1", DefaultParams)
	}
}

// A hash from an independent computation with the reference library and
// known salt must verify, so the encoding is interoperable, not just
// self-consistent.
func TestVerifyKnownHash(t *testing.T) {
	t.Parallel()
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("password"), salt, 2, 64, 1, 32)
	phc := fmt.Sprintf("$argon2id$v=19$m=64,t=2,p=1$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))

	ok, err := NewHasher(TestParams, 1).Verify(context.Background(), "password", phc)
	if err != nil || !ok {
		t.Fatalf("Verify = %v, %v; want true, nil", ok, err)
	}
}

func TestHashUsesFreshSalt(t *testing.T) {
	t.Parallel()
	h := NewHasher(TestParams, 0)
	a, err := h.Hash(context.Background(), "same")
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Hash(context.Background(), "same")
	if err != nil {
		t.Fatal(err)
	}
	if a == b || strings.Split(a, "$")[4] == strings.Split(b, "$")[4] {
		t.Fatalf("two hashes of the same password share a salt:\n%s\n%s", a, b)
	}
}

func TestVerifyOtherParams(t *testing.T) {
	t.Parallel()
	old := NewHasher(Params{Memory: 32, Iterations: 2, Parallelism: 1, SaltLen: 8, KeyLen: 16}, 1)
	phc, err := old.Hash(context.Background(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHasher(TestParams, 1)
	ok, err := h.Verify(context.Background(), "pw", phc)
	if err != nil || !ok {
		t.Fatalf("Verify(hash with other params) = %v, %v; want true, nil", ok, err)
	}
	if !h.NeedsRehash(phc) {
		t.Error("NeedsRehash(hash with other params) = false, want true")
	}
	same, err := h.Hash(context.Background(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	if h.NeedsRehash(same) {
		t.Error("NeedsRehash(hash with current params) = true, want false")
	}
	if !h.NeedsRehash("garbage") {
		t.Error("NeedsRehash(garbage) = false, want true")
	}
}

func TestVerifyMalformed(t *testing.T) {
	t.Parallel()
	h := NewHasher(TestParams, 1)
	good, err := h.Hash(context.Background(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(good, "$")
	salt, key := f[4], f[5]
	with := func(alg, ver, cost, s, k string) string {
		return strings.Join([]string{"", alg, ver, cost, s, k}, "$")
	}
	cases := map[string]string{
		"empty":              "",
		"garbage":            "not a hash",
		"bcrypt":             "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"argon2i":            with("argon2i", "v=19", "m=64,t=1,p=1", salt, key),
		"no version":         "$argon2id$m=64,t=1,p=1$" + salt + "$" + key,
		"version 16":         with("argon2id", "v=16", "m=64,t=1,p=1", salt, key),
		"extra field":        good + "$x",
		"leading text":       "x" + good,
		"cost order":         with("argon2id", "v=19", "t=1,m=64,p=1", salt, key),
		"cost missing p":     with("argon2id", "v=19", "m=64,t=1", salt, key),
		"cost not a number":  with("argon2id", "v=19", "m=64,t=x,p=1", salt, key),
		"cost negative":      with("argon2id", "v=19", "m=64,t=-1,p=1", salt, key),
		"t zero":             with("argon2id", "v=19", "m=64,t=0,p=1", salt, key),
		"p zero":             with("argon2id", "v=19", "m=64,t=1,p=0", salt, key),
		"p overflows uint8":  with("argon2id", "v=19", "m=4096,t=1,p=256", salt, key),
		"m below 8p":         with("argon2id", "v=19", "m=7,t=1,p=1", salt, key),
		"m above limit":      with("argon2id", "v=19", "m=4194304,t=1,p=1", salt, key),
		"t above limit":      with("argon2id", "v=19", "m=64,t=1000,p=1", salt, key),
		"salt not base64":    with("argon2id", "v=19", "m=64,t=1,p=1", "!!!!", key),
		"salt padded":        with("argon2id", "v=19", "m=64,t=1,p=1", salt+"==", key),
		"salt too short":     with("argon2id", "v=19", "m=64,t=1,p=1", "AAAA", key),
		"key not base64":     with("argon2id", "v=19", "m=64,t=1,p=1", salt, "@@@@"),
		"key empty":          with("argon2id", "v=19", "m=64,t=1,p=1", salt, ""),
		"key too short":      with("argon2id", "v=19", "m=64,t=1,p=1", salt, "AAAAAAAAAAA"),
		"non-canonical tail": with("argon2id", "v=19", "m=64,t=1,p=1", salt, key[:len(key)-1]+"B"),
	}
	for name, phc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ok, err := h.Verify(context.Background(), "pw", phc)
			if ok || !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("Verify(%q) = %v, %v; want false, ErrMalformedHash", phc, ok, err)
			}
		})
	}
}

func TestNewHasherRejectsBadParams(t *testing.T) {
	t.Parallel()
	for _, p := range []Params{
		{Memory: 64, Iterations: 0, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 64, Iterations: 1, Parallelism: 0, SaltLen: 16, KeyLen: 32},
		{Memory: 4, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 4, KeyLen: 32},
		{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 8},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewHasher(%+v) did not panic", p)
				}
			}()
			NewHasher(p, 1)
		}()
	}
}

func TestVerifyDummy(t *testing.T) {
	t.Parallel()
	h := NewHasher(TestParams, 1)
	var calls atomic.Int32
	var got []uint32
	var mu sync.Mutex
	h.kdf = func(pw, salt []byte, tm, mem uint32, th uint8, kl uint32) []byte {
		calls.Add(1)
		mu.Lock()
		got = []uint32{mem, tm, uint32(th), uint32(len(salt)), kl}
		mu.Unlock()
		return argon2.IDKey(pw, salt, tm, mem, th, kl)
	}
	h.VerifyDummy(context.Background(), "pw")
	h.VerifyDummy(context.Background(), "pw")
	if n := calls.Load(); n != 2 {
		t.Fatalf("VerifyDummy ran %d derivations for 2 calls, want 2", n)
	}
	p := TestParams
	want := []uint32{p.Memory, p.Iterations, uint32(p.Parallelism), p.SaltLen, p.KeyLen}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("VerifyDummy derived with (m,t,p,salt,key) = %v, want the hasher's %v", got, want)
	}
	first, second := h.dummy(), h.dummy()
	if first != second {
		t.Fatal("dummy hash is not computed once")
	}
	if h.NeedsRehash(h.dummy()) {
		t.Fatal("dummy hash does not use the hasher's params")
	}
}

// With maxConcurrent=2, many simultaneous hashes must never have more than
// two derivations in flight. The hook counts in-flight derivations directly,
// so the test does not depend on timing.
func TestConcurrencyBound(t *testing.T) {
	t.Parallel()
	const limit, callers = 2, 16
	h := NewHasher(TestParams, limit)
	var inFlight, peak atomic.Int32
	h.kdf = func(pw, salt []byte, tm, mem uint32, th uint8, kl uint32) []byte {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		k := argon2.IDKey(pw, salt, tm, mem, th, kl)
		inFlight.Add(-1)
		return k
	}
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			if i%2 == 0 {
				_, _ = h.Hash(context.Background(), "pw")
			} else {
				h.VerifyDummy(context.Background(), "pw")
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > limit {
		t.Fatalf("peak concurrent derivations = %d, want <= %d", p, limit)
	}
}

// With maxConcurrent=1 and the only slot held, a second hash must queue
// without starting, and proceed once the slot is free. synctest.Wait returns
// only when every goroutine is durably blocked, so "the second hash is
// waiting, not running" is observed deterministically rather than by timing.
func TestConcurrencyQueues(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := NewHasher(TestParams, 1)
		var entered atomic.Int32
		release := make(chan struct{})
		h.kdf = func(pw, salt []byte, tm, mem uint32, th uint8, kl uint32) []byte {
			entered.Add(1)
			<-release
			return argon2.IDKey(pw, salt, tm, mem, th, kl)
		}
		var done atomic.Int32
		for range 2 {
			go func() {
				if _, err := h.Hash(context.Background(), "pw"); err != nil {
					t.Error(err)
				}
				done.Add(1)
			}()
		}
		synctest.Wait()
		if n := entered.Load(); n != 1 {
			t.Fatalf("%d derivations started with maxConcurrent=1, want 1", n)
		}
		close(release)
		synctest.Wait()
		if e, d := entered.Load(), done.Load(); e != 2 || d != 2 {
			t.Fatalf("after release: %d started, %d done; want 2, 2", e, d)
		}
	})
}

func TestContextCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := NewHasher(TestParams, 1)
		release := make(chan struct{})
		h.kdf = func(pw, salt []byte, tm, mem uint32, th uint8, kl uint32) []byte {
			<-release
			return argon2.IDKey(pw, salt, tm, mem, th, kl)
		}
		holder := make(chan error, 1)
		go func() {
			_, err := h.Hash(context.Background(), "pw")
			holder <- err
		}()
		synctest.Wait() // the holder is inside the derivation

		ctx, cancel := context.WithCancel(context.Background())
		waiter := make(chan error, 1)
		go func() {
			_, err := h.Verify(ctx, "pw", h.dummy())
			waiter <- err
		}()
		synctest.Wait() // the waiter is queued for the slot
		select {
		case err := <-waiter:
			t.Fatalf("Verify returned %v before cancellation; it should be waiting", err)
		default:
		}
		cancel()
		if err := <-waiter; !errors.Is(err, context.Canceled) {
			t.Fatalf("Verify while waiting: err = %v, want context.Canceled", err)
		}

		close(release)
		if err := <-holder; err != nil {
			t.Fatal(err)
		}
	})
}

func TestContextCancelledWithFreeSlot(t *testing.T) {
	t.Parallel()
	h := NewHasher(TestParams, 4)
	h.kdf = func([]byte, []byte, uint32, uint32, uint8, uint32) []byte {
		t.Error("derivation ran for a cancelled context")
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 20 {
		if _, err := h.Hash(ctx, "pw"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Hash: err = %v, want context.Canceled", err)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	h := NewHasher(DefaultParams, 1)
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	h := NewHasher(DefaultParams, 1)
	ctx := context.Background()
	phc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := h.Verify(ctx, "correct horse battery staple", phc); err != nil {
			b.Fatal(err)
		}
	}
}
