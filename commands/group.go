package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// Group commit (docs/adr/0009-one-write-pipeline.md). The commands of one
// ledger are serial: each holds the ledger lock from its first round trip
// to its COMMIT, WAL flush included; and every transaction pays its own
// BEGIN, COMMIT and WAL flush. A shared command runs at once when one of
// the process's write slots is free and nothing of its ledger is in
// flight; otherwise it waits here instead of in PostgreSQL's lock queue.
// When a transaction ends, the first waiting command whose ledger is free
// leads the next group: it takes up to maxGroup waiting commands of free
// ledgers, of one organisation or several, and runs them in one
// transaction of the same two round trips (one statement locking their
// ledgers in ID order, every member's gate and idempotency claim; then
// every member's decision in order, its events appended at the head its
// ledger's previous member left, and one COMMIT for them all).
//
// A group commits whole or not at all, so a member that the first batch
// refuses (its gate, a replay or a conflict of its idempotency key), whose
// decision fails, or a second batch that PostgreSQL refuses, ends the
// group's transaction with a ROLLBACK and sends its members through the
// single path, each in its own request's goroutine and context, where each
// gets exactly its own outcome.

// maxGroup bounds the commands one transaction carries.
const maxGroup = 64

// groupTimeout bounds the transaction of a group, which no member's
// request cancels: a member that goes away must not roll back the others.
const groupTimeout = 30 * time.Second

// ledgerGroups schedules the shared commands of this process: at most
// slots transactions of them are in flight at once, no two on the same
// ledger; a command that finds no free slot, or its ledger in flight,
// waits, and when a transaction ends the waiting commands whose ledgers
// are free go out together in the next ones.
type ledgerGroups struct {
	mu       sync.Mutex
	slots    int
	running  int
	inFlight map[saasapi.ID]bool
	waiting  []*member
}

// member is a waiting command: lead hands it the group it is to run,
// done its result when another member led.
type member struct {
	ctx  context.Context
	c    command
	lead chan []*member
	done chan memberResult
}

// memberResult is a member's outcome from its group; alone means the
// group did not commit it and the member runs through the single path.
type memberResult struct {
	recorded []saasapi.Event
	out      Outcome
	err      error
	alone    bool
}

// groupable is true when c may share a transaction: it says so, and it is
// gated on an existing organisation's ledger with nothing to load.
func (c command) groupable() bool {
	return c.shared && c.load == nil && c.ledger != "" && c.newLedger == "" && c.perm != ""
}

// Waiting returns how many shared commands of a ledger wait in this
// process for a transaction (for monitoring and tests).
func (s *Service) Waiting(ledgerID saasapi.ID) int {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	n := 0
	for _, m := range s.groups.waiting {
		if m.c.ledger == ledgerID {
			n++
		}
	}
	return n
}

// runQueued executes a shared command: at once and alone when a slot is
// free and nothing of its ledger is in flight, or else in the group it
// waits for.
func (s *Service) runQueued(ctx context.Context, c command) ([]saasapi.Event, Outcome, error) {
	g := &s.groups
	g.mu.Lock()
	if g.running < g.slots && !g.inFlight[c.ledger] {
		g.start([]saasapi.ID{c.ledger})
		g.mu.Unlock()
		defer s.handOver([]saasapi.ID{c.ledger})
		return s.runAlone(ctx, c)
	}
	m := &member{ctx: ctx, c: c, lead: make(chan []*member, 1), done: make(chan memberResult, 1)}
	g.waiting = append(g.waiting, m)
	g.mu.Unlock()

	var r memberResult
	select {
	case group := <-m.lead:
		r = s.lead(group)
	case r = <-m.done:
	case <-ctx.Done():
		if g.leave(m) {
			return nil, Outcome{}, ctx.Err()
		}
		// Taken into a group already: it runs, and its result is this
		// command's.
		select {
		case group := <-m.lead:
			r = s.lead(group)
		case r = <-m.done:
		}
	}
	if r.alone {
		return s.runAlone(ctx, c)
	}
	return r.recorded, r.out, r.err
}

// start takes a slot for a transaction on ledgers; g.mu is held.
func (g *ledgerGroups) start(ledgers []saasapi.ID) {
	if g.inFlight == nil {
		g.inFlight = map[saasapi.ID]bool{}
	}
	g.running++
	for _, l := range ledgers {
		g.inFlight[l] = true
	}
}

// leave takes m out of the queue, unless a group took it already.
func (g *ledgerGroups) leave(m *member) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.Index(g.waiting, m)
	if i < 0 {
		return false
	}
	g.waiting = slices.Delete(g.waiting, i, i+1)
	return true
}

// handOver ends a transaction on ledgers: its slot and its ledgers are
// free, and the waiting commands they held back lead the next groups.
func (s *Service) handOver(ledgers []saasapi.ID) {
	g := &s.groups
	g.mu.Lock()
	g.running--
	for _, l := range ledgers {
		delete(g.inFlight, l)
	}
	var groups [][]*member
	for g.running < g.slots {
		group := g.take()
		if len(group) == 0 {
			break
		}
		g.start(groupLedgers(group))
		groups = append(groups, group)
	}
	g.mu.Unlock()
	for _, group := range groups {
		group[0].lead <- group
	}
}

// groupLedgers returns the distinct ledgers of group's members, sorted: the
// order a group locks them in, so that two groups never wait for each
// other's locks.
func groupLedgers(group []*member) []saasapi.ID {
	ls := make([]saasapi.ID, 0, len(group))
	for _, m := range group {
		ls = append(ls, m.c.ledger)
	}
	slices.Sort(ls)
	return slices.Compact(ls)
}

// idemScope is the scope of an idempotency record (queueClaim).
type idemScope struct {
	principalType, principalID, org, key, method, path string
}

// take removes the next group from the queue: up to maxGroup members in
// order whose ledgers are not in flight, leaving for a later group any
// member whose idempotency scope an earlier member of this one has (it
// replays that member's result then); g.mu is held.
func (g *ledgerGroups) take() []*member {
	var group, left []*member
	scopes := map[idemScope]bool{}
	for _, m := range g.waiting {
		if len(group) == maxGroup || g.inFlight[m.c.ledger] {
			left = append(left, m)
			continue
		}
		if idem := m.c.idem; idem != nil {
			p := m.c.meta.Principal
			sc := idemScope{string(p.Type), string(p.ID()), string(m.c.idemOrg), idem.Key, idem.Method, idem.Path}
			if scopes[sc] {
				left = append(left, m)
				continue
			}
			scopes[sc] = true
		}
		group = append(group, m)
	}
	g.waiting = left
	return group
}

// lead runs group, hands the ledger over to the next group and gives every
// other member its result; it returns the leader's own (group[0]).
func (s *Service) lead(group []*member) memberResult {
	var results []memberResult
	// Deferred, so that a panic of the leader's still releases the
	// ledger and answers the others.
	defer func() {
		s.handOver(groupLedgers(group))
		for i, m := range group[1:] {
			r := memberResult{err: errors.New("commands: the leader of the group failed")}
			if results != nil {
				r = results[i+1]
			}
			m.done <- r
		}
	}()
	if len(group) == 1 {
		recorded, out, err := s.runAlone(group[0].ctx, group[0].c)
		results = []memberResult{{recorded: recorded, out: out, err: err}}
	} else {
		results = s.runGroup(group)
	}
	return results[0]
}

// runGroup executes the members of group in one transaction. Members that
// the transaction refuses leave it, and it is tried once more with the
// others; whatever it did not commit runs alone.
func (s *Service) runGroup(group []*member) []memberResult {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(group[0].ctx), groupTimeout)
	defer cancel()
	results := make([]memberResult, len(group))
	pending := make([]int, len(group))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; len(pending) > 1 && attempt < 2; attempt++ {
		refused, err := s.groupOnce(ctx, group, pending, results)
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) || errors.Is(err, errGroupNotSent) {
				// PostgreSQL refused a statement: the transaction did
				// not commit, and each member may run alone.
				break
			}
			// Whether the COMMIT took effect is unknown (the connection
			// failed): running the members again could execute them
			// twice, so each gets the error.
			for _, i := range pending {
				results[i] = memberResult{err: err}
			}
			return results
		}
		if len(refused) == 0 {
			return results
		}
		pending = slices.DeleteFunc(pending, func(i int) bool { return slices.Contains(refused, i) })
		for _, i := range refused {
			results[i] = memberResult{alone: true}
		}
	}
	for _, i := range pending {
		results[i] = memberResult{alone: true}
	}
	return results
}

// errGroupNotSent wraps the errors a group meets before its COMMIT is sent.
var errGroupNotSent = errors.New("group not committed")

// groupOnce runs the members of group at the indexes idx in one
// transaction and fills their results, or returns the indexes of the
// members refused (the transaction is rolled back then), or an error.
func (s *Service) groupOnce(ctx context.Context, group []*member, idx []int, results []memberResult) (refused []int, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: acquire: %w", errGroupNotSent, err)
	}
	defer conn.Release()
	defer rollbackUnlessIdle(ctx, conn)

	first, second := &pgx.Batch{}, &pgx.Batch{}
	// The ledgers are locked in order (groupLedgers): a group of another
	// process locking some of the same ones waits, and cannot deadlock.
	members := make([]*member, len(idx))
	for k, i := range idx {
		members[k] = group[i]
	}
	ledgers := groupLedgers(members)
	heads := make(map[saasapi.ID]*eventstore.Head, len(ledgers))
	eventstore.QueueLocks(first, ledgers, heads)
	steps := make([]*step, len(idx))
	for k, i := range idx {
		steps[k] = &step{c: group[i].c}
		if err := steps[k].queueFirst(s, first); err != nil {
			return nil, fmt.Errorf("%w: %w", errGroupNotSent, err)
		}
	}
	if err := sendBatch(ctx, conn, "BEGIN", first, ""); err != nil {
		return nil, fmt.Errorf("%w: %w", errGroupNotSent, err)
	}
	for k, st := range steps {
		head, locked := heads[st.c.ledger]
		if !locked {
			head = &eventstore.Head{LedgerID: st.c.ledger}
		}
		if replay, err := st.admit(*head, locked); err != nil || replay != nil {
			refused = append(refused, idx[k])
		}
	}
	if len(refused) > 0 {
		return refused, nil
	}

	// The group's events, project rows and counters go out as one
	// statement per table (eventstore.CloseAll, projections.Batched).
	aps := make(map[saasapi.ID]*eventstore.Appender, len(ledgers))
	closing := make([]*eventstore.Appender, len(ledgers))
	for i, l := range ledgers {
		aps[l] = eventstore.NewDeferredAppender(second, heads[l])
		closing[i] = aps[l]
	}
	batched := projections.NewBatched(second)
	for k, st := range steps {
		l := st.c.ledger
		if err := st.decide(*heads[l], aps[l], second); err != nil {
			return []int{idx[k]}, nil
		}
		if err := st.project(second, batched); err != nil {
			return nil, fmt.Errorf("%w: %w", errGroupNotSent, err)
		}
	}
	batched.Flush()
	eventstore.CloseAll(second, closing)
	// Not translated: runGroup tells a statement PostgreSQL refused from a
	// failed connection.
	if err := sendBatch(ctx, conn, "", second, "COMMIT"); err != nil {
		return nil, err
	}
	if conn.Conn().PgConn().TxStatus() != 'I' {
		return nil, fmt.Errorf("%w: the transaction did not end", errGroupNotSent)
	}
	for k, st := range steps {
		results[idx[k]] = memberResult{recorded: st.recorded, out: st.out}
		s.committed(st.recorded)
	}
	return nil, nil
}
