package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
)

// The operator commands: audit verify, projections rebuild and projections
// verify. They connect with SAAS_API_DATABASE_URL as given, not through the
// application role: they are run by an operator with the schema owner's
// credentials (a rebuild rewrites the read tables, which the service's role
// may do too, but verification should not depend on what that role may
// see). Results go to stdout, progress to stderr; a failed check returns an
// error, so the exit status is non-zero.

const auditUsage = `Usage:
  saasapi audit verify [--org ID] [--pin SEQUENCE:HASH] [--checkpoint FILE --key VERIFIER_KEY]
  saasapi audit verify-export --checkpoint FILE --key VERIFIER_KEY [--file EXPORT]
  saasapi audit monitor --url BASE_URL --org ID --token-file F --state DIR [--key VERIFIER_KEY]
  saasapi audit keygen [--name NAME]

verify recomputes the hash chain and Merkle tree of every ledger (or of one
organisation's) from the stored events and checks them against the ledgers'
rows and stored tree. --pin also requires the event at SEQUENCE to have
exactly that hash (hex); --checkpoint requires the root of the tree
recomputed from the events at the checkpoint's size to be the root signed in
it (the ledger is the one the checkpoint's origin names). verify-export needs
no database; monitor is a witness run from another machine; keygen makes a
checkpoint signing key. Exit status: 0 verified, 1 integrity failure, 2 usage.
See docs/audit.md.
`

const projectionsUsage = `Usage:
  saasapi projections rebuild   replay every event into emptied read tables
                                (writers wait until it commits)
  saasapi projections verify    replay into temporary copies and compare
                                with the read tables; changes nothing
`

// runAudit runs `saasapi audit ...`.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, auditUsage)
		return nil
	}
	if len(args) > 0 {
		switch args[0] {
		case "verify-export":
			return runVerifyExport(args[1:], os.Stdin, stdout, stderr)
		case "monitor":
			return runMonitor(ctx, args[1:], stdout, stderr)
		case "keygen":
			return runKeygen(args[1:], getenv, stdout, stderr)
		}
	}
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, auditUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("saasapi audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below, where -h asked for it or a flag was wrong
	org := fs.String("org", "", "verify only the ledger of this organisation")
	var pin pinFlag
	fs.Var(&pin, "pin", "require the event at SEQUENCE to have HASH (hex)")
	checkpoint := fs.String("checkpoint", "", "require the tree to match this signed checkpoint")
	key := fs.String("key", "", "the checkpoint's verifier key, or a file holding it")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, auditUsage)
			return nil
		}
		fmt.Fprint(stderr, "\n"+auditUsage)
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "saasapi audit verify: unexpected argument %q\n\n%s", fs.Arg(0), auditUsage)
		return errUsage
	}
	var orgID saasapi.ID
	if *org != "" {
		id, err := saasapi.ParseID(*org)
		if err != nil {
			return fmt.Errorf("audit verify: --org %q is not an organisation ID (a 26-character ULID)", *org)
		}
		orgID = id
	}
	var cp *eventstore.Checkpoint
	switch {
	case (*checkpoint == "") != (*key == ""):
		return usageFail(stderr, "saasapi audit verify", "--checkpoint and --key go together", auditUsage)
	case *checkpoint != "":
		c, ledger, err := openCheckpointFile(*checkpoint, *key)
		if err != nil {
			return err
		}
		if orgID != "" && orgID != ledger {
			return usageFail(stderr, "saasapi audit verify", fmt.Sprintf("the checkpoint is for ledger %s, not --org %s", ledger, orgID), auditUsage)
		}
		cp, orgID = &c, ledger
	case pin.set && orgID == "":
		return usageFail(stderr, "saasapi audit verify", "--pin needs --org (or --checkpoint) to name the ledger", auditUsage)
	}

	pool, err := opsPool(ctx, getenv, "audit verify")
	if err != nil {
		return err
	}
	defer pool.Close()

	if pin.set || cp != nil {
		return verifyEvidence(ctx, pool, orgID, pin, cp, stdout)
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
	ledgers, events, err := eventstore.VerifyAll(ctx, pool, nil)
	if err != nil {
		return chainFailure(err)
	}
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
func runProjections(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, projectionsUsage)
		return nil
	}
	if len(args) != 1 || (args[0] != "rebuild" && args[0] != "verify") {
		fmt.Fprint(stderr, projectionsUsage)
		return errUsage
	}
	pool, err := opsPool(ctx, getenv, "projections "+args[0])
	if err != nil {
		return err
	}
	defer pool.Close()

	if args[0] == "rebuild" {
		start := time.Now()
		n, err := projections.Rebuild(ctx, pool, readEvents, func(format string, a ...any) {
			fmt.Fprintf(stderr, format+"\n", a...)
		})
		if err != nil {
			return fmt.Errorf("projections rebuild: %w", err)
		}
		elapsed := time.Since(start)
		fmt.Fprintf(stdout, "rebuilt the read tables from %d events in %s (%.0f events/s)\n",
			n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
		return nil
	}

	n, diffs, err := projections.Verify(ctx, pool, readEvents)
	if err != nil {
		return fmt.Errorf("projections verify: %w", err)
	}
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

// readEvents is how the projections read the event stream: eventstore's
// position-ordered reader, handed over so that projections need not import
// eventstore.
func readEvents(ctx context.Context, tx pgx.Tx, after int64, limit int) ([]saasapi.Event, error) {
	return eventstore.ReadAll(ctx, tx, after, limit)
}

// opsPool connects to SAAS_API_DATABASE_URL with the credentials it holds.
func opsPool(ctx context.Context, getenv func(string) string, command string) (*pgxpool.Pool, error) {
	cfg, err := loadConfig(getenv, ":8000")
	if err != nil {
		return nil, err
	}
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
