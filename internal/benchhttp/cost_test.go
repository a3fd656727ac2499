package main

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// The postmaster's tree is read the way this process's own is: what its
// waited-for children used counts, as an exited backend's CPU must.
func TestTreeCPUCountsExitedChildren(t *testing.T) {
	child := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	used := child.ProcessState.UserTime() + child.ProcessState.SystemTime()
	if used < 5*clockTick {
		t.Skipf("the child used only %v of CPU, too little to tell", used)
	}
	self, err := processCPU(os.Getpid(), false)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts user and system time in ticks, each rounded, and the
	// wait status in microseconds: the two differ by a few ticks. Not
	// counting the child at all would leave about nothing.
	if got := tree - self; got < used/2 {
		t.Errorf("tree minus self = %v, want about the child's %v", got, used)
	}
}

func TestCostOf(t *testing.T) {
	before := reading{service: time.Second, postgres: 2 * time.Second, wal: 1000}
	after := reading{service: 3 * time.Second, postgres: 6 * time.Second, wal: 5000}
	c := costOf(before, after, time.Second, 1000)
	want := cost{serviceUS: 2000, postgresUS: 4000, clientUS: 1000, walBytes: 4}
	if c != want {
		t.Errorf("costOf = %+v, want %+v", c, want)
	}
	if c := costOf(before, after, time.Second, 0); c != (cost{}) {
		t.Errorf("costOf of no requests = %+v, want zero", c)
	}
}

func TestParseStatAfterAParenthesisedName(t *testing.T) {
	line := "4242 (postgres: a) b (c)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 1 0 1 1 1\n"
	f, err := parseStat(line, 4242)
	if err != nil {
		t.Fatal(err)
	}
	if f[0] != "S" || f[1] != "17" || f[11] != "250" || f[12] != "75" || f[13] != "3" || f[14] != "4" {
		t.Errorf("fields = %q, want state S, parent 17, times 250 75 3 4", f)
	}
	if _, err := parseStat("4242 (x) S 1 2", 4242); err == nil {
		t.Error("a short line parsed")
	}
	if _, err := parseStat("4242 x S", 4242); err == nil {
		t.Error("a line without a name parsed")
	}
	self, err := statFields(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self[1] != strconv.Itoa(os.Getppid()) {
		t.Errorf("own parent field = %q, want %d", self[1], os.Getppid())
	}
}

// FuzzParseStat: no line makes the parser panic, and a line it accepts
// has the fields after the name that the counters read.
func FuzzParseStat(f *testing.F) {
	f.Add("4242 (postgres: a) b (c)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 1 0 1 1 1\n")
	f.Add("1 (x) S")
	f.Add(")")
	f.Fuzz(func(t *testing.T, line string) {
		fields, err := parseStat(line, 1)
		if err == nil && len(fields) < 15 {
			t.Fatalf("accepted %q with %d fields", line, len(fields))
		}
	})
}
