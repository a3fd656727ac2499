// Command saasapi runs the multi-tenant SaaS API and its operator tasks.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `saasapi: multi-tenant SaaS API (event-sourced, audit-first)

Usage:
  saasapi dev        start a private PostgreSQL cluster under SAAS_API_DEV_DIR,
                     migrate it and serve the API on SAAS_API_HTTP_ADDR
                     (default 127.0.0.1:8000)
  saasapi serve      serve the API against SAAS_API_DATABASE_URL (default
                     address :8000); never starts a database
  saasapi migrate    apply the embedded migrations to SAAS_API_DATABASE_URL and
                     print the schema version
  saasapi audit verify [--org ID] [--pin SEQUENCE:HASH]
                     [--checkpoint FILE --key VERIFIER_KEY]
                     recompute every ledger's hash chain and Merkle tree (or
                     one organisation's) from the stored events and check the
                     heads, the stored trees and a pinned hash or checkpoint
  saasapi audit verify-export --checkpoint FILE --key VERIFIER_KEY [--file F]
                     verify an NDJSON export against a signed checkpoint, with
                     no database
  saasapi audit monitor --url URL --org ID --token-file F --state DIR
                     witness: check that the ledger extends the last
                     checkpoint seen
  saasapi audit keygen
                     generate a checkpoint signing key
  saasapi projections rebuild
                     replay all events into the emptied read tables; writers
                     wait until it commits
  saasapi projections verify
                     prove that the read tables equal a replay of the events;
                     changes nothing
  saasapi --help     show this help

Configuration is read from SAAS_API_* environment variables; see README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "saasapi:", err)
		}
		os.Exit(exitCode(err))
	}
}

var errUsage = errors.New("usage")

// exitCode is the exit status for the error run returned: 2 for a usage
// error, 1 for anything else (a failed verification among them).
func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// run is the whole program; tests call it with their own arguments,
// environment and output, and cancel ctx to stop it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "dev":
		return runDev(ctx, getenv, stdout, stderr)
	case "serve":
		return runServe(ctx, getenv, stdout)
	case "migrate":
		return runMigrate(ctx, getenv, stdout)
	case "audit":
		return runAudit(ctx, args[1:], getenv, stdout, stderr)
	case "projections":
		return runProjections(ctx, args[1:], getenv, stdout, stderr)
	}
	fmt.Fprintf(stderr, "saasapi: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}
