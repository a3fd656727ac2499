package observability_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/saasapi/saasapi/observability"
)

func TestParseLevel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want slog.Level
	}{
		{"DEBUG", slog.LevelDebug},
		{"debug", slog.LevelDebug},
		{"INFO", slog.LevelInfo},
		{"Info", slog.LevelInfo},
		{"", slog.LevelInfo},
		{"WARNING", slog.LevelWarn},
		{"warn", slog.LevelWarn},
		{"ERROR", slog.LevelError},
		{"CRITICAL", slog.LevelError},
		{"critical", slog.LevelError},
	}
	for _, tt := range tests {
		got, err := observability.ParseLevel(tt.name)
		if err != nil || got != tt.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, nil", tt.name, got, err, tt.want)
		}
	}
	for _, bad := range []string{"TRACE", "verbose", "10", "INFOO"} {
		if _, err := observability.ParseLevel(bad); err == nil {
			t.Errorf("ParseLevel(%q): want an error for an unknown level", bad)
		}
		if _, err := observability.NewLogger(&bytes.Buffer{}, bad); err == nil {
			t.Errorf("NewLogger(%q): want an error for an unknown level", bad)
		}
	}
}

func TestNewLogger_WritesJSONAtOrAboveLevel(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := observability.NewLogger(&buf, "warning")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("dropped")
	log.Warn("kept", "request_id", "r-1")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want exactly the WARN record, got %d lines:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("log line is not JSON: %v\n%s", err, lines[0])
	}
	for key, want := range map[string]string{"level": "WARN", "msg": "kept", "request_id": "r-1"} {
		if rec[key] != want {
			t.Errorf("record[%q] = %v, want %q (record %s)", key, rec[key], want, lines[0])
		}
	}
	if _, ok := rec["time"]; !ok {
		t.Errorf("record has no time: %s", lines[0])
	}
}
