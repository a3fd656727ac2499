package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"math/big"
	"strings"
)

// API key layout:
//
//	sapi_<random>_<checksum>
//
// random is 32 bytes from crypto/rand written as exactly 43 base62 digits
// (62^43 > 2^256, so every 256-bit value fits), and checksum is the IEEE
// CRC32 of the random text as exactly 6 base62 digits (62^6 > 2^32). A raw
// key is therefore always APIKeyLen = 55 characters. The base62 alphabet is
// 0-9a-zA-Z, so a key is one "word" for double-click selection and needs no
// escaping in headers, URLs or shells.
const (
	// APIKeyPrefix starts every raw API key. Secret scanners match it, and
	// the HTTP layer uses it to tell API keys from JWTs.
	APIKeyPrefix = "sapi_"

	// APIKeyLen is the length of every raw API key.
	APIKeyLen = len(APIKeyPrefix) + apiKeyRandomLen + 1 + apiKeyChecksumLen

	// APIKeyDisplayLen is the length of the non-secret prefix MintAPIKey
	// returns for storage and display (key_prefix).
	APIKeyDisplayLen = len(APIKeyPrefix) + apiKeyDisplayRandom

	apiKeyRandomBytes   = 32
	apiKeyRandomLen     = 43
	apiKeyChecksumLen   = 6
	apiKeyDisplayRandom = 8 // ~48 bits shown, ~208 bits stay secret
	base62Alphabet      = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

// MintAPIKey creates a new API key. raw is shown to the user once and never
// stored. prefix (APIKeyPrefix plus the first 8 random characters, 13 in all)
// is not secret: it is stored and displayed as key_prefix so users can tell
// their keys apart. hash is what the database stores and looks keys up by.
func MintAPIKey() (raw, prefix string, hash []byte, err error) {
	b := make([]byte, apiKeyRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", nil, fmt.Errorf("auth: read API key entropy: %w", err)
	}
	random := base62(new(big.Int).SetBytes(b), apiKeyRandomLen)
	raw = APIKeyPrefix + random + "_" + apiKeyChecksum(random)
	return raw, raw[:APIKeyDisplayLen], HashAPIKey(raw), nil
}

// ParseAPIKey checks that raw is well formed (prefix, length, alphabet and
// checksum) and returns the hash to look the key up by. ok is false for
// anything that cannot be a key we minted, so typos and truncated pastes are
// rejected without touching the database.
func ParseAPIKey(raw string) (hash []byte, ok bool) {
	if len(raw) != APIKeyLen || !LooksLikeAPIKey(raw) {
		return nil, false
	}
	random, sum, found := strings.Cut(raw[len(APIKeyPrefix):], "_")
	if !found || len(random) != apiKeyRandomLen || len(sum) != apiKeyChecksumLen ||
		!isBase62(random) || !isBase62(sum) {
		return nil, false
	}
	// The checksum is public (anyone can compute it), so a plain comparison
	// leaks nothing an attacker could not work out alone.
	if apiKeyChecksum(random) != sum {
		return nil, false
	}
	return HashAPIKey(raw), true
}

// LooksLikeAPIKey reports whether s has the API key prefix, so a bearer
// credential can be routed to API key or JWT verification. JWTs start with
// "eyJ" and can never match.
func LooksLikeAPIKey(s string) bool { return strings.HasPrefix(s, APIKeyPrefix) }

// HashAPIKey returns the SHA-256 of the raw key. A fast hash is right here,
// unlike for passwords: a key carries 256 bits of entropy, so a leaked hash
// cannot be brute-forced however cheap each guess is, and Argon2's deliberate
// slowness would only add latency to every API request. Being deterministic
// and unsalted also lets the database index the hash for lookup.
func HashAPIKey(raw string) []byte {
	sum := sha256.Sum256([]byte(raw))
	return sum[:]
}

func apiKeyChecksum(random string) string {
	return base62(new(big.Int).SetUint64(uint64(crc32.ChecksumIEEE([]byte(random)))), apiKeyChecksumLen)
}

// base62 writes n in base62Alphabet, left-padded with zeros to width so keys
// have a fixed length whatever the random value.
func base62(n *big.Int, width int) string {
	s := n.Text(62) // math/big uses the same 0-9a-zA-Z digit order
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(base62Alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}
