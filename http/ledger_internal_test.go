package http

import (
	"net/http/httptest"
	"net/url"
	"testing"
)

func FuzzProofParams(f *testing.F) {
	f.Add("sequence=1&tree_size=2")
	f.Add("sequence=0&tree_size=x")
	f.Add("sequence=99999999999999999999&tree_size=-1")
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest("GET", "/x?"+url.PathEscape(query), nil)
		r.URL.RawQuery = query
		a, b, err := proofParams(r, "sequence", "tree_size")
		if err == nil && (a < 1 || b < 1) {
			t.Fatalf("%q gave %d, %d", query, a, b)
		}
	})
}
