package saasapi

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ValidText reports whether s is text the service can store and compare:
// valid UTF-8 without NUL. PostgreSQL refuses both in text columns, so
// every string a caller sends is held to this before it goes further.
func ValidText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// IdentityText normalises a name that people read and compare (an email
// address, a display name, an organisation, project or API key name): it
// returns s in Unicode NFC, so that "rene\u0301" and "ren\u00e9" are one
// spelling, and reports false when s is not valid UTF-8 or holds a control
// or format character (Unicode Cc or Cf: line breaks, zero-width spaces,
// bidirectional overrides such as U+202E), which would let two names that
// look alike differ, or one name display as another.
func IdentityText(s string) (string, bool) {
	if !utf8.ValidString(s) {
		return "", false
	}
	s = norm.NFC.String(s)
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf) {
			return "", false
		}
	}
	return s, true
}
