package saasapi_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
)

func TestSealedValueIsBoundToKeyAndEvent(t *testing.T) {
	t.Parallel()
	dk, other := saasapi.NewDataKey(), saasapi.NewDataKey()
	ev := saasapi.NewID()
	a, err := saasapi.SealPersonalValue(dk, ev, "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := saasapi.SealPersonalValue(dk, ev, "ada@example.com")
	if a == b || strings.Contains(a, "ada") {
		t.Fatalf("sealing is not randomised or leaks the value: %q %q", a, b)
	}
	if got, err := saasapi.OpenPersonalValue(dk, ev, a); err != nil || got != "ada@example.com" {
		t.Fatalf("open = %q, %v", got, err)
	}
	if _, err := saasapi.OpenPersonalValue(other, ev, a); err == nil {
		t.Fatal("opened with another person's key")
	}
	if _, err := saasapi.OpenPersonalValue(dk, saasapi.NewID(), a); err == nil {
		t.Fatal("opened as another event's value (associated data ignored)")
	}
}

func TestEventFieldsSealedAndErased(t *testing.T) {
	t.Parallel()
	dk := saasapi.NewDataKey()
	ne := saasapi.NewEvent{LedgerType: saasapi.LedgerUser, LedgerID: saasapi.NewID(), Type: saasapi.EventUserRegistered,
		Data: saasapi.UserRegistered{Email: "bo@example.com", DisplayName: "Bo Quist"}}
	plain, err := saasapi.SealPersonal(dk, &ne)
	if err != nil {
		t.Fatal(err)
	}
	stored := string(ne.Data.(json.RawMessage))
	if strings.Contains(stored, "bo@example.com") || strings.Contains(stored, "Bo Quist") || !strings.Contains(string(plain), "bo@example.com") {
		t.Fatalf("stored %s, plain %s", stored, plain)
	}
	e := saasapi.Event{ID: ne.ID, LedgerID: ne.LedgerID, Type: ne.Type, Payload: []byte(stored)}
	opened, err := saasapi.OpenPersonal(dk, e)
	if err != nil || !strings.Contains(string(opened.Payload), `"email":"bo@example.com"`) {
		t.Fatalf("opened %s, %v", opened.Payload, err)
	}
	erased, err := saasapi.OpenPersonal(nil, e)
	if err != nil || string(erased.Payload) != `{"display_name":"[erased]","email":"[erased]"}` {
		t.Fatalf("erased %s, %v", erased.Payload, err)
	}
	ne.LedgerType = saasapi.LedgerOrganisation
	ne.Data = saasapi.UserRegistered{Email: "x@example.com"}
	if _, err := saasapi.SealPersonal(dk, &ne); err == nil {
		t.Fatal("personal data accepted outside a user's ledger")
	}
}

func TestParseDataKEK(t *testing.T) {
	t.Parallel()
	hexKey := saasapi.NewDataKEK()
	if k, err := saasapi.ParseDataKEK(hexKey); err != nil || len(k) != saasapi.DataKeySize {
		t.Fatalf("hex key: %v", err)
	}
	for _, bad := range []string{"", "short", hexKey[:62], hexKey + "00"} {
		if _, err := saasapi.ParseDataKEK(bad); err == nil || !strings.Contains(err.Error(), saasapi.EnvDataKey) {
			t.Errorf("ParseKey(%q) = %v, want an error naming %s", bad, err, saasapi.EnvDataKey)
		}
	}
}

func FuzzParseDataKEK(f *testing.F) {
	f.Add(saasapi.NewDataKEK())
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := saasapi.ParseDataKEK(s)
		if err == nil && len(k) != saasapi.DataKeySize {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
	})
}

func FuzzOpenPersonalValue(f *testing.F) {
	dk := saasapi.NewDataKey()
	ev := saasapi.NewID()
	v, _ := saasapi.SealPersonalValue(dk, ev, "x")
	f.Add(v)
	f.Add("pd1:")
	f.Fuzz(func(t *testing.T, s string) {
		// Only an authentic value opens, and to what was sealed.
		if got, err := saasapi.OpenPersonalValue(dk, ev, s); err == nil && got != "x" {
			t.Fatalf("opened %q as %q", s, got)
		}
	})
}

// TestKeyringRotation: a keyring with a previous key wraps with the new key
// and unwraps with both; the check values accept exactly the keyrings that
// can read every person key in each state of a rotation.
func TestKeyringRotation(t *testing.T) {
	t.Parallel()
	mk := func(kek []byte) *saasapi.DataKeyring {
		k, err := saasapi.NewDataKeyring(kek)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	oldKEK, newKEK, otherKEK := saasapi.NewDataKey(), saasapi.NewDataKey(), saasapi.NewDataKey()
	oldK, newK, otherK := mk(oldKEK), mk(newKEK), mk(otherKEK)
	both, err := newK.WithPrevious(oldKEK)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newK.WithPrevious(newKEK); err == nil {
		t.Error("a previous key equal to the key was accepted")
	}
	if both.ID() != newK.ID() || oldK.ID() == newK.ID() || len(newK.ID()) != 16 {
		t.Errorf("key IDs: old %s, new %s, rotating %s", oldK.ID(), newK.ID(), both.ID())
	}
	user := saasapi.NewID()
	dk := saasapi.NewDataKey()
	for name, wrapped := range map[string][]byte{"old": oldK.Wrap(user, dk), "new": both.Wrap(user, dk)} {
		if got, err := both.Unwrap(user, wrapped); err != nil || string(got) != string(dk) {
			t.Errorf("the rotating keyring unwraps a key wrapped with the %s key: %v", name, err)
		}
	}
	if _, err := oldK.Unwrap(user, both.Wrap(user, dk)); err == nil {
		t.Error("the rotating keyring wraps with the previous key")
	}

	oldCheck, newCheck := oldK.CheckValue(), newK.CheckValue()
	for _, c := range []struct {
		name        string
		k           *saasapi.DataKeyring
		stored, nxt []byte
		ok          bool
	}{
		{"old key, no rotation", oldK, oldCheck, nil, true},
		{"both keys, rotation not begun", both, oldCheck, nil, true},
		{"both keys, rotation under way", both, oldCheck, newCheck, true},
		{"old key, rotation under way", oldK, oldCheck, newCheck, false},
		{"new key alone, rotation under way", newK, oldCheck, newCheck, false},
		{"new key, rotation finished", newK, newCheck, nil, true},
		{"both keys, rotation finished", both, newCheck, nil, true},
		{"new key alone, no rotation", newK, oldCheck, nil, false},
		{"another key", otherK, oldCheck, nil, false},
		{"both keys, rotation to another key", both, oldCheck, otherK.CheckValue(), false},
	} {
		err := c.k.VerifyCheckValues(c.stored, c.nxt)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, saasapi.ErrWrongDataKey)) {
			t.Errorf("%s: %v, want ok %v (refusals are ErrWrongDataKey)", c.name, err, c.ok)
		}
	}
	if both.VerifyCheckValue(both.FirstCheckValue()) == nil || oldK.VerifyCheckValue(both.FirstCheckValue()) != nil {
		t.Error("a rotating keyring binds a new database to its new key, not to the key its person keys are wrapped with")
	}
}
