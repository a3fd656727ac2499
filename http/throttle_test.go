package http_test

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	apihttp "github.com/saasapi/saasapi/http"
)

// behindProxy makes the test server trust the loopback peer as a proxy, so
// that X-Forwarded-For names the client address of each request.
func behindProxy(d *apihttp.Deps) {
	d.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// withThrottle sets the server's limits.
func withThrottle(t apihttp.Throttle) func(*apihttp.Deps) {
	return func(d *apihttp.Deps) { d.Throttle = &t }
}

// login signs in from the client address from.
func (e *env) login(email, password, from string) response {
	e.t.Helper()
	return e.do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": email, "password": password},
		header: map[string]string{"X-Forwarded-For": from}})
}

// wantThrottled fails unless r is the 429 problem with a Retry-After of
// whole seconds, at least one.
func wantThrottled(t testing.TB, r response) {
	t.Helper()
	wantProblem(t, r, http.StatusTooManyRequests, saasapi.MsgTooManyAttempts)
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("Retry-After = %q, want a whole number of seconds >= 1", r.Header.Get("Retry-After"))
	}
}

func TestLoginThrottle(t *testing.T) {
	t.Parallel()

	t.Run("FailuresPerAccountAndAddress", func(t *testing.T) {
		t.Parallel()
		e := setup(t, behindProxy)
		u := e.register("Victim")
		for i := range 5 { // the default burst
			if r := e.login(u.Email, "wrong password "+strconv.Itoa(i), "203.0.113.7"); r.Status != http.StatusUnauthorized {
				t.Fatalf("failure %d answered %d, want 401 within the burst; body %s", i+1, r.Status, r.Raw)
			}
		}
		wantThrottled(t, e.login(u.Email, "wrong password 6", "203.0.113.7"))
		// No oracle: the right password is refused alike from that address.
		wantThrottled(t, e.login(u.Email, testPassword, "203.0.113.7"))
		// Its owner, elsewhere, is not locked out.
		want(t, e.login(u.Email, testPassword, "198.51.100.20"), http.StatusOK)
		// Nor is another account from the attacker's address.
		other := e.register("Other")
		want(t, e.login(other.Email, testPassword, "203.0.113.7"), http.StatusOK)
	})

	t.Run("SuccessSpendsNoBudget", func(t *testing.T) {
		t.Parallel()
		e := setup(t, behindProxy)
		u := e.register("Frequent")
		for range 12 {
			want(t, e.login(u.Email, testPassword, "198.51.100.30"), http.StatusOK)
		}
		for i := range 5 {
			if r := e.login(u.Email, "typo "+strconv.Itoa(i), "198.51.100.30"); r.Status != http.StatusUnauthorized {
				t.Fatalf("failure %d after successful sign-ins answered %d, want 401; body %s", i+1, r.Status, r.Raw)
			}
		}
		wantThrottled(t, e.login(u.Email, "typo 6", "198.51.100.30"))
	})

	t.Run("UnknownEmailIsThrottledAlike", func(t *testing.T) {
		t.Parallel()
		e := setup(t, behindProxy)
		for range 5 {
			want(t, e.login("nobody@example.com", testPassword, "203.0.113.8"), http.StatusUnauthorized)
		}
		wantThrottled(t, e.login("nobody@example.com", testPassword, "203.0.113.8"))
		// Spellings of one address share the budget.
		wantThrottled(t, e.login("  NoBody@Example.COM", testPassword, "203.0.113.8"))
	})

	t.Run("ConcurrentGuessesCannotExceedTheBurst", func(t *testing.T) {
		t.Parallel()
		e := setup(t, behindProxy)
		u := e.register("Target")
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := e.send(req{method: "POST", path: "/auth/login",
					body:   map[string]any{"email": u.Email, "password": "guess " + strconv.Itoa(i)},
					header: map[string]string{"X-Forwarded-For": "203.0.113.9"}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				statuses[r.Status]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		e.svc.Wait()
		if statuses[http.StatusUnauthorized] != 5 || statuses[http.StatusTooManyRequests] != 15 {
			t.Fatalf("20 concurrent guesses answered %v, want exactly the burst (5) checked and 15 refused with 429", statuses)
		}
	})

	t.Run("EveryAttemptPerAddress", func(t *testing.T) {
		t.Parallel()
		e := setup(t, behindProxy, withThrottle(apihttp.Throttle{LoginAddress: apihttp.Rate{Events: 3, Per: time.Minute}}))
		u := e.register("Office")
		for range 3 {
			want(t, e.login(u.Email, testPassword, "192.0.2.50"), http.StatusOK)
		}
		wantThrottled(t, e.login(u.Email, testPassword, "192.0.2.50"))
		// Even a malformed body spends the address's budget (checked first).
		wantThrottled(t, e.do(req{method: "POST", path: "/auth/login", body: "{", header: map[string]string{"X-Forwarded-For": "192.0.2.50"}}))
		want(t, e.login(u.Email, testPassword, "192.0.2.51"), http.StatusOK)
		// An IPv6 client's /64 is one address.
		for range 3 {
			want(t, e.login(u.Email, testPassword, "2001:db8:1:2::a"), http.StatusOK)
		}
		wantThrottled(t, e.login(u.Email, testPassword, "2001:db8:1:2::b"))
	})

	t.Run("ForwardedForIsIgnoredFromUntrustedPeers", func(t *testing.T) {
		t.Parallel()
		e := setup(t) // the loopback peer is not a trusted proxy
		u := e.register("Direct")
		for i := range 5 {
			want(t, e.login(u.Email, "wrong "+strconv.Itoa(i), "198.51.100."+strconv.Itoa(i)), http.StatusUnauthorized)
		}
		// Rotating X-Forwarded-For does not buy new budgets.
		wantThrottled(t, e.login(u.Email, "wrong 6", "198.51.100.99"))
	})

	t.Run("MetricCountsThrottled", func(t *testing.T) {
		t.Parallel()
		e := setup(t, behindProxy, withThrottle(apihttp.Throttle{LoginAddress: apihttp.Rate{Events: 1, Per: time.Hour}}))
		want(t, e.login("a@example.com", testPassword, "192.0.2.60"), http.StatusUnauthorized)
		wantThrottled(t, e.login("a@example.com", testPassword, "192.0.2.60"))
		if !strings.Contains(e.exposition(), `saas_api_auth_attempts_total{operation="login",outcome="throttled"} 1`) {
			t.Fatal("the throttled sign-in is not counted as outcome throttled")
		}
	})
}

func TestRegisterThrottle(t *testing.T) {
	t.Parallel()
	e := setup(t, behindProxy, withThrottle(apihttp.Throttle{RegisterAddress: apihttp.Rate{Events: 2, Per: time.Minute}}))
	register := func(from string) response {
		return e.do(req{method: "POST", path: "/auth/register", body: registerBody(strings.ToLower(saasapi.NewID().String()) + "@example.com"),
			header: map[string]string{"X-Forwarded-For": from}})
	}
	want(t, register("192.0.2.70"), http.StatusCreated)
	want(t, register("192.0.2.70"), http.StatusCreated)
	before := e.count("users")
	wantThrottled(t, register("192.0.2.70"))
	if after := e.count("users"); after != before {
		t.Fatalf("a throttled registration changed users from %d to %d rows", before, after)
	}
	want(t, register("192.0.2.71"), http.StatusCreated)
}

// withFailureWindow gives the server a command service whose failed sign-ins
// are coalesced over window, and no per-account throttle.
func withFailureWindow(t *testing.T, window time.Duration) func(*apihttp.Deps) {
	return func(d *apihttp.Deps) {
		svc := commands.New(d.Pool, commands.Config{
			Keys:   saasapi.EphemeralDataKeyring(),
			Hasher: auth.NewHasher(auth.TestParams, 0), Tokens: d.Tokens, PasswordMinLength: 12, LoginFailureWindow: window,
		})
		t.Cleanup(svc.Close)
		d.Commands = svc
		d.Throttle = &apihttp.Throttle{}
	}
}

// loginFailures returns the attempts and request IDs of the user's
// user.login_failed events, oldest first.
func (e *env) loginFailures(userID string) (attempts []int, requestIDs []string) {
	e.t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT (payload->>'attempts')::int, request_id FROM events
		WHERE ledger_id = $1 AND event_type = 'user.login_failed' ORDER BY sequence`, userID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n int
		var id string
		if err := rows.Scan(&n, &id); err != nil {
			e.t.Fatal(err)
		}
		attempts, requestIDs = append(attempts, n), append(requestIDs, id)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return attempts, requestIDs
}

func TestLoginFailuresAreCoalesced(t *testing.T) {
	t.Parallel()
	e := setup(t, withFailureWindow(t, time.Hour))
	u := e.register("Coalesced")
	for i := range 60 {
		r := e.do(req{method: "POST", path: "/auth/login", body: map[string]any{"email": u.Email, "password": "wrong " + strconv.Itoa(i)},
			header: map[string]string{"X-Request-ID": "attacker-text-" + strconv.Itoa(i)}})
		want(t, r, http.StatusUnauthorized)
	}
	attempts, _ := e.loginFailures(u.ID)
	if len(attempts) != 1 || attempts[0] != 1 {
		t.Fatalf("after 60 failures within the window: events with attempts %v, want one event (attempts 1) at the first", attempts)
	}
	e.svc.Close() // shutting down records what the window counted
	attempts, ids := e.loginFailures(u.ID)
	if len(attempts) != 2 || attempts[0]+attempts[1] != 60 {
		t.Fatalf("after shutdown: events with attempts %v, want two events that together count 60", attempts)
	}
	for _, id := range ids {
		if !ulidPattern.MatchString(id) {
			t.Fatalf("login_failed request_id = %q, want the server's generated ULID, not the caller's X-Request-ID", id)
		}
	}
	// The caller's ID stays in the log line, next to the server's.
	if logs := e.logs.String(); !strings.Contains(logs, `"request_id":"attacker-text-59"`) ||
		!strings.Contains(logs, `"server_request_id":"`+ids[1]+`"`) {
		t.Fatalf("the log lacks the caller's request ID next to the server's %s", ids[1])
	}
}
