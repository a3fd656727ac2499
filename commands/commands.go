// Package commands holds the write use cases, one file per aggregate. Every
// command runs through the one write pipeline (pipeline.go) in one
// transaction of two round trips: lock the ledger it writes to, authorize
// through the gate, claim the idempotency key, read what the decision
// needs; decide which events follow (a pure function of current state and
// input); append them, apply them to the read tables through the
// projections, read the result back, store the idempotent response, and
// commit.
package commands

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/eventstore"
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
	// keyOwners maps an API key's secret hash to its key and organisation
	// (string -> projections.KeyOwner), which never change.
	keyOwners  sync.Map
	ownersSeen atomic.Int64
	// pending counts background writes (failed sign-ins); Wait waits for
	// them. Not a sync.WaitGroup: requests start background writes while
	// another goroutine may be waiting (a shutdown, a test), and a WaitGroup
	// forbids an Add from zero concurrent with Wait.
	pending           inFlight
	onBackgroundError func(error)
	failures          *loginFailures
	keys              *saasapi.DataKeyring
	// groups schedule the shared commands into write slots (group.go).
	groups ledgerGroups
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
	// Keys wraps the people's data keys (required: personal data is never
	// written in plain text).
	Keys *saasapi.DataKeyring
	// WriteGroups is how many transactions of shared commands (group
	// commit, group.go) this process runs at once; zero means
	// DefaultWriteGroups.
	WriteGroups int
}

// DefaultWriteGroups is the default of Config.WriteGroups: enough to keep
// PostgreSQL busy while a group's COMMIT waits for its WAL flush, few
// enough that commands arriving meanwhile gather into large groups.
const DefaultWriteGroups = 2

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
		keys:              cfg.Keys,
	}
	if s.keys == nil {
		panic("commands: Config.Keys is required")
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
	s.groups.slots = cfg.WriteGroups
	if s.groups.slots <= 0 {
		s.groups.slots = DefaultWriteGroups
	}
	s.failures = &loginFailures{window: window, open: map[saasapi.ID]*failureWindow{}, record: s.recordLoginFailure}
	return s
}

// Keys returns the keyring that wraps the people's data keys.
func (s *Service) Keys() *saasapi.DataKeyring { return s.keys }

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

// orgCommand is a command on an existing organisation's ledger, gated
// for perm: the contract's access order (401, 404, 403, 403) is the
// gate's, applied before decide runs.
func orgCommand(meta Meta, orgID saasapi.ID, perm saasapi.Permission) command {
	return command{meta: meta, ledger: orgID, perm: perm}
}

// one returns a single decided event as decide's result.
func one(e saasapi.NewEvent) ([]saasapi.NewEvent, error) { return []saasapi.NewEvent{e}, nil }

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
	"memberships_user_organisation_key": saasapi.Errorf(saasapi.ECONFLICT, saasapi.MsgAlreadyMember),
	// The stream version guard: another writer appended to the same stream.
	"events_stream_key": saasapi.Errorf(saasapi.EPRECONDITION, saasapi.MsgStale),
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
