package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "url")
	// The command sees the cluster's URL and can connect to it; its exit
	// status comes back.
	script := `test -n "$SAAS_API_TEST_DATABASE_URL" || exit 1
printf %s "$SAAS_API_TEST_DATABASE_URL" > "$1"
exit 3`
	if got := run([]string{"sh", "-c", script, "sh", out}); got != 3 {
		t.Fatalf("run returned %d, want the command's 3", got)
	}
	url, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("command saw %s", url)

	if got := run([]string{"sh", "-c", "kill -TERM $$"}); got != 128+15 {
		t.Errorf("command killed by SIGTERM: run returned %d, want 143", got)
	}
	if got := run([]string{filepath.Join(t.TempDir(), "no-such-command")}); got != 127 {
		t.Errorf("missing command: run returned %d, want 127", got)
	}
}
