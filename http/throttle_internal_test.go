package http

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// fakeClock is a settable clock for the limiters.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestLimiterMemoryIsBounded(t *testing.T) {
	t.Parallel()

	t.Run("RefilledBucketsAreDropped", func(t *testing.T) {
		t.Parallel()
		clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
		l := newLimiter(Rate{Events: 10, Per: 15 * time.Minute, Burst: 5}, 1000, clock.now)
		for i := range 500 {
			l.take("account-" + strconv.Itoa(i))
		}
		if n := l.size(); n != 500 {
			t.Fatalf("size = %d after 500 keys, want 500", n)
		}
		// One token back takes 90 s; after 7.5 minutes every bucket is
		// full again, as good as new, and the next sweep drops them.
		clock.t = clock.t.Add(7*time.Minute + 31*time.Second)
		l.take("newcomer")
		if n := l.size(); n != 1 {
			t.Fatalf("size = %d after the refill time, want 1 (only the newcomer)", n)
		}
	})

	t.Run("ManyKeysAtOnceStayWithinTheCap", func(t *testing.T) {
		t.Parallel()
		clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
		l := newLimiter(Rate{Events: 100, Per: time.Minute}, 1000, clock.now)
		for i := range 50_000 {
			l.take("addr-" + strconv.Itoa(i))
			if n := l.size(); n > 1000 {
				t.Fatalf("size = %d after %d keys, want at most the cap 1000", n, i+1)
			}
		}
	})

	t.Run("EvictionKeepsBucketsInUse", func(t *testing.T) {
		t.Parallel()
		clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
		l := newLimiter(Rate{Events: 1, Per: time.Hour, Burst: 1}, 1000, clock.now)
		l.take("busy")
		clock.t = clock.t.Add(2 * sweepInterval)
		l.take("other") // sweeps; busy has not refilled
		if _, delay := l.take("busy"); delay <= 0 {
			t.Fatal("a sweep forgot a bucket that had not refilled: its key got a new budget")
		}
	})

	t.Run("RefundGivesTheTokenBack", func(t *testing.T) {
		t.Parallel()
		clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
		l := newLimiter(Rate{Events: 1, Per: time.Hour, Burst: 1}, 1000, clock.now)
		res, _ := l.take("k")
		clock.t = clock.t.Add(200 * time.Millisecond) // the attempt takes time
		res.refund()
		if _, delay := l.take("k"); delay > 0 {
			t.Fatalf("after a refund the bucket still waits %v, want the token back", delay)
		}
		if _, delay := l.take("k"); delay <= 0 {
			t.Fatal("a second take without refund passed a bucket of one")
		}
	})
}

func TestClientAddress(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"PeerWithoutProxy", "198.51.100.1:5000", nil, "198.51.100.1"},
		{"UntrustedPeerHeaderIgnored", "198.51.100.1:5000", []string{"192.0.2.9"}, "198.51.100.1"},
		{"TrustedPeerNamesClient", "10.0.0.2:5000", []string{"192.0.2.9"}, "192.0.2.9"},
		{"RightMostUntrusted", "10.0.0.2:5000", []string{"6.6.6.6, 192.0.2.9, 10.1.1.1"}, "192.0.2.9"},
		{"SeveralHeaderLines", "10.0.0.2:5000", []string{"6.6.6.6", "192.0.2.9"}, "192.0.2.9"},
		{"MalformedHopStopsAtProxy", "10.0.0.2:5000", []string{"192.0.2.9, junk"}, "10.0.0.2"},
		{"AllTrustedTakesLeftMost", "10.0.0.2:5000", []string{"10.9.9.9, 10.1.1.1"}, "10.9.9.9"},
		{"TrustedWithoutHeader", "10.0.0.2:5000", nil, "10.0.0.2"},
		{"IPv6Proxy", "[fd00::1]:5000", []string{"2001:db8::7"}, "2001:db8::7"},
		{"MappedIPv4", "[::ffff:198.51.100.1]:5000", nil, "198.51.100.1"},
		{"NoPeer", "pipe", nil, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := clientAddress(tt.peer, tt.xff, trusted).String(); got != tt.want {
				t.Fatalf("clientAddress(%q, %q) = %s, want %s", tt.peer, tt.xff, got, tt.want)
			}
		})
	}
}

func TestAddressKey(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"192.0.2.1":             "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":  "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::77": "2001:db8:1:2::/64",
	} {
		if got := addressKey(netip.MustParseAddr(addr)); got != want {
			t.Errorf("addressKey(%s) = %q, want %q", addr, got, want)
		}
	}
	if got := addressKey(netip.Addr{}); got != "unknown" {
		t.Errorf("addressKey(invalid) = %q, want unknown", got)
	}
}

// BenchmarkLimiterTake prints what one throttle check costs: for a key seen
// before, and for a new key each time in a table at its cap (a flood of
// made-up addresses, with the sweeps that it causes).
func BenchmarkLimiterTake(b *testing.B) {
	b.Run("SameKey", func(b *testing.B) {
		l := newLimiter(Rate{Events: 1 << 30, Per: time.Second}, DefaultMaxKeys, time.Now)
		for b.Loop() {
			l.take("203.0.113.7")
		}
	})
	b.Run("NewKeyAtCap", func(b *testing.B) {
		l := newLimiter(DefaultThrottle.LoginAddress, DefaultMaxKeys, time.Now)
		keys := make([]string, 1<<20)
		for i := range keys {
			keys[i] = "addr-" + strconv.Itoa(i)
		}
		i := 0
		for b.Loop() {
			l.take(keys[i%len(keys)])
			i++
		}
		b.ReportMetric(float64(l.size()), "keys")
	})
	b.Run("SweepOfAFullTable", func(b *testing.B) {
		// The longest a sweep holds the limiter's lock: a full table of
		// buckets that have not refilled.
		clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
		l := newLimiter(Rate{Events: 1, Per: time.Hour, Burst: 1}, DefaultMaxKeys, clock.now)
		for i := range DefaultMaxKeys - 1 {
			l.take("addr-" + strconv.Itoa(i))
		}
		for b.Loop() {
			l.mu.Lock()
			for key, bucket := range l.buckets { // what sweep scans, without deleting
				if bucket.TokensAt(clock.t) >= float64(l.burst) {
					b.Fatalf("bucket %s refilled", key)
				}
			}
			l.mu.Unlock()
		}
	})
}
