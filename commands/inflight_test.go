package commands

import (
	"sync"
	"testing"
	"time"
)

// TestInFlightWaitDuringAdd starts goroutines while others wait, as requests
// do while a shutdown or a test waits for their background writes. Under the
// race detector a sync.WaitGroup fails this (an Add from zero concurrent with
// Wait); wait must also not return while a goroutine it saw is still running.
func TestInFlightWaitDuringAdd(t *testing.T) {
	t.Parallel()
	var f inFlight
	var running sync.Map
	var waiters sync.WaitGroup
	for i := range 50 {
		waiters.Add(2)
		go func() {
			defer waiters.Done()
			f.add()
			running.Store(i, true)
			go func() {
				defer f.done()
				time.Sleep(time.Millisecond)
				running.Delete(i)
			}()
		}()
		go func() {
			defer waiters.Done()
			f.wait()
		}()
	}
	waiters.Wait()
	f.wait()
	running.Range(func(k, _ any) bool {
		t.Errorf("goroutine %v still running after wait returned", k)
		return true
	})
}
