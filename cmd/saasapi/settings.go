package main

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// toolSettings are SAAS_API_* variables read by the project's scripts and
// tests rather than by the service; they are not misspellings.
var toolSettings = []string{
	"SAAS_API_TEST_DATABASE_URL",    // internal/testdb
	"SAAS_API_DEMO_BASE_URL",        // scripts/smoke-demo.sh
	"SAAS_API_DEMO_RUN_ID",          // scripts/smoke-demo.sh
	"SAAS_API_GATE_SKIP_MISSING",    // scripts/quality-gate.sh
	"SAAS_API_FORBIDDEN_TERMS_FILE", // internal/guardrails
	"SAAS_API_OPENAPI_COVERAGE",     // http tests
}

// serviceSettings are the variables loadConfig reads: it is run once with a
// getenv that records the names asked for, so the list cannot fall behind.
var serviceSettings = sync.OnceValue(func() []string {
	var names []string
	_, _ = loadConfig(func(name string) string {
		names = append(names, name)
		return ""
	}, "127.0.0.1:0") // only the names matter, not whether defaults validate
	slices.Sort(names)
	return slices.Compact(names)
})

// unknownSetting is a SAAS_API_* variable nobody reads, and the known
// setting it most likely meant.
type unknownSetting struct{ name, closest string }

// unknownSettings lists the SAAS_API_* variables of env that neither the
// service nor the project's tools read, in name order.
func unknownSettings(env environment) []unknownSetting {
	known := serviceSettings()
	var out []unknownSetting
	for name := range env {
		if !strings.HasPrefix(name, envPrefix) || slices.Contains(known, name) || slices.Contains(toolSettings, name) {
			continue
		}
		out = append(out, unknownSetting{name: name, closest: closest(name, known)})
	}
	slices.SortFunc(out, func(a, b unknownSetting) int { return strings.Compare(a.name, b.name) })
	return out
}

// warnUnknownSettings reports every unknown SAAS_API_* variable of env, so
// that a misspelt setting is not silently ignored.
func warnUnknownSettings(env environment, warn func(unknownSetting)) {
	for _, u := range unknownSettings(env) {
		warn(u)
	}
}

// logWarner reports unknown settings to the service's log.
func logWarner(logger *slog.Logger) func(unknownSetting) {
	return func(u unknownSetting) {
		logger.Warn(fmt.Sprintf("%s is not a setting and is ignored; did you mean %s?", u.name, u.closest),
			slog.String("variable", u.name), slog.String("closest", u.closest))
	}
}

// stderrWarner reports unknown settings on the operator commands' stderr.
func stderrWarner(stderr io.Writer) func(unknownSetting) {
	return func(u unknownSetting) {
		fmt.Fprintf(stderr, "saasapi: warning: %s is not a setting and is ignored; did you mean %s?\n", u.name, u.closest)
	}
}

// closest returns the candidate nearest to name by edit distance (the
// first of equals, candidates being sorted).
func closest(name string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		if d := editDistance(name, c); bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes
// (variable names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
