package guardrails

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// stopByName matches commands that stop processes by name: they may hit
// processes that the script did not start (a developer's own PostgreSQL or
// Prometheus, another job's).
var stopByName = regexp.MustCompile(`\b(pkill|killall|pgrep\b.*\|\s*xargs\s+kill)\b`)

// TestScriptsStopOnlyTheirOwnProcesses scans the shell scripts, the CI entry
// point and the Makefile: a script stops what it started, by PID.
func TestScriptsStopOnlyTheirOwnProcesses(t *testing.T) {
	t.Parallel()
	root, _ := moduleRoot(t)
	scripts, err := filepath.Glob(filepath.Join(root, "scripts", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	scripts = append(scripts, filepath.Join(root, ".ci", "run"), filepath.Join(root, "Makefile"))
	for _, path := range scripts {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(raw), "\n") {
			if code, _, _ := strings.Cut(line, "#"); stopByName.MatchString(code) {
				t.Errorf("%s:%d stops processes by name: %s", path, i+1, strings.TrimSpace(line))
			}
		}
	}
}

// TestCIKeepsPackagedServicesFromStarting checks that .ci/run installs
// Debian packages under a policy-rc.d that forbids starting services, and
// removes that file only when it wrote it.
func TestCIKeepsPackagedServicesFromStarting(t *testing.T) {
	t.Parallel()
	root, _ := moduleRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	policy := strings.Index(s, "exit 101")
	install := strings.Index(s, "apt-get install")
	if policy < 0 || install < 0 || policy > install {
		t.Fatalf(".ci/run must write a policy-rc.d that exits 101 before apt-get install (policy at %d, install at %d)", policy, install)
	}
	if !strings.Contains(s, "/usr/sbin/policy-rc.d") || !regexp.MustCompile(`own_policy" = true \]; then rm -f`).MatchString(s) {
		t.Fatal(".ci/run must remove /usr/sbin/policy-rc.d only when it created it")
	}
}

// TestNoBuildOutputsTracked keeps compiled programs out of the repository:
// `go build ./internal/x` in the module root writes a binary named x there,
// and one commit of it stays in every clone's history for good.
func TestNoBuildOutputsTracked(t *testing.T) {
	t.Parallel()
	root, _ := moduleRoot(t)
	const limit = 4 << 20 // the vendored documentation bundles are under 2 MiB
	for _, rel := range repoFiles(t, root) {
		content, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			continue // tracked but deleted in the working tree
		}
		switch {
		case strings.HasPrefix(string(content), "\x7fELF"):
			t.Errorf("%s is a compiled program; build into bin/ (ignored) instead", rel)
		case len(content) > limit:
			t.Errorf("%s is %d bytes, above the %d bytes any file of the repository needs", rel, len(content), limit)
		}
	}
}
