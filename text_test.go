package saasapi_test

import (
	"testing"

	"github.com/saasapi/saasapi"
)

func TestValidText(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"":              true,
		"plain":         true,
		"ren\u00e9 \n":  true,
		"nul\x00inside": false,
		"bad\xffbyte":   false,
		"\xed\xa0\x80":  false, // an encoded surrogate is not UTF-8
	} {
		if got := saasapi.ValidText(s); got != want {
			t.Errorf("ValidText(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestIdentityText(t *testing.T) {
	t.Parallel()
	composed, ok := saasapi.IdentityText("rene\u0301")
	if !ok || composed != "ren\u00e9" {
		t.Fatalf("IdentityText(rene + combining acute) = %q, %v; want the composed ren\u00e9, true", composed, ok)
	}
	if again, _ := saasapi.IdentityText(composed); again != composed {
		t.Fatalf("IdentityText is not idempotent: %q -> %q", composed, again)
	}
	for _, s := range []string{
		"zero\u200bwidth",  // ZERO WIDTH SPACE, Cf
		"\u202eevil",       // RIGHT-TO-LEFT OVERRIDE, Cf
		"iso\u2066late",    // LEFT-TO-RIGHT ISOLATE, Cf
		"soft\u00adhyphen", // SOFT HYPHEN, Cf
		"bom\ufeff",        // ZERO WIDTH NO-BREAK SPACE, Cf
		"line\nbreak",      // Cc
		"tab\there",        // Cc
		"nul\x00",          // Cc
		"del\x7f",          // Cc
		"c1\u0085",         // NEXT LINE, Cc
		"bad\xff",          // not UTF-8
	} {
		if got, ok := saasapi.IdentityText(s); ok {
			t.Errorf("IdentityText(%q) = %q, true; want it refused", s, got)
		}
	}
	for _, s := range []string{"Alice", "Zoë Ødegaard", "日本語", "emoji 🙂", "a b"} {
		if _, ok := saasapi.IdentityText(s); !ok {
			t.Errorf("IdentityText(%q) refused a readable name", s)
		}
	}
}
