package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/progress"
	"github.com/saasapi/saasapi/projections"
)

// The operator commands: audit verify, projections rebuild and projections
// verify. They connect with SAAS_API_DATABASE_URL as given, not through the
// application role: they are run by an operator with the schema owner's
// credentials (a rebuild rewrites the read tables, which the service's role
// may do too, but verification should not depend on what that role may
// see). Results go to stdout, progress to stderr; a failed check returns an
// error, so the exit status is non-zero.

const auditUsage = `Usage: saasapi audit verify [--org ID] [--pin SEQUENCE:HASH] [--checkpoint FILE --key VERIFIER_KEY]
       saasapi audit verify-export --checkpoint FILE --key VERIFIER_KEY [--file EXPORT]
       saasapi audit monitor --url BASE_URL --org ID --token-file F --state DIR [--key VERIFIER_KEY]
       saasapi audit keygen [--name NAME]

verify recomputes the hash chain and Merkle tree of every ledger (or one
organisation's) from the stored events; verify-export checks an export
against a signed checkpoint with no database; monitor is a witness run from
another machine; keygen makes a checkpoint signing key. Exit status: 0
verified, 1 integrity failure, 2 usage. See docs/audit.md.
`

const auditVerifyUsage = `Usage: saasapi audit verify [--org ID] [--pin SEQUENCE:HASH] [--checkpoint FILE --key VERIFIER_KEY]

Recompute the hash chain and the Merkle tree of every ledger (or of one
organisation's) from the stored events and check them against the ledgers'
rows and stored tree hashes. --pin also requires the event at SEQUENCE to
have exactly that hash (hex); --checkpoint requires the root of the tree
recomputed from the events at the checkpoint's size to be the root signed in
it, and names the ledger by the checkpoint's origin. Exit status: 0
verified, 1 integrity failure, 2 usage. See docs/audit.md.
`

const projectionsUsage = `Usage:
  saasapi projections rebuild [--org ID]
                                replay every event into new read tables and
                                swap them in (writers wait only for the swap),
                                or one organisation's events into its rows
  saasapi projections verify    replay into temporary copies and compare
                                with the read tables; changes nothing
`

const projectionsRebuildUsage = `Usage: saasapi projections rebuild [--org ID]

Replay every event into new copies of the read tables while the service goes
on writing, catch up, and swap them in under the ledgers lock in a short
final step (writers wait only for that step); a failure leaves the live
tables untouched. Connects to SAAS_API_DATABASE_URL. With --org,
empty and replay only that organisation's rows (its ledger): only its
writers wait, and other organisations and the users table are untouched.
`

// projectionsRebuildFlags defines the flags of `saasapi projections rebuild`.
func projectionsRebuildFlags(fs *flag.FlagSet) action {
	org := fs.String("org", "", "rebuild only the rows of this organisation (its ID)")
	return func(ctx context.Context, env environment, stdout, stderr io.Writer) error {
		if *org == "" {
			return runProjections(ctx, "rebuild", env, stdout, stderr)
		}
		return runRebuildOrg(ctx, *org, env, stdout, stderr)
	}
}

// runRebuildOrg runs `saasapi projections rebuild --org ID`.
func runRebuildOrg(ctx context.Context, org string, env environment, stdout, stderr io.Writer) error {
	orgID, err := saasapi.ParseID(org)
	if err != nil {
		return fmt.Errorf("projections rebuild: --org %q is not an organisation ID (a 26-character ULID)", org)
	}
	pool, err := opsPool(ctx, env, stderr, "projections rebuild")
	if err != nil {
		return err
	}
	defer pool.Close()
	start := time.Now()
	n, err := projections.RebuildOrg(ctx, pool, orgID, readLedger, func(format string, a ...any) {
		fmt.Fprintf(stderr, format+"\n", a...)
	})
	if errors.Is(err, projections.ErrNoOrganisation) {
		return fmt.Errorf("projections rebuild: there is no organisation %s", orgID)
	}
	if err != nil {
		return fmt.Errorf("projections rebuild: %w", err)
	}
	elapsed := time.Since(start)
	fmt.Fprintf(stdout, "rebuilt the rows of organisation %s from %d events in %s (%.0f events/s)\n",
		orgID, n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	return nil
}

const projectionsVerifyUsage = `Usage: saasapi projections verify

Replay every event into temporary copies of the read tables and compare them
with the live ones; print the rows that differ. Changes nothing.
`

// auditVerifyFlags defines the flags of `saasapi audit verify`.
func auditVerifyFlags(fs *flag.FlagSet) action {
	org := fs.String("org", "", "verify only the ledger of this organisation (its ID)")
	var ev evidence
	fs.Var(&ev.pin, "pin", "require the event at SEQUENCE to have HASH (hex), as SEQUENCE:HASH")
	fs.StringVar(&ev.checkpoint, "checkpoint", "", "require the tree to match this signed checkpoint `file`")
	fs.StringVar(&ev.key, "key", "", "the checkpoint's verifier key, or a file holding it")
	return func(ctx context.Context, env environment, stdout, stderr io.Writer) error {
		return runAuditVerify(ctx, *org, ev, env, stdout, stderr)
	}
}

// runAuditVerify runs `saasapi audit verify`.
func runAuditVerify(ctx context.Context, org string, ev evidence, env environment, stdout, stderr io.Writer) error {
	var orgID saasapi.ID
	if org != "" {
		id, err := saasapi.ParseID(org)
		if err != nil {
			return fmt.Errorf("audit verify: --org %q is not an organisation ID (a 26-character ULID)", org)
		}
		orgID = id
	}
	cp, orgID, err := ev.resolve(orgID, stderr)
	if err != nil {
		return err
	}

	pool, err := opsPool(ctx, env, stderr, "audit verify")
	if err != nil {
		return err
	}
	defer pool.Close()

	if ev.pin.set || cp != nil {
		return verifyEvidence(ctx, pool, orgID, ev.pin, cp, stdout)
	}

	if orgID != "" {
		n, err := eventstore.VerifyLedger(ctx, pool, orgID)
		if errors.Is(err, eventstore.ErrLedgerNotFound) {
			return fmt.Errorf("audit verify: there is no ledger %s", orgID)
		}
		if err != nil {
			return chainFailure(err)
		}
		fmt.Fprintf(stdout, "verified 1 ledger, %d events\n", n)
		return nil
	}
	meter := progress.New(stderr, "audit verify")
	if total, err := eventstore.CountEvents(ctx, pool); err == nil {
		meter.SetTotal(total) // only for the ETA: writers may add more meanwhile
	}
	ledgers, events, err := eventstore.VerifyAll(ctx, pool, func(_ saasapi.ID, count int64) { meter.Add(count) })
	if err != nil {
		return chainFailure(err)
	}
	meter.Finish()
	fmt.Fprintf(stdout, "verified %d ledgers, %d events\n", ledgers, events)
	return nil
}

// chainFailure returns a broken chain as it is, so that the one line
// printed is "ledger <id>: first bad sequence <n>: <reason>"; other errors
// say which command failed.
func chainFailure(err error) error {
	var ce *eventstore.ChainError
	if errors.As(err, &ce) {
		return ce
	}
	return fmt.Errorf("audit verify: %w", err)
}

// runProjections runs `saasapi projections rebuild|verify`.
func runProjections(ctx context.Context, which string, env environment, stdout, stderr io.Writer) error {
	pool, err := opsPool(ctx, env, stderr, "projections "+which)
	if err != nil {
		return err
	}
	defer pool.Close()
	keys, err := opsKeyring(ctx, env, pool)
	if err != nil {
		return fmt.Errorf("projections %s: %w", which, err)
	}
	readEvents := commands.OpenedEvents(keys)

	meter := progress.New(stderr, "projections "+which)
	report := func(done, total int64) {
		meter.SetTotal(total)
		meter.Done(done)
	}
	if which == "rebuild" {
		start := time.Now()
		n, err := projections.Rebuild(ctx, pool, readEvents, func(format string, a ...any) {
			fmt.Fprintf(stderr, format+"\n", a...)
		}, report)
		if err != nil {
			return fmt.Errorf("projections rebuild: %w", err)
		}
		meter.Finish()
		elapsed := time.Since(start)
		fmt.Fprintf(stdout, "rebuilt the read tables from %d events in %s (%.0f events/s)\n",
			n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
		return nil
	}

	n, diffs, err := projections.Verify(ctx, pool, readEvents, report)
	if err != nil {
		return fmt.Errorf("projections verify: %w", err)
	}
	meter.Finish()
	if len(diffs) == 0 {
		fmt.Fprintf(stdout, "read tables match a replay of %d events\n", n)
		return nil
	}
	for _, d := range diffs {
		fmt.Fprintf(stdout, "%s %s:\n  live:    %s\n  rebuilt: %s\n", d.Table, d.Key, d.Live, d.Rebuilt)
	}
	return fmt.Errorf("projections verify: %d rows differ from a replay of %d events (at most %d shown per table); "+
		"`saasapi projections rebuild` replaces the read tables with the replay", len(diffs), n, projections.MaxDiffsPerTable)
}

// opsKeyring is the checked keyring of an operator command.
func opsKeyring(ctx context.Context, env environment, q commands.Querier) (*saasapi.DataKeyring, error) {
	cfg, err := loadConfig(env.get, ":8000")
	if err != nil {
		return nil, err
	}
	// Never a generated key: on a database that has no key check value
	// yet, it would bind the database to a key nobody keeps.
	if cfg.DataKey == "" {
		return nil, fmt.Errorf("%s is required (dev keeps its key in %s under its data directory)", saasapi.EnvDataKey, devDataKeyFile)
	}
	return checkedKeyring(ctx, cfg, q)
}

// readLedger is the per-ledger reader that a rebuild of one organisation
// replays.
func readLedger(ctx context.Context, tx pgx.Tx, ledgerID saasapi.ID, after int64, limit int) ([]saasapi.Event, error) {
	return eventstore.ReadLedger(ctx, tx, ledgerID, after, limit)
}

// opsPool connects to SAAS_API_DATABASE_URL with the credentials it holds.
func opsPool(ctx context.Context, env environment, stderr io.Writer, command string) (*pgxpool.Pool, error) {
	cfg, err := loadConfig(env.get, ":8000")
	if err != nil {
		return nil, err
	}
	warnUnknownSettings(env, stderrWarner(stderr))
	if cfg.DatabaseURL == "" {
		return nil, fmt.Errorf("SAAS_API_DATABASE_URL is required for %s", command)
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", command, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: connect: %w", command, err)
	}
	return pool, nil
}
