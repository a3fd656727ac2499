package http

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/observability"
)

// Rate is a token bucket: Events tokens refill every Per, and at most Burst
// are saved up. Events zero means no limit.
type Rate struct {
	Events int
	Per    time.Duration
	Burst  int
}

// Throttle holds the abuse limits of the anonymous routes. Each limit is
// kept in this process's memory: with several replicas behind a load
// balancer, a client may reach each replica's budget.
type Throttle struct {
	// LoginAccountFailures budgets failed sign-ins per account and client
	// address; a successful sign-in spends nothing.
	LoginAccountFailures Rate
	// LoginAddress budgets every sign-in attempt per client address.
	LoginAddress Rate
	// RegisterAddress budgets every registration attempt per client address.
	RegisterAddress Rate
	// MaxKeys bounds each limiter's table; zero means DefaultMaxKeys.
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultThrottle is what a person typing, and an office of people behind
// one NAT address, never reach.
var DefaultThrottle = Throttle{
	LoginAccountFailures: Rate{Events: 10, Per: 15 * time.Minute, Burst: 5},
	LoginAddress:         Rate{Events: 100, Per: time.Minute, Burst: 100},
	RegisterAddress:      Rate{Events: 100, Per: time.Minute, Burst: 100},
}

// DefaultMaxKeys bounds the entries of one limiter (about 200 bytes each).
const DefaultMaxKeys = 100_000

// sweepInterval is how often a limiter drops the buckets that refilled.
const sweepInterval = time.Minute

// limiter is a set of token buckets, one per key. A bucket that has refilled
// completely is indistinguishable from a new one, so the sweep drops it:
// memory follows the keys active within one refill time. If the table is
// still full after a sweep (many distinct keys at once), arbitrary entries
// go, which at worst forgives some of the keys that caused the flood.
type limiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	now     func() time.Time

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

func newLimiter(r Rate, maxKeys int, now func() time.Time) *limiter {
	if r.Events <= 0 || r.Per <= 0 {
		return nil
	}
	burst := r.Burst
	if burst <= 0 {
		burst = r.Events
	}
	return &limiter{
		limit: rate.Limit(float64(r.Events) / r.Per.Seconds()), burst: burst, maxKeys: maxKeys, now: now,
		buckets: map[string]*rate.Limiter{}, lastSweep: now(),
	}
}

// reservation is one token taken from a bucket; refund gives it back.
type reservation struct {
	r  *rate.Reservation
	at time.Time
}

// refund returns the token: the attempt it paid for does not count (a
// successful sign-in). CancelAt restores a reservation only at the time it
// was made, hence at.
func (res reservation) refund() {
	if res.r != nil {
		res.r.CancelAt(res.at)
	}
}

// take takes a token from key's bucket. When the bucket is empty it takes
// nothing and returns how long until a token is there.
func (l *limiter) take(key string) (reservation, time.Duration) {
	if l == nil {
		return reservation{}, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if now.Sub(l.lastSweep) >= sweepInterval || len(l.buckets) >= l.maxKeys {
			l.sweep(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	r := b.ReserveN(now, 1)
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		return reservation{}, delay
	}
	return reservation{r: r, at: now}, 0
}

// sweep drops the buckets that have refilled, then, if the table is still
// full, arbitrary ones (map order) down to three quarters of its size.
func (l *limiter) sweep(now time.Time) {
	l.lastSweep = now
	for key, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, key)
		}
	}
	for key := range l.buckets {
		if len(l.buckets) < l.maxKeys*3/4 {
			break
		}
		delete(l.buckets, key)
	}
}

// size returns the number of buckets held.
func (l *limiter) size() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// limiters are the server's throttles.
type limiters struct {
	loginAccount, loginAddress, registerAddress *limiter
}

func newLimiters(t Throttle) limiters {
	if t.Now == nil {
		t.Now = time.Now
	}
	if t.MaxKeys <= 0 {
		t.MaxKeys = DefaultMaxKeys
	}
	return limiters{
		loginAccount:    newLimiter(t.LoginAccountFailures, t.MaxKeys, t.Now),
		loginAddress:    newLimiter(t.LoginAddress, t.MaxKeys, t.Now),
		registerAddress: newLimiter(t.RegisterAddress, t.MaxKeys, t.Now),
	}
}

// writeThrottled answers 429 with the seconds until a retry can succeed.
func (s *Server) writeThrottled(w http.ResponseWriter, r *http.Request, operation string, delay time.Duration) {
	s.deps.Metrics.AuthAttempt(operation, observability.OutcomeThrottled)
	w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(delay.Seconds())), 10))
	writeProblem(w, r, http.StatusTooManyRequests, saasapi.MsgTooManyAttempts, nil)
}

// throttleAddress admits a request when its client address has budget left
// in l, and answers 429 otherwise.
func (s *Server) throttleAddress(l *limiter, operation string, next http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, delay := l.take(addressKey(stateOf(r.Context()).client)); delay > 0 {
			s.writeThrottled(w, r, operation, delay)
			return
		}
		next.ServeHTTP(w, r)
	}
}
