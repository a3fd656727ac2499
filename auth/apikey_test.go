package auth_test

import (
	"bytes"
	"crypto/sha256"
	"math"
	"strings"
	"testing"

	"github.com/saasapi/saasapi/auth"
)

const base62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func mint(t *testing.T) (raw, prefix string, hash []byte) {
	t.Helper()
	raw, prefix, hash, err := auth.MintAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	return raw, prefix, hash
}

func TestMintedKeysParse(t *testing.T) {
	t.Parallel()
	for range 200 {
		raw, _, hash := mint(t)
		got, ok := auth.ParseAPIKey(raw)
		if !ok {
			t.Fatalf("ParseAPIKey(%q) rejected a minted key", raw)
		}
		if !bytes.Equal(got, hash) {
			t.Fatalf("ParseAPIKey hash differs from MintAPIKey hash for %q", raw)
		}
		if !auth.LooksLikeAPIKey(raw) {
			t.Fatalf("LooksLikeAPIKey(%q) = false", raw)
		}
	}
}

func TestAPIKeyFormat(t *testing.T) {
	t.Parallel()
	raw, prefix, hash := mint(t)
	if len(raw) != auth.APIKeyLen || auth.APIKeyLen != 55 {
		t.Fatalf("len(%q) = %d, APIKeyLen = %d; want 55", raw, len(raw), auth.APIKeyLen)
	}
	rest, ok := strings.CutPrefix(raw, "sapi_")
	if !ok {
		t.Fatalf("%q lacks the sapi_ prefix", raw)
	}
	random, sum, ok := strings.Cut(rest, "_")
	if !ok || len(sum) != 6 {
		t.Fatalf("%q: want <random>_<6-char checksum>", raw)
	}
	// Every character of the random part is a base62 digit drawn from the
	// CSPRNG, so its length bounds the entropy.
	if bits := float64(len(random)) * math.Log2(62); bits < 256 {
		t.Fatalf("random part %q carries %.1f bits, want >= 256", random, bits)
	}
	for _, c := range random + sum {
		if !strings.ContainsRune(base62, c) {
			t.Fatalf("%q contains non-base62 %q", raw, c)
		}
	}
	if len(prefix) > 16 || !strings.HasPrefix(raw, prefix) || !strings.HasPrefix(prefix, "sapi_") {
		t.Fatalf("prefix %q: want <= 16 chars, starting with sapi_, a prefix of %q", prefix, raw)
	}
	if len(prefix) != auth.APIKeyDisplayLen {
		t.Fatalf("len(prefix) = %d, want APIKeyDisplayLen = %d", len(prefix), auth.APIKeyDisplayLen)
	}
	want := sha256.Sum256([]byte(raw))
	if !bytes.Equal(hash, want[:]) || !bytes.Equal(auth.HashAPIKey(raw), want[:]) {
		t.Fatal("hash is not SHA-256 of the raw key")
	}
}

func TestAPIKeysUnique(t *testing.T) {
	t.Parallel()
	const n = 2000
	raws := make(map[string]bool, n)
	prefixes := make(map[string]bool, n)
	for range n {
		raw, prefix, _ := mint(t)
		if raws[raw] {
			t.Fatalf("duplicate key %q", raw)
		}
		raws[raw] = true
		prefixes[prefix] = true
	}
	// 48-bit display prefixes should not collide in a few thousand keys.
	if len(prefixes) != n {
		t.Fatalf("%d distinct prefixes among %d keys", len(prefixes), n)
	}
}

// Every single-character substitution, anywhere after the prefix, must be
// caught: CRC32 detects all errors confined to 32 consecutive bits.
func TestAPIKeyTypoFailsChecksum(t *testing.T) {
	t.Parallel()
	raw, _, _ := mint(t)
	start := len(auth.APIKeyPrefix)
	for i := start; i < len(raw); i++ {
		if raw[i] == '_' {
			continue
		}
		for _, c := range []byte{'0', 'z', 'Z', raw[i] ^ 0x20} {
			if c == raw[i] || !strings.ContainsRune(base62, rune(c)) {
				continue
			}
			typo := raw[:i] + string(c) + raw[i+1:]
			if _, ok := auth.ParseAPIKey(typo); ok {
				t.Fatalf("ParseAPIKey accepted %q (typo at %d of %q)", typo, i, raw)
			}
		}
	}
	// Two adjacent characters swapped.
	for i := start; i+1 < len(raw); i++ {
		if raw[i] == raw[i+1] || raw[i] == '_' || raw[i+1] == '_' {
			continue
		}
		swapped := raw[:i] + string(raw[i+1]) + string(raw[i]) + raw[i+2:]
		if _, ok := auth.ParseAPIKey(swapped); ok {
			t.Fatalf("ParseAPIKey accepted %q (swap at %d of %q)", swapped, i, raw)
		}
	}
}

func TestParseAPIKeyRejects(t *testing.T) {
	t.Parallel()
	raw, _, _ := mint(t)
	body := strings.TrimPrefix(raw, "sapi_")
	cases := map[string]string{
		"empty":              "",
		"prefix only":        "sapi_",
		"wrong prefix":       "sk_x_" + body,
		"upper-case prefix":  "SAPI_" + body,
		"no prefix":          body,
		"truncated":          raw[:len(raw)-1],
		"extra char":         raw + "a",
		"leading space":      " " + raw[:len(raw)-1],
		"separator moved":    "sapi_" + body[:42] + "_" + body[42:43] + body[44:],
		"no separator":       "sapi_" + strings.Replace(body, "_", "a", 1),
		"non-base62 random":  "sapi_" + "-" + body[1:],
		"non-base62 sum":     raw[:len(raw)-1] + "+",
		"JWT":                "eyJhbGciOiJIUzI1NiJ9.e30.sig",
		"other key's sum":    raw[:len(raw)-6] + otherChecksum(t, raw),
		"two separators":     "sapi_" + body[:10] + "_" + body[11:],
		"unicode look-alike": "sapi_" + "а" + body[2:], // Cyrillic a, 2 bytes
	}
	for name, s := range cases {
		if _, ok := auth.ParseAPIKey(s); ok {
			t.Errorf("%s: ParseAPIKey(%q) accepted", name, s)
		}
	}
}

func otherChecksum(t *testing.T, raw string) string {
	t.Helper()
	for {
		other, _, _ := mint(t)
		if other[len(other)-6:] != raw[len(raw)-6:] {
			return other[len(other)-6:]
		}
	}
}

func TestLooksLikeAPIKey(t *testing.T) {
	t.Parallel()
	raw, _, _ := mint(t)
	tok, _, err := newTestIssuer(testNow).Issue(testUser)
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{
		raw:         true,
		"sapi_typo": true, // routed to the key path, then rejected there
		tok:         false,
		"":          false,
		"SAPI_x":    false,
	} {
		if got := auth.LooksLikeAPIKey(s); got != want {
			t.Errorf("LooksLikeAPIKey(%q) = %v, want %v", s, got, want)
		}
	}
}
