package commands

import (
	"context"
	"sync"
	"time"

	"github.com/saasapi/saasapi"
)

// DefaultLoginFailureWindow is how long failed sign-ins of one account are
// summed into one user.login_failed event when Config leaves it unset.
const DefaultLoginFailureWindow = 5 * time.Minute

// loginFailures coalesces the failed sign-ins of each account. The first
// failure of a quiet account is recorded at once (attempts 1) and opens a
// window; the failures within the window are counted, and at its end one
// event records them all (attempts N) and opens the next window. An account
// thus gets at most one user.login_failed event per window, whatever the
// number of attempts, and the ledger still says how many there were. State
// is per process: with several replicas each coalesces its own attempts.
type loginFailures struct {
	mu     sync.Mutex
	window time.Duration
	open   map[saasapi.ID]*failureWindow
	closed bool
	record func(userID saasapi.ID, f pendingFailure) // starts a tracked background write
}

// failureWindow is an account's open window: the failures not yet recorded.
type failureWindow struct {
	pending pendingFailure
	timer   *time.Timer
}

// pendingFailure is what the next event of an account will say: how many
// attempts, the reason of the latest and the request metadata of the latest.
type pendingFailure struct {
	attempts int
	reason   string
	meta     Meta
}

// add counts one failed sign-in of userID.
func (l *loginFailures) add(userID saasapi.ID, reason string, meta Meta) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := pendingFailure{attempts: 1, reason: reason, meta: meta}
	if l.closed {
		l.record(userID, f)
		return
	}
	if w, ok := l.open[userID]; ok {
		f.attempts += w.pending.attempts
		w.pending = f
		return
	}
	l.record(userID, f)
	w := &failureWindow{}
	w.timer = time.AfterFunc(l.window, func() { l.closeWindow(userID, w) })
	l.open[userID] = w
}

// closeWindow ends the window of userID: it records the failures counted in
// it, if any, and opens the next window; an account without failures in
// its window is forgotten, so memory follows the accounts under attack.
func (l *loginFailures) closeWindow(userID saasapi.ID, w *failureWindow) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[userID] != w {
		return // flushed by close
	}
	if w.pending.attempts == 0 {
		delete(l.open, userID)
		return
	}
	l.record(userID, w.pending)
	w.pending = pendingFailure{}
	w.timer.Reset(l.window)
}

// close records every counted failure now and stops coalescing: the
// service is shutting down.
func (l *loginFailures) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for userID, w := range l.open {
		w.timer.Stop()
		if w.pending.attempts > 0 {
			l.record(userID, w.pending)
		}
		delete(l.open, userID)
	}
}

// Close records the failed sign-ins still being coalesced and waits for
// every background write. The server calls it on shutdown, before it closes
// the pool; afterwards failures are recorded one by one.
func (s *Service) Close() {
	s.failures.close()
	s.Wait()
}

// recordLoginFailure starts the background write of one user.login_failed
// event carrying f's count.
func (s *Service) recordLoginFailure(userID saasapi.ID, f pendingFailure) {
	meta := f.meta
	meta.Principal = saasapi.Principal{Type: saasapi.PrincipalAnonymous}
	data := saasapi.UserLoginFailed{Reason: f.reason, Attempts: f.attempts}
	s.background(func(ctx context.Context) {
		if err := s.appendToUser(ctx, meta, userID, saasapi.EventUserLoginFailed, data); err != nil && s.onBackgroundError != nil {
			s.onBackgroundError(err)
		}
	})
}
