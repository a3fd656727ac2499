package main

import (
	"io"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
)

func FuzzVerifyExport(f *testing.F) {
	ledger := saasapi.ID("01M00000000000000000000000")
	f.Add(`{"id":"01M00000000000000000000001","organisation_id":"01M00000000000000000000000","sequence":1,"hash":"` +
		strings.Repeat("00", 32) + `","prev_hash":"` + strings.Repeat("00", 32) + `","metadata":{},"created_at":"2026-01-01T00:00:00Z"}` + "\n")
	f.Add("{}\n{}\n")
	f.Add("not json\n")
	f.Fuzz(func(t *testing.T, export string) {
		var tree eventstore.LeafRoot
		root, _ := tree.Root()
		// Nothing random verifies against a checkpoint of one event, and
		// nothing panics.
		cp := eventstore.Checkpoint{Origin: "fuzz/orgs/" + string(ledger), Size: 1, Root: root}
		if err := verifyExport(strings.NewReader(export), cp, ledger, io.Discard); err == nil {
			t.Fatalf("%q verified against a checkpoint of the empty root", export)
		}
	})
}

func FuzzPinFlag(f *testing.F) {
	f.Add("57:" + strings.Repeat("ab", 32))
	f.Add("0:00")
	f.Add(":")
	f.Fuzz(func(t *testing.T, v string) {
		var p pinFlag
		if err := p.Set(v); err == nil && (p.seq < 1 || len(p.hash) != eventstore.HashSize || !p.set) {
			t.Fatalf("%q accepted as %+v", v, p)
		}
	})
}

func FuzzLedgerOfOrigin(f *testing.F) {
	f.Add("example.com/log/orgs/01M00000000000000000000000")
	f.Add("/users/01M00000000000000000000000")
	f.Add("orgs/x")
	f.Fuzz(func(t *testing.T, origin string) {
		id, err := ledgerOfOrigin(origin)
		if err == nil && !strings.HasSuffix(strings.ToUpper(origin), string(id)) {
			t.Fatalf("%q gave ledger %q", origin, id)
		}
	})
}
