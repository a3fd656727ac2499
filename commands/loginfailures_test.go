package commands

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/saasapi/saasapi"
)

// TestLoginFailuresWindow drives the coalescer on a fake clock: the first
// failure of a quiet account is recorded at once, the rest of its window in
// one event at the window's end, and an account quiet for a whole window is
// forgotten.
func TestLoginFailuresWindow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var recorded []pendingFailure
		l := &loginFailures{window: time.Minute, open: map[saasapi.ID]*failureWindow{},
			record: func(_ saasapi.ID, f pendingFailure) {
				mu.Lock()
				defer mu.Unlock()
				recorded = append(recorded, f)
			}}
		got := func() []int {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			out := make([]int, len(recorded))
			for i, f := range recorded {
				out[i] = f.attempts
			}
			return out
		}
		user := saasapi.NewID()
		for i := range 60 {
			l.add(user, "invalid_password", Meta{ServerRequestID: "r" + string(rune('a'+i%26))})
			time.Sleep(500 * time.Millisecond) // 60 failures in 30 s
		}
		if a := got(); len(a) != 1 || a[0] != 1 {
			t.Fatalf("within the window: recorded %v, want [1]", a)
		}
		time.Sleep(31 * time.Second) // the window ends
		if a := got(); len(a) != 2 || a[1] != 59 {
			t.Fatalf("after the window: recorded %v, want [1 59]", a)
		}
		if last := recorded[1]; last.meta.ServerRequestID != "r"+string(rune('a'+59%26)) {
			t.Fatalf("the coalesced event carries request %q, want the latest attempt's", last.meta.ServerRequestID)
		}
		time.Sleep(time.Minute) // a quiet window: nothing to record, forgotten
		if a := got(); len(a) != 2 {
			t.Fatalf("after a quiet window: recorded %v, want nothing new", a)
		}
		l.mu.Lock()
		open := len(l.open)
		l.mu.Unlock()
		if open != 0 {
			t.Fatalf("%d accounts still tracked after a quiet window, want 0", open)
		}
		l.add(user, "invalid_password", Meta{})
		if a := got(); len(a) != 3 || a[2] != 1 {
			t.Fatalf("a failure after the quiet window: recorded %v, want it at once", a)
		}
		l.add(user, "inactive_user", Meta{})
		l.close()
		if a := got(); len(a) != 4 || a[3] != 1 || recorded[3].reason != "inactive_user" {
			t.Fatalf("close: recorded %v, want the pending failure flushed", a)
		}
	})
}
