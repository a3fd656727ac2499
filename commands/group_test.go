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
	q := &ledgerQueue{}
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
