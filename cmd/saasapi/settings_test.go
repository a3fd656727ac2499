package main

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/saasapi/saasapi/internal/testdb"
)

func TestUnknownSettings(t *testing.T) {
	t.Parallel()
	got := unknownSettings(environment{
		"SAAS_API_DOCS_ENABLE":       "true", // a letter short
		"SAAS_API_JWT_SECERT":        "x",    // transposed
		"SAAS_API_HTTPADDR":          "x",    // underscore lost
		"SAAS_API_DEV_DIR":           "known",
		"SAAS_API_TEST_DATABASE_URL": "read by the tests",
		"PATH":                       "not ours",
	})
	want := []unknownSetting{
		{"SAAS_API_DOCS_ENABLE", "SAAS_API_DOCS_ENABLED"},
		{"SAAS_API_HTTPADDR", "SAAS_API_HTTP_ADDR"},
		{"SAAS_API_JWT_SECERT", "SAAS_API_JWT_SECRET"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("unknownSettings = %v, want %v", got, want)
	}
	// Every setting loadConfig reads is known, so none is reported.
	env := environment{}
	for _, name := range serviceSettings() {
		env[name] = "x"
	}
	if len(env) < 12 {
		t.Fatalf("only %d settings recorded: %v", len(env), serviceSettings())
	}
	if got := unknownSettings(env); len(got) != 0 {
		t.Errorf("known settings reported as unknown: %v", got)
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "", 3}, {"", "ab", 2}, {"kitten", "sitting", 3}, {"SECRET", "SECERT", 2}, {"same", "same", 0}} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestMigrateWarnsAboutUnknownSettings: the operator commands warn on
// stderr and still do their work.
func TestMigrateWarnsAboutUnknownSettings(t *testing.T) {
	t.Parallel()
	var errOut bytes.Buffer
	err := run(t.Context(), []string{"migrate"}, environment{
		"SAAS_API_DATABASE_URL": testdb.NewEmpty(t).URL,
		"SAAS_API_LOG_LEVL":     "DEBUG",
	}, io.Discard, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if want := "warning: SAAS_API_LOG_LEVL is not a setting and is ignored; did you mean SAAS_API_LOG_LEVEL?"; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q lacks %q", errOut.String(), want)
	}
}
