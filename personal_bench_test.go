package saasapi_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/saasapi/saasapi"
)

// BenchmarkPersonalData measures what sealing adds to a user.registered
// payload: encoding it in plain text (what versions before sealing stored),
// sealing its two personal fields (SealPersonal: encode, two AES-256-GCM
// seals with fresh nonces, re-encode), opening them (OpenPersonal, as a
// rebuild and GET /me/audit-events do), and wrapping and unwrapping a
// person's data key. docs/performance.md has the figures.
func BenchmarkPersonalData(b *testing.B) {
	keys := saasapi.EphemeralDataKeyring()
	user := saasapi.NewID()
	dataKey := saasapi.NewDataKey()
	payload := saasapi.UserRegistered{Email: "ada.lovelace@example.com", DisplayName: "Ada Lovelace"}
	newEvent := func() saasapi.NewEvent {
		return saasapi.NewEvent{ID: saasapi.NewID(), LedgerID: user, LedgerType: saasapi.LedgerUser,
			Type: saasapi.EventUserRegistered, OccurredAt: time.Now(), Data: payload}
	}
	b.Run("encode-plain", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("seal", func(b *testing.B) {
		for b.Loop() {
			ne := newEvent()
			if _, err := saasapi.SealPersonal(dataKey, &ne); err != nil {
				b.Fatal(err)
			}
		}
	})
	ne := newEvent()
	if _, err := saasapi.SealPersonal(dataKey, &ne); err != nil {
		b.Fatal(err)
	}
	sealed := saasapi.Event{ID: ne.ID, LedgerID: user, LedgerType: saasapi.LedgerUser, Type: ne.Type, Payload: ne.Data.(json.RawMessage)}
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			if _, err := saasapi.OpenPersonal(dataKey, sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wrap-key", func(b *testing.B) {
		for b.Loop() {
			keys.Wrap(user, dataKey)
		}
	})
	wrapped := keys.Wrap(user, dataKey)
	b.Run("unwrap-key", func(b *testing.B) {
		for b.Loop() {
			if _, err := keys.Unwrap(user, wrapped); err != nil {
				b.Fatal(err)
			}
		}
	})
}
