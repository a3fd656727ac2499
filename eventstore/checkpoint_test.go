package eventstore_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func newSigner(t testing.TB, origin string) *eventstore.LedgerSigner {
	t.Helper()
	key, err := eventstore.GenerateSigningKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := eventstore.NewLedgerSigner(key, origin)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckpointFormat(t *testing.T) {
	t.Parallel()
	s := newSigner(t, "example.com/saasapi")
	root := tlog.RecordHash([]byte("x"))
	ledger := saasapi.ID("01M00000000000000000000000")
	cp := eventstore.Checkpoint{Origin: s.Origin(saasapi.LedgerOrganisation, ledger), Size: 57, Root: root}
	signed, err := s.Sign(cp)
	if err != nil {
		t.Fatal(err)
	}
	body, sig, ok := strings.Cut(string(signed), "\n\n")
	if want := "example.com/saasapi/orgs/" + string(ledger) + "\n57\n" + root.String(); !ok || body != want {
		t.Fatalf("checkpoint body %q, want %q", body, want)
	}
	if !strings.HasPrefix(sig, "— example.com/saasapi ") {
		t.Errorf("signature line %q", sig)
	}
	// The second implementation reads it, with the verifier key the
	// service publishes.
	v, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, _, err := log.ParseCheckpoint(signed, cp.Origin, v)
	if err != nil || parsed.Size != 57 || !bytes.Equal(parsed.Hash, root[:]) {
		t.Fatalf("transparency-dev parses %+v, %v", parsed, err)
	}
	got, err := eventstore.OpenCheckpoint(signed, s.VerifierKey())
	if err != nil || got != cp {
		t.Fatalf("OpenCheckpoint = %+v, %v; want %+v", got, err, cp)
	}
	if u := s.Origin(saasapi.LedgerUser, ledger); u != "example.com/saasapi/users/"+string(ledger) {
		t.Errorf("user ledger origin %q", u)
	}
	// Another key, or an edited body, does not verify.
	if _, err := eventstore.OpenCheckpoint(signed, newSigner(t, "example.com/saasapi").VerifierKey()); err == nil {
		t.Error("a checkpoint verified with another key")
	}
	edited := bytes.Replace(signed, []byte("\n57\n"), []byte("\n56\n"), 1)
	if _, err := eventstore.OpenCheckpoint(edited, s.VerifierKey()); err == nil {
		t.Error("a checkpoint edited after signing verified")
	}
	for _, bad := range []string{"", "has space", "a+b", "tab\t", "nl\n"} {
		if _, err := eventstore.NewLedgerSigner("PRIVATE+KEY+x+00000000+AAAA", bad); err == nil {
			t.Errorf("origin %q accepted", bad)
		}
	}
	if eventstore.DefaultOrigin("Multi Tenant+API") != "multi-tenant-api" {
		t.Errorf("DefaultOrigin = %q", eventstore.DefaultOrigin("Multi Tenant+API"))
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add("example.com/log\n57\nqh0SIBgOGSlk1CMvKqXdUQsUdNwNXGpETaGmJ6ssFzM=\n")
	f.Add("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nextension\n")
	f.Add("o\n-1\n\n")
	f.Add("o\n01\nAAAA\n")
	f.Fuzz(func(t *testing.T, text string) {
		cp, err := eventstore.ParseCheckpoint(text)
		if err != nil {
			return
		}
		// What parses formats back to the same three lines.
		if !strings.HasPrefix(text, cp.Text()) || cp.Size < 0 || cp.Origin == "" {
			t.Fatalf("%q parsed as %+v, which formats as %q", text, cp, cp.Text())
		}
	})
}

func FuzzOpenCheckpoint(f *testing.F) {
	s := newSigner(f, "fuzz")
	signed, err := s.Sign(eventstore.Checkpoint{Origin: "fuzz/orgs/x", Size: 3, Root: tlog.RecordHash(nil)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte("fuzz/orgs/x\n3\n\n— fuzz AAAA\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		cp, err := eventstore.OpenCheckpoint(msg, s.VerifierKey())
		if err == nil && !bytes.HasPrefix(msg, []byte(cp.Text())) {
			t.Fatalf("%q opened as %+v", msg, cp)
		}
	})
}

// TestSignCheckpointAcrossKeyRotation: a last checkpoint of another key
// (after a rotation) cannot be checked and is replaced, with a warning; one
// of the same key that does not verify is an integrity failure.
func TestSignCheckpointAcrossKeyRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testdb.New(t)
	ledger := saasapi.NewID()
	appendProjectEvents(ctx, t, db, ledger, true, saasapi.NewID(), 1, 3)
	old, cur := newSigner(t, "example.com/log"), newSigner(t, "example.com/log")
	if _, err := old.SignCheckpoint(ctx, db.Pool, ledger); err != nil {
		t.Fatal(err)
	}
	var warned []saasapi.ID
	cur.OnOtherKey = func(id saasapi.ID) { warned = append(warned, id) }
	signed, err := cur.SignCheckpoint(ctx, db.Pool, ledger)
	if err != nil || len(warned) != 1 || warned[0] != ledger {
		t.Fatalf("after a rotation: %v, warned %v", err, warned)
	}
	if _, err := eventstore.OpenCheckpoint(signed, cur.VerifierKey()); err != nil {
		t.Fatal(err)
	}
	// The new key's checkpoint is now the last one, and is checked.
	appendProjectEvents(ctx, t, db, ledger, false, saasapi.NewID(), 1, 1)
	if _, err := cur.SignCheckpoint(ctx, db.Pool, ledger); err != nil || len(warned) != 1 {
		t.Fatalf("the next checkpoint: %v, warned %v", err, warned)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE ledger_checkpoints SET note = replace(note, E'\n4\n', E'\n3\n') WHERE ledger_id = $1`, ledger); err != nil {
		t.Fatal(err)
	}
	if _, err := cur.SignCheckpoint(ctx, db.Pool, ledger); !errors.Is(err, eventstore.ErrLedgerIntegrity) {
		t.Fatalf("a last checkpoint of the current key edited after signing: %v, want ErrLedgerIntegrity", err)
	}
}
