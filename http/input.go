package http

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/saasapi/saasapi"
)

// Text from callers is held to saasapi.ValidText (valid UTF-8, no NUL) in
// the few places where it enters: the body decoder (every string of a JSON
// body), readQuery (every query parameter a route reads), the If-Match and
// Idempotency-Key headers, and the path parameters, which must be ULIDs.
// PostgreSQL refuses NUL and invalid UTF-8 with an error of its own; caught
// here, they are a 422 that names the field instead of a 500.

// textMessage is the message of a field error for text that is not
// valid UTF-8 or holds NUL.
const textMessage = "value must be UTF-8 text without NUL characters"

// jsonText reports whether every string (object keys included) in the
// JSON value raw is valid text: raw bytes that are UTF-8, and \u escapes
// that are neither NUL nor half of a surrogate pair, which encoding/json
// would silently turn into U+FFFD. raw must be valid JSON.
func jsonText(raw []byte) bool {
	if !utf8.Valid(raw) {
		return false
	}
	inString := false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case !inString:
			inString = c == '"'
		case c == '"':
			inString = false
		case c == '\\':
			i++
			if i >= len(raw) || raw[i] != 'u' {
				continue
			}
			r, ok := hex4(raw[i+1:])
			switch {
			case !ok || r == 0 || utf16.IsSurrogate(r) && r >= 0xDC00:
				return false
			case utf16.IsSurrogate(r):
				// A high surrogate must be followed by a low one.
				rest := raw[i+5:]
				low, ok := rune(0), len(rest) >= 2 && rest[0] == '\\' && rest[1] == 'u'
				if ok {
					low, ok = hex4(rest[2:])
				}
				if !ok || utf16.DecodeRune(r, low) == utf8.RuneError {
					return false
				}
				i += 6
			}
			i += 4
		}
	}
	return true
}

// hex4 reads the four hex digits of a \u escape.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 32)
	return rune(n), err == nil
}

// fieldName is a body key as it may be echoed in a field error: bounded,
// and only when it is text at all.
func fieldName(key string) string {
	if len(key) > 100 || !saasapi.ValidText(key) {
		return "body"
	}
	return key
}

// readQuery parses the query string of r strictly and returns its values.
// r.URL.Query() silently drops a pair whose percent-encoding is broken,
// which would turn "?status=%zz" into no filter at all; here every
// parameter the route reads (names) must be well encoded, valid UTF-8 and
// free of NUL, or the answer is a 422 that names it. Parameters the route
// does not read are ignored, as before.
func readQuery(r *http.Request, names ...string) (url.Values, error) {
	values := url.Values{}
	var bad map[string]bool
	for pair := range strings.SplitSeq(r.URL.RawQuery, "&") {
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil || key == "" {
			continue // a name no route reads
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil || !saasapi.ValidText(value) {
			if bad == nil {
				bad = map[string]bool{}
			}
			bad[key] = true
			continue
		}
		values.Add(key, value)
	}
	var fields []saasapi.FieldError
	for _, name := range names {
		if bad[name] {
			fields = append(fields, saasapi.FieldError{Field: name, Message: textMessage})
		}
	}
	if len(fields) > 0 {
		return nil, saasapi.Invalid(saasapi.MsgValidation, fields...)
	}
	return values, nil
}

// parseIfMatch parses an If-Match value into the version the caller
// expects. "*" and an empty value impose nothing (nil); anything that is
// not one of our ETags can never match (-1). A value that is not text is
// a 422: it is compared, so it is input like any other.
func parseIfMatch(raw string) (*int64, error) {
	never := int64(-1)
	if !saasapi.ValidText(raw) {
		return &never, saasapi.Invalid(saasapi.MsgValidation, saasapi.FieldError{Field: "If-Match", Message: textMessage})
	}
	raw = strings.TrimSpace(raw)
	if raw == "" || raw == "*" {
		return nil, nil
	}
	// If-Match compares strongly (RFC 9110): a weak tag never matches.
	if v, err := strconv.ParseInt(strings.Trim(raw, `"`), 10, 64); err == nil && v >= 0 && strings.HasPrefix(raw, `"`) {
		return &v, nil
	}
	return &never, nil
}

// checkIfMatch answers a 422 for an If-Match header that is not text, on
// the methods that compare it (PATCH and DELETE); it runs after
// authentication, so an anonymous caller learns nothing new.
func (s *Server) checkIfMatch(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch || r.Method == http.MethodDelete {
			for _, v := range r.Header.Values("If-Match") {
				if _, err := parseIfMatch(v); err != nil {
					s.writeError(w, r, err)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
