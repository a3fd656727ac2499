// Package progress reports how far a long operator command has got. On a
// terminal it keeps one live line up to date (done/total, rate, ETA); on
// anything else (a log file, a pipe, a CI job) it writes a plain line now
// and then, so that logs stay readable. Finish writes a one-line summary
// with the rate.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Meter counts the events a command has processed.
type Meter struct {
	w        io.Writer
	label    string
	live     bool
	every    time.Duration
	now      func() time.Time
	mu       sync.Mutex
	total    int64
	done     int64
	start    time.Time
	reported time.Time
}

// Intervals between two reports: a live line is redrawn often, a plain
// line written rarely.
const (
	liveEvery  = 250 * time.Millisecond
	plainEvery = 5 * time.Second
)

// New returns a meter that reports on w, each line starting with label
// (the command, "projections rebuild"). w is a terminal if it is an
// *os.File on a character device.
func New(w io.Writer, label string) *Meter {
	live := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			live = true
		}
	}
	return newMeter(w, label, live, time.Now)
}

func newMeter(w io.Writer, label string, live bool, now func() time.Time) *Meter {
	every := plainEvery
	if live {
		every = liveEvery
	}
	t := now()
	return &Meter{w: w, label: label, live: live, every: every, now: now, start: t, reported: t}
}

// SetTotal sets how many events there are to process (0: unknown).
func (m *Meter) SetTotal(total int64) {
	m.mu.Lock()
	m.total = total
	m.mu.Unlock()
}

// Add counts n more events processed, and reports if it is time to.
func (m *Meter) Add(n int64) { m.Set(-1, n) }

// Done sets the number processed so far, and reports if it is time to.
func (m *Meter) Done(done int64) { m.Set(done, 0) }

// Set sets the count to done (if not negative), adds n, and reports if it
// is time to.
func (m *Meter) Set(done, n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if done >= 0 {
		m.done = done
	}
	m.done += n
	t := m.now()
	if t.Sub(m.reported) < m.every {
		return
	}
	m.reported = t
	line := m.line(t)
	if m.live {
		fmt.Fprintf(m.w, "\r%s\x1b[K", line)
	} else {
		fmt.Fprintln(m.w, line)
	}
}

// line is the progress so far: done/total, rate and ETA.
func (m *Meter) line(t time.Time) string {
	elapsed := t.Sub(m.start)
	r := Rate(m.done, elapsed)
	if m.total <= 0 {
		return fmt.Sprintf("%s: %d events, %.0f events/s", m.label, m.done, r)
	}
	eta := "unknown"
	if r > 0 && m.done <= m.total {
		eta = time.Duration(float64(m.total-m.done) / r * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s: %d/%d events (%.0f%%), %.0f events/s, ETA %s", m.label, m.done, m.total,
		100*float64(m.done)/float64(m.total), r, eta)
}

// Finish writes the summary: how many events in how long, at which rate.
// On a terminal it replaces the live line.
func (m *Meter) Finish() {
	m.mu.Lock()
	defer m.mu.Unlock()
	elapsed := m.now().Sub(m.start)
	prefix := ""
	if m.live {
		prefix = "\r\x1b[K"
	}
	fmt.Fprintf(m.w, "%s%s: %d events in %s (%.0f events/s)\n", prefix, m.label, m.done,
		elapsed.Round(time.Millisecond), Rate(m.done, elapsed))
}

// Rate is n per second over d (0 for no time).
func Rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
