// Package commands holds the write use cases, one file per aggregate. Every
// command runs in one transaction: lock the ledger it writes to, authorize
// against the membership read table, decide which events follow (a pure
// function of current state and input), append them, apply them to the read
// tables through the projections, and commit.
package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// Service runs the commands against one database.
type Service struct {
	pool              *pgxpool.Pool
	hasher            *auth.Hasher
	tokens            *auth.TokenIssuer
	passwordMinLength int
	now               func() time.Time
	onCommit          func([]saasapi.Event)
	// lastTouch remembers when this process last wrote an API key's
	// last_used_at (saasapi.ID -> time.Time).
	lastTouch sync.Map
	touched   atomic.Int64
	// pending counts background writes (failed sign-ins); Wait waits for
	// them. Not a sync.WaitGroup: requests start background writes while
	// another goroutine may be waiting (a shutdown, a test), and a WaitGroup
	// forbids an Add from zero concurrent with Wait.
	pending           inFlight
	onBackgroundError func(error)
	failures          *loginFailures
}

// Config holds what the commands need besides the database.
type Config struct {
	Hasher            *auth.Hasher
	Tokens            *auth.TokenIssuer
	PasswordMinLength int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnCommit is called with the events of every committed command, after
	// the commit: metrics count executions there, never for a rollback.
	OnCommit func([]saasapi.Event)
	// OnBackgroundError, if set, hears of writes that failed after their
	// request was answered (a failed sign-in's event).
	OnBackgroundError func(error)
	// LoginFailureWindow is how long the failed sign-ins of one account are
	// summed into one user.login_failed event; zero means
	// DefaultLoginFailureWindow.
	LoginFailureWindow time.Duration
}

// New returns a Service.
func New(pool *pgxpool.Pool, cfg Config) *Service {
	s := &Service{
		pool:              pool,
		hasher:            cfg.Hasher,
		tokens:            cfg.Tokens,
		passwordMinLength: cfg.PasswordMinLength,
		now:               cfg.Now,
		onCommit:          cfg.OnCommit,
		onBackgroundError: cfg.OnBackgroundError,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.passwordMinLength <= 0 {
		s.passwordMinLength = 12
	}
	window := cfg.LoginFailureWindow
	if window <= 0 {
		window = DefaultLoginFailureWindow
	}
	s.failures = &loginFailures{window: window, open: map[saasapi.ID]*failureWindow{}, record: s.recordLoginFailure}
	return s
}

// backgroundTimeout bounds a write that runs after its request was answered.
const backgroundTimeout = 30 * time.Second

// background runs fn after the request that caused it, detached from the
// request's cancellation but counted, so that Wait (at shutdown, in tests)
// lets it finish.
func (s *Service) background(fn func(ctx context.Context)) {
	s.pending.add()
	go func() {
		defer s.pending.done()
		ctx, cancel := context.WithTimeout(context.Background(), backgroundTimeout)
		defer cancel()
		fn(ctx)
	}()
}

// Wait returns once every background write has finished. The server calls
// it on shutdown, before it closes the pool.
func (s *Service) Wait() { s.pending.wait() }

// inFlight counts running goroutines. Unlike a sync.WaitGroup, add may run
// at any time, also while wait is blocked: wait returns at the first moment
// the count is zero.
type inFlight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero; nil while n is zero
}

func (f *inFlight) add() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
}

func (f *inFlight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		close(f.idle)
		f.idle = nil
	}
}

func (f *inFlight) wait() {
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	if idle != nil {
		<-idle
	}
}

// Meta is what every command knows about its request.
type Meta struct {
	Principal saasapi.Principal
	RequestID string
	// ServerRequestID is the ID the server generated for the request. Events
	// of anonymous actors carry it instead of RequestID, which the caller
	// may have chosen: nobody can write their own text into another
	// account's ledger. Empty means RequestID.
	ServerRequestID string
	// IfMatch, when set, is the stream version the caller last read; a write
	// to an entity whose version differs fails with 412.
	IfMatch *int64
}

// write runs fn in a transaction and commits. fn returns the events it
// recorded; they are reported to OnCommit only once the commit succeeded.
func (s *Service) write(ctx context.Context, fn func(tx pgx.Tx) ([]saasapi.Event, error)) ([]saasapi.Event, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	evs, err := fn(tx)
	if err != nil {
		return nil, translate(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, translate(fmt.Errorf("commit: %w", err))
	}
	if s.onCommit != nil && len(evs) > 0 {
		s.onCommit(evs)
	}
	return evs, nil
}

// record appends the events to the ledger whose head is given, applies them
// to the read tables, and sends everything queued on b (the caller may have
// queued statements before) in one round trip.
func record(ctx context.Context, tx pgx.Tx, b *pgx.Batch, head *eventstore.Head, evs []saasapi.NewEvent) ([]saasapi.Event, error) {
	recorded, err := eventstore.Append(b, head, evs)
	if err != nil {
		return nil, err
	}
	for _, e := range recorded {
		if err := projections.Apply(b, e); err != nil {
			return nil, err
		}
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return recorded, nil
}

// newEvent fills in the envelope of an event decided for a ledger.
func (s *Service) newEvent(meta Meta, head eventstore.Head, streamType string, streamID saasapi.ID,
	version int64, eventType string, data any,
) saasapi.NewEvent {
	requestID := meta.RequestID
	if meta.Principal.Type == saasapi.PrincipalAnonymous && meta.ServerRequestID != "" {
		requestID = meta.ServerRequestID
	}
	return saasapi.NewEvent{
		LedgerID:      head.LedgerID,
		LedgerType:    head.LedgerType,
		StreamType:    streamType,
		StreamID:      streamID,
		StreamVersion: version,
		Type:          eventType,
		Actor:         saasapi.ActorOf(meta.Principal),
		RequestID:     requestID,
		OccurredAt:    s.now(),
		Data:          data,
	}
}

// orgDecision decides the events of a command on an organisation, given the
// authorized access; it runs under the organisation's ledger lock. It may
// queue statements of its own on b (a secret for its own table), which are
// sent with the events.
type orgDecision func(ctx context.Context, tx pgx.Tx, a saasapi.Access, head eventstore.Head, b *pgx.Batch) ([]saasapi.NewEvent, error)

// orgResult reads a command's result back inside its transaction, after the
// events were applied, so the response shows exactly what was committed.
type orgResult func(ctx context.Context, tx pgx.Tx, a saasapi.Access) error

// orgWrite is the write path of every command on an existing organisation:
// lock the ledger, apply the contract's access order (404, 403, 403), decide,
// record, read the result back, commit.
func (s *Service) orgWrite(ctx context.Context, meta Meta, orgID saasapi.ID, perm saasapi.Permission,
	decide orgDecision, result orgResult,
) ([]saasapi.Event, error) {
	return s.write(ctx, func(tx pgx.Tx) ([]saasapi.Event, error) {
		head, err := eventstore.LockLedger(ctx, tx, orgID)
		if errors.Is(err, eventstore.ErrLedgerNotFound) || (err == nil && head.LedgerType != saasapi.LedgerOrganisation) {
			return nil, saasapi.Errorf(saasapi.ENOTFOUND, saasapi.MsgOrgNotFound)
		}
		if err != nil {
			return nil, err
		}
		_, role, err := projections.OrganisationAccess(ctx, tx, orgID, meta.Principal.UserID)
		if err != nil {
			return nil, err
		}
		if p := meta.Principal; p.Type == saasapi.PrincipalAPIKey && p.OrganisationID == orgID {
			// Revocation is a write to this ledger: under the lock, a key
			// either is still active or its revocation has committed.
			active, err := projections.APIKeyActive(ctx, tx, orgID, p.APIKeyID)
			if err != nil {
				return nil, err
			}
			if !active {
				return nil, saasapi.Errorf(saasapi.EUNAUTHENTICATED, saasapi.MsgInvalidTokenOrKey)
			}
		}
		access, err := saasapi.Authorize(meta.Principal, orgID, role, perm)
		if err != nil {
			return nil, err
		}
		b := &pgx.Batch{}
		evs, err := decide(ctx, tx, access, head, b)
		if err != nil {
			return nil, err
		}
		var recorded []saasapi.Event
		if len(evs) > 0 || b.Len() > 0 {
			if recorded, err = record(ctx, tx, b, &head, evs); err != nil {
				return nil, err
			}
		}
		if result != nil {
			if err := result(ctx, tx, access); err != nil {
				return nil, err
			}
		}
		return recorded, nil
	})
}

// checkIfMatch enforces optimistic concurrency for callers that sent If-Match.
func checkIfMatch(meta Meta, version int64) error {
	if meta.IfMatch != nil && *meta.IfMatch != version {
		return saasapi.Errorf(saasapi.EPRECONDITION, saasapi.MsgStale)
	}
	return nil
}

// constraintErrors translates the unique indexes that users see into the
// contract's conflicts. This is the one place where driver errors become
// domain errors.
var constraintErrors = map[string]*saasapi.Error{
	"users_email_key":                   saasapi.Errorf(saasapi.ECONFLICT, saasapi.MsgEmailTaken),
	"organisations_slug_key":            saasapi.Errorf(saasapi.ECONFLICT, saasapi.MsgSlugTaken),
	"memberships_organisation_user_key": saasapi.Errorf(saasapi.ECONFLICT, saasapi.MsgAlreadyMember),
	// The stream version guard: another writer appended to the same stream.
	"events_stream_type_stream_id_stream_version_key": saasapi.Errorf(saasapi.EPRECONDITION, saasapi.MsgStale),
}

func translate(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		if e, ok := constraintErrors[pgErr.ConstraintName]; ok {
			return e
		}
	}
	return err
}
