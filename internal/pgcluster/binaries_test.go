package pgcluster

import (
	"errors"
	"strings"
	"testing"
)

// TestMissingBinariesSayWhatToDo: without server binaries the error says
// what to install and that serve with a database URL is the alternative.
// It changes PATH, so it cannot run in parallel.
func TestMissingBinariesSayWhatToDo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findBinaries(t.TempDir())
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("got %v, want ErrNotInstalled", err)
	}
	for _, hint := range []string{"apt-get install postgresql", "saasapi serve", "SAAS_API_DATABASE_URL"} {
		if !strings.Contains(err.Error(), hint) {
			t.Errorf("error %q does not mention %q", err, hint)
		}
	}
}
