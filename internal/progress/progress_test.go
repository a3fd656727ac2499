package progress

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// clock is a fake time that the test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestPlainLinesAreRareAndReadable(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	m := newMeter(&out, "projections rebuild", false, c.now)
	m.SetTotal(1000)
	m.Add(100) // no time has passed: nothing yet
	if out.Len() != 0 {
		t.Fatalf("reported before the interval: %q", out.String())
	}
	c.t = c.t.Add(plainEvery)
	m.Add(400)
	want := "projections rebuild: 500/1000 events (50%), 100 events/s, ETA 5s\n"
	if out.String() != want {
		t.Fatalf("plain line %q, want %q", out.String(), want)
	}
	c.t = c.t.Add(time.Second)
	m.Done(600) // within the interval: no line
	c.t = c.t.Add(4 * time.Second)
	m.Finish()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || lines[1] != "projections rebuild: 600 events in 10s (60 events/s)" {
		t.Fatalf("lines %q, want one progress line and the summary", lines)
	}
	if strings.ContainsAny(out.String(), "\r\x1b") {
		t.Errorf("plain output holds terminal controls: %q", out.String())
	}
}

func TestLiveLineIsRedrawn(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	m := newMeter(&out, "audit verify", true, c.now)
	m.SetTotal(100)
	for range 4 {
		c.t = c.t.Add(liveEvery)
		m.Add(10)
	}
	m.Finish()
	s := out.String()
	if strings.Count(s, "\r") != 5 || strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "audit verify: 40 events in 1s (40 events/s)\n") {
		t.Fatalf("live output %q: want four redrawn lines and one summary line", s)
	}
	if !strings.Contains(s, "\raudit verify: 40/100 events (40%), 40 events/s, ETA 2s\x1b[K") {
		t.Errorf("live output %q lacks done/total, rate and ETA", s)
	}
}

func TestUnknownTotal(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(1000, 0)}
	m := newMeter(&out, "x", false, c.now)
	c.t = c.t.Add(plainEvery)
	m.Add(50)
	if out.String() != "x: 50 events, 10 events/s\n" {
		t.Fatalf("line without a total: %q", out.String())
	}
}

func TestNewTellsATerminalFromAFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if New(f, "x").live {
		t.Error("a regular file was taken for a terminal")
	}
	if New(&bytes.Buffer{}, "x").live {
		t.Error("a buffer was taken for a terminal")
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer func() { _ = tty.Close() }()
		if !New(tty, "x").live {
			t.Error("/dev/tty was not taken for a terminal")
		}
	}
}
