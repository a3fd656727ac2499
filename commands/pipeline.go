package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// A command is one write, described as data for the one write pipeline
// (run). Every command takes the same steps in the same two round trips
// (docs/adr/0009-one-write-pipeline.md):
//
//  1. BEGIN, lock the ledger, the access gate, claim the idempotency key,
//     and the reads the decision needs (load), queued as one batch;
//  2. the decision (decide, in Go, no I/O), then the events, the rows
//     eventstore.Append adds for them, the projections, the read-backs
//     (result), the idempotency record's result and COMMIT, queued as
//     one batch.
//
// A refusal (an error of the gate or of decide) or a replay costs one
// more round trip, the ROLLBACK. The ledger lock is taken by the first
// batch and released by the COMMIT of the second, so it is held for two.
type command struct {
	meta Meta
	// ledger is the ledger to lock; with newLedger set, the ledger this
	// command creates instead. Neither: no ledger is written.
	ledger    saasapi.ID
	newLedger string // the ledger type created under ledger
	// perm, when set, gates the command on the organisation ledger (the
	// principal may still act, the organisation exists, the role allows
	// perm); userGate gates a route that belongs to the signed-in user.
	perm     saasapi.Permission
	userGate bool
	// operator, when set, is the access of a command on the organisation
	// ledger that no role gate decides (saasapi.OperatorAccess).
	operator *saasapi.Access
	// idem, when set, makes the command execute once per key; idemOrg is
	// the organisation of its scope ("" for POST /orgs).
	idem    *Idempotency
	idemOrg saasapi.ID
	// load queues, on the first batch, the reads decide needs; tenant
	// reads are scoped by the gate, so they return nothing unless it
	// grants (the scope is nil for a command without a gate).
	load func(b *pgx.Batch, s projections.Scope) error
	// decide returns the events; it may queue rows of its own (a secret)
	// on b, which go out with the events.
	decide func(a saasapi.Access, head eventstore.Head, b *pgx.Batch) ([]saasapi.NewEvent, error)
	// result queues the read-backs of the second batch, after the
	// projections, so that the response shows what commits.
	result func(b *pgx.Batch, a saasapi.Access) error
	// render, for an idempotent command, is the response to store; it
	// runs after decide and before the second batch is sent, on what
	// decide recorded.
	render func(recorded []saasapi.Event) (Rendered, error)
	// shared lets the command share one transaction with other commands
	// on the same ledger that arrive while one is in flight in this
	// process (group commit, group.go; ADR 0009). Only a command whose
	// decision cannot depend on another member of its group may set it:
	// one that decides from its input, the caller's access and the
	// ledger head alone, with no load (the loads of a group run in its
	// first batch, before any member's writes, so a load would not see
	// what the members before it decided: the last-owner rule, for one,
	// would break). Off by default; groupable checks the rest.
	shared bool
	// dataKey is the data key of the person whose ledger this is, when
	// its events carry personal fields: they are sealed with it, and the
	// projections see them in plain text.
	dataKey []byte
}

// run executes c once; when its idempotency record expired and was pruned
// between the claim's two statements (the only race the claim cannot
// settle in one round trip), it executes it again. A command that may
// share its transaction (command.shared) goes through the write slots
// (group.go) instead.
func (s *Service) run(ctx context.Context, c command) ([]saasapi.Event, Outcome, error) {
	if c.groupable() {
		return s.runQueued(ctx, c)
	}
	return s.runAlone(ctx, c)
}

// runAlone executes c in a transaction of its own.
func (s *Service) runAlone(ctx context.Context, c command) ([]saasapi.Event, Outcome, error) {
	recorded, out, err := s.runOnce(ctx, c)
	if errors.Is(err, errClaimVanished) {
		recorded, out, err = s.runOnce(ctx, c)
	}
	return recorded, out, err
}

// step is one command's part of a transaction: what the first batch found
// for it, and what it recorded.
type step struct {
	c        command
	gate     *projections.Gate
	active   bool
	claim    claimState
	access   saasapi.Access
	recorded []saasapi.Event
	plain    []json.RawMessage
	out      Outcome
}

// queueFirst queues the command's statements of the first batch that
// follow the ledger lock: the access gate, the idempotency claim and the
// reads the decision needs.
func (st *step) queueFirst(s *Service, first *pgx.Batch) error {
	c := st.c
	if c.perm != "" {
		st.gate = projections.NewGate(c.meta.Principal, c.ledger, c.perm)
		st.gate.Queue(first)
	}
	if c.userGate {
		projections.QueueUserActive(first, c.meta.Principal.UserID, &st.active)
	}
	if c.idem != nil {
		queueClaim(first, c.meta.Principal, c.idemOrg, c.idem, s.now(), &st.claim)
	}
	if c.load != nil {
		// Tenant reads are scoped by the gate; a command without one (on
		// a user's own ledger) has no tenant scope to read in.
		var sc projections.Scope
		switch {
		case st.gate != nil:
			sc = st.gate
		case c.operator != nil:
			sc = projections.Within(*c.operator)
		}
		if err := c.load(first, sc); err != nil {
			return err
		}
	}
	return nil
}

// admit applies what the first batch found: the caller's access, or why
// the command is refused, or the outcome of an earlier execution to
// replay. Neither a replay nor an error: the command executes.
func (st *step) admit(head eventstore.Head, locked bool) (*Outcome, error) {
	c := st.c
	var err error
	switch {
	case st.gate != nil:
		if st.access, err = st.gate.Access(); err != nil {
			return nil, err
		}
		if !locked || head.LedgerType != saasapi.LedgerOrganisation {
			return nil, saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgOrgNotFound)
		}
	case c.operator != nil:
		st.access = *c.operator
		if !locked || head.LedgerType != saasapi.LedgerOrganisation {
			return nil, saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgOrgNotFound)
		}
	case c.userGate && !st.active:
		return nil, saasapi.Errorf(saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidToken)
	case c.ledger != "" && c.newLedger == "" && !locked:
		return nil, eventstore.ErrLedgerNotFound
	}
	if c.idem != nil {
		return st.claim.outcome(c.idem)
	}
	return nil, nil
}

// decide runs the command's decision at head and adds its events to ap.
func (st *step) decide(head eventstore.Head, ap *eventstore.Appender, second *pgx.Batch) error {
	evs, err := st.c.decide(st.access, head, second)
	if err != nil {
		return err
	}
	st.plain = make([]json.RawMessage, len(evs))
	for i := range evs {
		if st.plain[i], err = saasapi.SealPersonal(st.c.dataKey, &evs[i]); err != nil {
			return err
		}
	}
	st.recorded, err = ap.Add(evs)
	return err
}

// applier applies events to the read tables: projections.Apply one by
// one (inline), or projections.Batched for a group.
type applier interface {
	Apply(e saasapi.Event) error
	// Flush queues what Apply collected.
	Flush()
}

// inline is the applier of a command alone.
type inline struct{ b *pgx.Batch }

func (a inline) Apply(e saasapi.Event) error { return projections.Apply(a.b, e) }
func (inline) Flush()                        {}

// project queues, after the events, what they change in the read tables
// (through ap), the read-backs and the idempotent response.
func (st *step) project(second *pgx.Batch, ap applier) error {
	c := st.c
	for i, e := range st.recorded {
		if st.plain[i] != nil {
			e.Payload = st.plain[i]
		}
		if err := ap.Apply(e); err != nil {
			return err
		}
	}
	if c.result != nil {
		// The read-backs read what the projections wrote.
		ap.Flush()
		if err := c.result(second, st.access); err != nil {
			return err
		}
	}
	if c.render != nil {
		r, err := c.render(st.recorded)
		if err != nil {
			return err
		}
		st.out = Outcome{Status: r.Status, Body: r.Body}
		if c.idem != nil {
			stored := r.Stored
			if stored == nil {
				stored = r.Body
			}
			queueStore(second, c.meta.Principal, c.idemOrg, c.idem, r.Status, stored)
		}
	}
	return nil
}

// rollbackUnlessIdle ends the transaction conn has open, if any: nothing
// of a refused, replayed or failed command may stay.
func rollbackUnlessIdle(ctx context.Context, conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() != 'I' {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
			conn.Conn().PgConn().Close(context.WithoutCancel(ctx)) //nolint:errcheck // the pool drops it
		}
	}
}

// commit sends the second batch with COMMIT (and BEGIN, when the first
// batch was empty) and checks that the transaction ended.
func commit(ctx context.Context, conn *pgxpool.Conn, first, second *pgx.Batch) error {
	begin := ""
	if first.Len() == 0 {
		begin = "BEGIN"
	}
	if err := sendBatch(ctx, conn, begin, second, "COMMIT"); err != nil {
		return translate(err)
	}
	if conn.Conn().PgConn().TxStatus() != 'I' {
		return errors.New("commit: the transaction did not end")
	}
	return nil
}

// runOnce executes c and returns the events it recorded, the rendering of an
// idempotent command, or the outcome replayed from an earlier execution.
func (s *Service) runOnce(ctx context.Context, c command) (recorded []saasapi.Event, out Outcome, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, Outcome{}, fmt.Errorf("acquire: %w", err)
	}
	defer conn.Release()
	open := false
	defer func() {
		if open {
			rollbackUnlessIdle(ctx, conn)
		}
	}()

	// The first round trip: everything the decision depends on.
	first, second := &pgx.Batch{}, &pgx.Batch{}
	var (
		head   eventstore.Head
		locked bool
	)
	switch {
	case c.newLedger != "":
		// Inserted with the events: the transaction holds the new row
		// locked until it commits.
		head = eventstore.NewLedger(second, c.ledger, c.newLedger)
	case c.ledger != "":
		eventstore.QueueLock(first, c.ledger, &head, &locked)
	}
	st := &step{c: c}
	if err := st.queueFirst(s, first); err != nil {
		return nil, Outcome{}, err
	}
	open = true
	if first.Len() > 0 {
		if err := sendBatch(ctx, conn, "BEGIN", first, ""); err != nil {
			return nil, Outcome{}, translate(err)
		}
	}
	if replay, err := st.admit(head, locked); err != nil || replay != nil {
		if replay != nil {
			out = *replay
		}
		return nil, out, err
	}

	// The decision, then the second round trip: everything it writes.
	ap := eventstore.NewAppender(second, &head)
	if err := st.decide(head, ap, second); err != nil {
		return nil, Outcome{}, err
	}
	ap.Close()
	if err := st.project(second, inline{second}); err != nil {
		return nil, Outcome{}, err
	}
	if err := commit(ctx, conn, first, second); err != nil {
		return nil, Outcome{}, err
	}
	s.committed(st.recorded)
	return st.recorded, st.out, nil
}

// committed tells the service's listener of events that committed.
func (s *Service) committed(recorded []saasapi.Event) {
	if s.onCommit != nil && len(recorded) > 0 {
		s.onCommit(recorded)
	}
}

// sendBatch sends b in one round trip, preceded by before and followed by
// after when they are not empty (BEGIN, COMMIT).
func sendBatch(ctx context.Context, conn *pgxpool.Conn, before string, b *pgx.Batch, after string) error {
	if before != "" || after != "" {
		qs := b.QueuedQueries
		b.QueuedQueries = nil
		if before != "" {
			b.Queue(before)
		}
		b.QueuedQueries = append(b.QueuedQueries, qs...)
		if after != "" {
			b.Queue(after)
		}
	}
	return conn.SendBatch(ctx, b).Close()
}
