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
)

// Group commit (docs/adr/0009-one-write-pipeline.md). The commands of one
// ledger are serial: each holds the ledger lock from its first round trip
// to its COMMIT, WAL flush included. A shared command that arrives while
// another of its ledger is in flight in this process waits in the ledger's
// queue instead of in PostgreSQL's lock queue; when the one in flight ends,
// the first waiting command leads the next group: it takes up to maxGroup
// waiting commands and runs them in one transaction of the same two round
// trips (the lock once, every member's gate and idempotency claim; then
// every member's decision in order, its events appended at the head the
// member before it left, and one COMMIT for them all).
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

// ledgerGroups holds a queue per ledger that has shared commands in flight
// in this process.
type ledgerGroups struct {
	mu     sync.Mutex
	queues map[saasapi.ID]*ledgerQueue
}

// ledgerQueue exists while a transaction of shared commands on its ledger
// is in flight; waiting are the commands that arrived since, in order.
type ledgerQueue struct {
	waiting []*member
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
// process for its transaction in flight (for monitoring and tests).
func (s *Service) Waiting(ledgerID saasapi.ID) int {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	if q := s.groups.queues[ledgerID]; q != nil {
		return len(q.waiting)
	}
	return 0
}

// runQueued executes a shared command: at once and alone when nothing of
// its ledger is in flight, or else in the group it waits for.
func (s *Service) runQueued(ctx context.Context, c command) ([]saasapi.Event, Outcome, error) {
	g := &s.groups
	g.mu.Lock()
	q := g.queues[c.ledger]
	if q == nil {
		if g.queues == nil {
			g.queues = map[saasapi.ID]*ledgerQueue{}
		}
		g.queues[c.ledger] = &ledgerQueue{}
		g.mu.Unlock()
		defer s.handOver(c.ledger)
		return s.runAlone(ctx, c)
	}
	m := &member{ctx: ctx, c: c, lead: make(chan []*member, 1), done: make(chan memberResult, 1)}
	q.waiting = append(q.waiting, m)
	g.mu.Unlock()

	var r memberResult
	select {
	case group := <-m.lead:
		r = s.lead(group)
	case r = <-m.done:
	case <-ctx.Done():
		if g.leave(q, m) {
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

// leave takes m out of q, unless a group took it already.
func (g *ledgerGroups) leave(q *ledgerQueue, m *member) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.Index(q.waiting, m)
	if i < 0 {
		return false
	}
	q.waiting = slices.Delete(q.waiting, i, i+1)
	return true
}

// handOver ends the ledger's transaction in flight: the first waiting
// command leads the next group, or the ledger is idle.
func (s *Service) handOver(ledgerID saasapi.ID) {
	g := &s.groups
	g.mu.Lock()
	q := g.queues[ledgerID]
	if len(q.waiting) == 0 {
		delete(g.queues, ledgerID)
		g.mu.Unlock()
		return
	}
	group := q.take()
	g.mu.Unlock()
	group[0].lead <- group
}

// idemScope is the scope of an idempotency record (queueClaim).
type idemScope struct {
	principalType, principalID, org, key, method, path string
}

// take removes the next group from the queue: up to maxGroup members in
// order, leaving for a later group any member whose idempotency scope an
// earlier member of this one has (it replays that member's result then).
func (q *ledgerQueue) take() []*member {
	var group, left []*member
	scopes := map[idemScope]bool{}
	for _, m := range q.waiting {
		if len(group) == maxGroup {
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
	q.waiting = left
	return group
}

// lead runs group, hands the ledger over to the next group and gives every
// other member its result; it returns the leader's own (group[0]).
func (s *Service) lead(group []*member) memberResult {
	var results []memberResult
	// Deferred, so that a panic of the leader's still releases the
	// ledger and answers the others.
	defer func() {
		s.handOver(group[0].c.ledger)
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
	var (
		head   eventstore.Head
		locked bool
	)
	eventstore.QueueLock(first, group[idx[0]].c.ledger, &head, &locked)
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
		if replay, err := st.admit(head, locked); err != nil || replay != nil {
			refused = append(refused, idx[k])
		}
	}
	if len(refused) > 0 {
		return refused, nil
	}

	ap := eventstore.NewAppender(second, &head)
	for k, st := range steps {
		if err := st.decide(head, ap, second); err != nil {
			return []int{idx[k]}, nil
		}
		if err := st.project(second); err != nil {
			return nil, fmt.Errorf("%w: %w", errGroupNotSent, err)
		}
	}
	ap.Close()
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
