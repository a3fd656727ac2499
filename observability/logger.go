// Package observability owns what the service tells its operators: the slog
// JSON logger and the Prometheus metric families, held in a registry of their
// own so that tests and several servers in one process never share counters.
package observability

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ParseLevel maps a log level name to a slog level. The names are Python's
// (DEBUG, INFO, WARNING, ERROR, CRITICAL) because existing deployments of the
// original service set SAAS_API_LOG_LEVEL with them; WARN is accepted as
// slog's own spelling. Matching is case-insensitive and an empty name means
// INFO, the documented default. slog has no level above ERROR, so CRITICAL
// logs as ERROR rather than being rejected.
func ParseLevel(name string) (slog.Level, error) {
	switch strings.ToUpper(strings.TrimSpace(name)) {
	case "DEBUG":
		return slog.LevelDebug, nil
	case "", "INFO":
		return slog.LevelInfo, nil
	case "WARNING", "WARN":
		return slog.LevelWarn, nil
	case "ERROR", "CRITICAL":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want DEBUG, INFO, WARNING, ERROR or CRITICAL)", name)
}

// NewLogger returns a logger that writes one JSON object per record to w,
// dropping records below level (see ParseLevel for the accepted names).
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}
