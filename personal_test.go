package saasapi_test

import (
	"encoding/json"
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
