package saasapi

import (
	"crypto/rand"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// ID identifies users, organisations, memberships, projects, API keys and
// events. It is a ULID in its 26-character Crockford base-32 form, so IDs sort
// by creation time and can be stored and compared as plain text.
type ID string

var (
	entropyMu sync.Mutex
	entropy   = ulid.Monotonic(rand.Reader, 0)
)

// NewID returns a fresh ULID. IDs made within one millisecond by this process
// are strictly increasing.
func NewID() ID {
	entropyMu.Lock()
	defer entropyMu.Unlock()
	return ID(ulid.MustNew(ulid.Timestamp(time.Now()), entropy).String())
}

// ParseID accepts a 26-character ULID in any letter case and returns it in
// canonical upper case.
func ParseID(s string) (ID, error) {
	if len(s) != ulid.EncodedSize {
		return "", Errorf(EINVALID, "invalid ID")
	}
	u, err := ulid.ParseStrict(strings.ToUpper(s))
	if err != nil {
		return "", Errorf(EINVALID, "invalid ID")
	}
	return ID(u.String()), nil
}

// String returns the ID's text.
func (id ID) String() string { return string(id) }

// Ptr returns a pointer to the ID, or nil for the zero ID; handy for nullable
// columns and JSON fields.
func (id ID) Ptr() *ID {
	if id == "" {
		return nil
	}
	return &id
}
