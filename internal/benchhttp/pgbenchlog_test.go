package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestPgbenchLatencies reads pgbench's per-transaction log lines from
// every thread's file and takes percentiles by nearest rank.
func TestPgbenchLatencies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var a, b []byte
	for i := 1; i <= 100; i++ {
		line := []byte("0 " + itoa(i) + " " + itoa(i*1000) + " 0 1700000000 123456\n")
		if i%2 == 0 {
			a = append(a, line...)
		} else {
			b = append(b, line...)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "tx.4242"), a, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tx.4242.1"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	lat, err := pgbenchLatencies(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 100 || percentile(lat, 0.50) != 50 || percentile(lat, 0.99) != 99 || percentile(lat, 1) != 100 {
		t.Fatalf("%d latencies, p50 %v, p99 %v", len(lat), percentile(lat, 0.50), percentile(lat, 0.99))
	}
	if _, err := pgbenchLatencies(t.TempDir()); err == nil {
		t.Fatal("an empty log directory gave latencies")
	}
	if err := os.WriteFile(filepath.Join(dir, "tx.9"), []byte("0 1 x 0 1 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pgbenchLatencies(dir); err == nil {
		t.Fatal("a malformed latency was accepted")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
