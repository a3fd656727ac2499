package http

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// Responses are encoded into reused buffers: each must be exactly what
// json.Marshal gives plus a newline, in one Write of its Content-Length,
// whatever a buffer held before (a larger body, a failed encoding).
func TestEncodeReusesBuffersWithoutLeaks(t *testing.T) {
	t.Parallel()
	bodies := []any{
		map[string]any{"name": strings.Repeat("x", 5000), "html": "<a&b>"},
		map[string]string{"id": "01J00000000000000000000001"},
		func() {}, // cannot be encoded: 500
		[]int{1, 2, 3},
		map[string]any{"big": strings.Repeat("y", maxPooledBuffer+1)},
		"small",
	}
	for range 3 {
		for i, v := range bodies {
			w := &countingWriter{ResponseRecorder: httptest.NewRecorder()}
			encode(w, http.StatusOK, v)
			want, err := json.Marshal(v)
			status := http.StatusOK
			if err != nil {
				want, status = []byte(`{"detail":"internal server error"}`), http.StatusInternalServerError
			}
			want = append(want, '\n')
			if got := w.Body.String(); got != string(want) || w.Code != status {
				t.Fatalf("body %d: %d %.80q, want %d %.80q", i, w.Code, got, status, want)
			}
			if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(len(want)) || w.writes != 1 {
				t.Fatalf("body %d: Content-Length %s in %d writes, want %d in 1", i, cl, w.writes, len(want))
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("body %d: Content-Type %q", i, ct)
			}
		}
	}
}

type countingWriter struct {
	*httptest.ResponseRecorder
	writes int
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.writes++
	return w.ResponseRecorder.Write(b)
}
