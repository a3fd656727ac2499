// Personal data that events carry: each
// person has a data key of their own, kept wrapped by the key-encryption key
// (SAAS_API_DATA_KEY, never stored in the database) in the mutable
// person_keys table; the fields that the event catalogue marks as personal
// (PersonalFields) are stored sealed with it. Erasing a person
// destroys their key, which makes every sealed value of theirs, in the
// events table and in any backup of it, unreadable (crypto-shredding),
// while the hash chain, which covers the sealed bytes, still verifies.
package saasapi

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// EnvDataKey names the variable holding the key-encryption key.
const EnvDataKey = "SAAS_API_DATA_KEY"

// DataKeySize is the size of every key: AES-256.
const DataKeySize = 32

// sealedPrefix marks a sealed value: version 1, AES-256-GCM, the nonce
// followed by the ciphertext, in unpadded URL-safe base64.
const sealedPrefix = "pd1:"

// ErasedValue is what an export or a view shows for a personal field whose key
// was destroyed.
const ErasedValue = "[erased]"

// checkPlaintext is what the key check value seals; it holds nothing secret.
const checkPlaintext = "saasapi-data-key-check-v1"

// ErrWrongDataKey means the key-encryption key is not the one the database's
// keys were wrapped with.
var ErrWrongDataKey = errors.New(EnvDataKey + " is not the key this database's personal data keys were wrapped with (its key check value does not match): set the key this database was set up with")

// EnvDataKeyPrevious names the variable holding the key-encryption key
// that SAAS_API_DATA_KEY replaces, while the people's keys are re-wrapped
// (saasapi users rewrap-keys).
const EnvDataKeyPrevious = "SAAS_API_DATA_KEY_PREVIOUS"

// DataKeyring holds the key-encryption key, and during a rotation the one
// it replaces.
type DataKeyring struct {
	kek      cipher.AEAD
	id       string
	previous cipher.AEAD // nil unless rotating
}

// ParseDataKEK reads a key-encryption key written as 64 hex digits or as
// base64 of 32 bytes.
func ParseDataKEK(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if k, err := hex.DecodeString(s); err == nil && len(k) == DataKeySize {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == DataKeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%s must be %d random bytes, as 64 hex digits or base64", EnvDataKey, DataKeySize)
}

// NewDataKEK returns a fresh random key, hex-encoded, for SAAS_API_DATA_KEY.
func NewDataKEK() string {
	return hex.EncodeToString(randomBytes(DataKeySize))
}

// NewDataKeyring returns a keyring for a 32-byte key-encryption key.
func NewDataKeyring(kek []byte) (*DataKeyring, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	return &DataKeyring{kek: aead, id: kekID(kek)}, nil
}

// kekID names a key-encryption key without revealing it: the first 8 bytes
// of a SHA-256 over it, in hex.
func kekID(kek []byte) string {
	h := sha256.Sum256(append([]byte("saasapi-kek-id-v1:"), kek...))
	return hex.EncodeToString(h[:8])
}

// ID names the key-encryption key that Wrap uses; person_keys.kek_id
// records it for each wrapped key, so that a rotation knows which keys
// are left.
func (k *DataKeyring) ID() string { return k.id }

// WithPrevious returns a keyring that wraps with k's key and unwraps with
// it or with previous: the keyring of a rotation from previous to k's key.
func (k *DataKeyring) WithPrevious(previous []byte) (*DataKeyring, error) {
	aead, err := newAEAD(previous)
	if err != nil {
		return nil, err
	}
	if kekID(previous) == k.id {
		return nil, fmt.Errorf("%s is the same key as %s", EnvDataKeyPrevious, EnvDataKey)
	}
	return &DataKeyring{kek: k.kek, id: k.id, previous: aead}, nil
}

// Rotating reports whether the keyring also holds a previous key.
func (k *DataKeyring) Rotating() bool { return k.previous != nil }

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != DataKeySize {
		return nil, fmt.Errorf("saasapi: a key has %d bytes, not %d", DataKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("saasapi: no randomness: " + err.Error())
	}
	return b
}

// seal encrypts with a random nonce, returning the nonce and ciphertext.
func seal(aead cipher.AEAD, plaintext, ad []byte) []byte {
	nonce := randomBytes(aead.NonceSize())
	return aead.Seal(nonce, nonce, plaintext, ad)
}

func open(aead cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("saasapi: sealed value too short")
	}
	return aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], ad)
}

// NewDataKey returns a fresh data key for one person.
func NewDataKey() []byte { return randomBytes(DataKeySize) }

// Wrap encrypts a person's data key with the key-encryption key, bound to
// the person's ID.
func (k *DataKeyring) Wrap(userID ID, dataKey []byte) []byte {
	return seal(k.kek, dataKey, []byte("person-key:"+string(userID)))
}

// Unwrap decrypts a person's wrapped data key, with the key-encryption key
// or, during a rotation, the previous one.
func (k *DataKeyring) Unwrap(userID ID, wrapped []byte) ([]byte, error) {
	ad := []byte("person-key:" + string(userID))
	dk, err := open(k.kek, wrapped, ad)
	if err != nil && k.previous != nil {
		dk, err = open(k.previous, wrapped, ad)
	}
	if err != nil {
		return nil, ErrWrongDataKey
	}
	return dk, nil
}

// SealPersonalValue encrypts one personal value of an event with the person's data
// key; the event ID is the associated data, so a value cannot be moved to
// another event unnoticed.
func SealPersonalValue(dataKey []byte, eventID ID, value string) (string, error) {
	aead, err := newAEAD(dataKey)
	if err != nil {
		return "", err
	}
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(seal(aead, []byte(value), []byte(eventID))), nil
}

// IsSealedValue reports whether a stored value is sealed.
func IsSealedValue(value string) bool { return strings.HasPrefix(value, sealedPrefix) }

// OpenPersonalValue decrypts a value sealed by SealValue.
func OpenPersonalValue(dataKey []byte, eventID ID, value string) (string, error) {
	if !IsSealedValue(value) {
		return "", errors.New("saasapi: value is not sealed")
	}
	raw, err := base64.RawURLEncoding.DecodeString(value[len(sealedPrefix):])
	if err != nil {
		return "", fmt.Errorf("saasapi: sealed value: %w", err)
	}
	aead, err := newAEAD(dataKey)
	if err != nil {
		return "", err
	}
	plain, err := open(aead, raw, []byte(eventID))
	if err != nil {
		return "", fmt.Errorf("saasapi: open a value of event %s: %w", eventID, err)
	}
	return string(plain), nil
}

// SealPersonal seals the personal fields of ne's payload with dataKey, in
// place (ne.Data becomes the stored JSON, ne.ID is set if it was not), and
// returns the payload in plain text, for the projections of the same
// transaction. An event without personal fields is left alone (plain nil).
func SealPersonal(dataKey []byte, ne *NewEvent) (plain json.RawMessage, err error) {
	fields := PersonalFields(ne.Type)
	if len(fields) == 0 {
		return nil, nil
	}
	if ne.LedgerType != LedgerUser {
		return nil, fmt.Errorf("saasapi: %s carries personal data outside a user's ledger", ne.Type)
	}
	if dataKey == nil {
		return nil, fmt.Errorf("saasapi: %s carries personal data but the command has no data key", ne.Type)
	}
	if ne.ID == "" {
		ne.ID = NewID()
	}
	if plain, err = json.Marshal(ne.Data); err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", ne.Type, err)
	}
	stored, err := mapFields(plain, fields, func(v string) (string, error) { return SealPersonalValue(dataKey, ne.ID, v) })
	if err != nil {
		return nil, err
	}
	ne.Data = stored
	return plain, nil
}

// OpenPersonal returns e with its personal fields in plain text, opened with
// dataKey; with a nil dataKey (the person was erased) they read ErasedValue.
func OpenPersonal(dataKey []byte, e Event) (Event, error) {
	fields := PersonalFields(e.Type)
	if len(fields) == 0 {
		return e, nil
	}
	payload, err := mapFields(e.Payload, fields, func(v string) (string, error) {
		switch {
		case !IsSealedValue(v):
			return v, nil // stored in plain text before sealing existed
		case dataKey == nil:
			return ErasedValue, nil
		}
		return OpenPersonalValue(dataKey, e.ID, v)
	})
	if err != nil {
		return Event{}, err
	}
	e.Payload = payload
	return e, nil
}

// SealPlainPersonal seals, with dataKey and the event ID as associated
// data, the personal fields of a stored event that are still in plain text
// (as versions before sealing wrote them) and returns the new payload;
// fields already sealed are left as they are. It returns nil when there is
// nothing to seal.
func SealPlainPersonal(dataKey []byte, e Event) (json.RawMessage, error) {
	if !HasPlainPersonal(e) {
		return nil, nil
	}
	return mapFields(e.Payload, PersonalFields(e.Type), func(v string) (string, error) {
		if IsSealedValue(v) {
			return v, nil
		}
		return SealPersonalValue(dataKey, e.ID, v)
	})
}

// HasPlainPersonal reports whether a stored event holds a personal field
// in plain text. A payload that is not a JSON object holds none.
func HasPlainPersonal(e Event) bool {
	fields := PersonalFields(e.Type)
	if len(fields) == 0 {
		return false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(e.Payload, &obj) != nil {
		return false
	}
	for _, name := range fields {
		var v string
		if raw, ok := obj[name]; ok && json.Unmarshal(raw, &v) == nil && !IsSealedValue(v) {
			return true
		}
	}
	return false
}

// SealedValuePrefix starts every sealed value (and no plain one that sealing
// would leave alone), for queries that look for plain values.
const SealedValuePrefix = sealedPrefix

// RedactPersonal returns e with its personal fields replaced by Erased: what
// views show of events that are not the viewer's own.
func RedactPersonal(e Event) (Event, error) {
	if len(PersonalFields(e.Type)) == 0 {
		return e, nil
	}
	return OpenPersonal(nil, e)
}

// mapFields rewrites the named string fields of a JSON object.
func mapFields(payload []byte, fields []string, f func(string) (string, error)) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(payload, &obj); err != nil {
		return nil, fmt.Errorf("saasapi: payload: %w", err)
	}
	for _, name := range fields {
		raw, ok := obj[name]
		if !ok {
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("saasapi: field %s: %w", name, err)
		}
		out, err := f(v)
		if err != nil {
			return nil, err
		}
		if obj[name], err = json.Marshal(out); err != nil {
			return nil, err
		}
	}
	return json.Marshal(obj)
}

// ephemeralKeyring is the keyring of EphemeralDataKeyring.
var ephemeralKeyring = sync.OnceValue(func() *DataKeyring {
	k, err := NewDataKeyring(NewDataKey())
	if err != nil {
		panic(err)
	}
	return k
})

// EphemeralDataKeyring returns a keyring with a random key-encryption key that lives
// as long as the process: for tests, whose databases live no longer.
func EphemeralDataKeyring() *DataKeyring { return ephemeralKeyring() }

// CheckValue returns a fresh key check value: a constant sealed with the
// key-encryption key.
func (k *DataKeyring) CheckValue() []byte {
	return seal(k.kek, []byte(checkPlaintext), []byte("data-key-check"))
}

// FirstCheckValue is the key check value that binds a database that has
// none to this keyring: of its key, or during a rotation of the previous
// one, which the existing person keys are wrapped with.
func (k *DataKeyring) FirstCheckValue() []byte {
	if k.previous != nil {
		return seal(k.previous, []byte(checkPlaintext), []byte("data-key-check"))
	}
	return k.CheckValue()
}

// VerifyCheckValue reports ErrWrongDataKey unless the stored key check value
// was sealed with this keyring's key.
func (k *DataKeyring) VerifyCheckValue(stored []byte) error {
	if !opensCheck(k.kek, stored) {
		return ErrWrongDataKey
	}
	return nil
}

func opensCheck(aead cipher.AEAD, stored []byte) bool {
	plain, err := open(aead, stored, []byte("data-key-check"))
	return err == nil && string(plain) == checkPlaintext
}

// dataKeyError is a refusal of the keys given that says what to do; it is
// an ErrWrongDataKey.
type dataKeyError struct{ msg string }

func (e *dataKeyError) Error() string { return e.msg }

func (e *dataKeyError) Is(target error) bool { return target == ErrWrongDataKey }

// VerifyCheckValues checks the keyring against the database's key check
// value and, while a rotation is under way (saasapi users rewrap-keys), the
// check value of the key it rotates to (next; nil otherwise). Without a
// rotation the keyring's key, or its previous one, must have made the check
// value; during one, the keyring must hold the key rotated to and, as its
// previous key, the key rotated from, since person keys are wrapped with
// either. Every refusal is an ErrWrongDataKey, and says what to set.
func (k *DataKeyring) VerifyCheckValues(stored, next []byte) error {
	curStored := opensCheck(k.kek, stored)
	prevStored := k.previous != nil && opensCheck(k.previous, stored)
	curNext := next != nil && opensCheck(k.kek, next)
	switch {
	case next == nil && (curStored || prevStored), curNext && prevStored:
		return nil
	case curNext:
		return &dataKeyError{"the rotation of the data key to " + EnvDataKey + " is not finished: set " + EnvDataKeyPrevious +
			" to the key before it, and run saasapi users rewrap-keys (docs/runbook.md)"}
	case next != nil && curStored:
		return &dataKeyError{"a rotation of the data key from " + EnvDataKey + " to a new key is under way: set " + EnvDataKey +
			" to the new key and " + EnvDataKeyPrevious + " to this one (docs/runbook.md)"}
	case next != nil && prevStored:
		return &dataKeyError{"a rotation of the data key to another key than " + EnvDataKey + " is under way: set " + EnvDataKey +
			" to the key it rotates to (docs/runbook.md)"}
	}
	return ErrWrongDataKey
}
