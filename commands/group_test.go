package commands

import (
	"fmt"
	"slices"
	"testing"

	"github.com/saasapi/saasapi"
)

// TestTakeBoundsTheGroupAndSeparatesKeys: a group takes at most maxGroup
// waiting commands, in order, and never two with one idempotency scope;
// the rest wait for the next group, in their order.
func TestTakeBoundsTheGroupAndSeparatesKeys(t *testing.T) {
	org := saasapi.NewID()
	alice, bob := saasapi.UserPrincipal(saasapi.NewID()), saasapi.UserPrincipal(saasapi.NewID())
	idem := func(key string) *Idempotency {
		return &Idempotency{Key: key, Method: "POST", Path: "/orgs/" + string(org) + "/projects"}
	}
	waiting := func(p saasapi.Principal, i *Idempotency) *member {
		return &member{c: command{meta: Meta{Principal: p}, ledger: org, idem: i, idemOrg: org}}
	}
	q := &ledgerGroups{}
	for i := range maxGroup + 10 {
		var key *Idempotency
		if i%10 == 3 {
			key = idem(fmt.Sprintf("k%d", i))
		}
		q.waiting = append(q.waiting, waiting(alice, key))
	}
	// The same scope as the fourth; another principal's same key.
	again, others := waiting(alice, idem("k3")), waiting(bob, idem("k3"))
	q.waiting = append(q.waiting[:5], append([]*member{again, others}, q.waiting[5:]...)...)
	all := append([]*member(nil), q.waiting...)

	group := q.take()
	if len(group) != maxGroup {
		t.Fatalf("took %d, want %d", len(group), maxGroup)
	}
	for i, m := range group {
		if m == again {
			t.Fatal("a second use of an idempotency scope joined the group of the first")
		}
		if i > 0 && slices.Index(all, m) < slices.Index(all, group[i-1]) {
			t.Fatal("the group is not in arrival order")
		}
	}
	if slices.Index(group, others) < 0 {
		t.Error("another principal's use of the same key was left out")
	}
	if len(q.waiting) != len(all)-maxGroup || q.waiting[0] != again {
		t.Fatalf("%d left waiting, the first %p; want %d, the second use of k3 first", len(q.waiting), q.waiting[0], len(all)-maxGroup)
	}
	next := q.take()
	if len(next) != len(all)-maxGroup || next[0] != again {
		t.Fatalf("the next group took %d, want the %d left", len(next), len(all)-maxGroup)
	}
}

// TestTakeLeavesLedgersInFlight: a group takes no command of a ledger
// that a transaction in flight holds, and keeps the others' order; its
// ledgers are locked in sorted order, each once.
func TestTakeLeavesLedgersInFlight(t *testing.T) {
	busy, a, b := saasapi.ID("01B"), saasapi.ID("01C"), saasapi.ID("01A")
	on := func(l saasapi.ID) *member { return &member{c: command{ledger: l}} }
	q := &ledgerGroups{slots: 2}
	q.start([]saasapi.ID{busy})
	q.waiting = []*member{on(a), on(busy), on(b), on(a), on(busy)}
	want := []*member{q.waiting[0], q.waiting[2], q.waiting[3]}
	held := []*member{q.waiting[1], q.waiting[4]}
	group := q.take()
	if !slices.Equal(group, want) {
		t.Fatalf("took %v, want the commands of the free ledgers in order", group)
	}
	if !slices.Equal(q.waiting, held) {
		t.Fatalf("left %v waiting, want the busy ledger's two", q.waiting)
	}
	if got := groupLedgers(group); !slices.Equal(got, []saasapi.ID{b, a}) {
		t.Errorf("groupLedgers = %v, want %v", got, []saasapi.ID{b, a})
	}
}
