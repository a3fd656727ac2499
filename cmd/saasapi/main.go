// Command saasapi runs the multi-tenant SaaS API and its operator tasks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

const usage = `saasapi: multi-tenant SaaS API (event-sourced, audit-first)

Usage:
  saasapi dev        start a private PostgreSQL cluster under SAAS_API_DEV_DIR,
                     migrate it and serve the API (and its docs) on
                     SAAS_API_HTTP_ADDR (default 127.0.0.1:8000)
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
  saasapi projections rebuild [--org ID]
                     replay all events into new read tables and swap them in;
                     writers wait only for the swap (--org: one
                     organisation's rows, only its writers wait)
  saasapi projections verify
                     prove that the read tables equal a replay of the events;
                     changes nothing
  saasapi users erase --user ID
                     erase a person: end their memberships, destroy their
                     data key, keep only their ID
  saasapi users seal-legacy [--limit N]
                     seal the personal data that versions before sealing
                     stored in plain text (resumable; as the schema owner)
  saasapi users rewrap-keys [--batch N]
                     re-wrap every person's data key from
                     SAAS_API_DATA_KEY_PREVIOUS to SAAS_API_DATA_KEY
  saasapi version    print the version and the source revision (also --version)
  saasapi help [COMMAND]
                     show this help, or a command's (also COMMAND --help)

Configuration is read from SAAS_API_* environment variables; see README.md.
`

// exitUsage is the exit status of a command line that could not be parsed.
const exitUsage = 2

func main() { os.Exit(mainStatus()) }

func mainStatus() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], environmentOf(os.Environ()), os.Stdout, os.Stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return exitUsage
	default:
		fmt.Fprintln(os.Stderr, "saasapi:", err)
		return 1
	}
}

// errUsage is returned when the command line could not be parsed; the
// usage was printed to stderr already, and the exit status is exitUsage.
var errUsage = errors.New("usage")

// environment is the process environment as run sees it: os.Environ in
// main, a map in tests.
type environment map[string]string

// environmentOf turns KEY=VALUE pairs into an environment.
func environmentOf(pairs []string) environment {
	e := environment{}
	for _, kv := range pairs {
		if k, v, ok := strings.Cut(kv, "="); ok {
			e[k] = v
		}
	}
	return e
}

// get is the environment's getenv.
func (e environment) get(name string) string { return e[name] }

// action runs a command once its flags are parsed.
type action func(ctx context.Context, env environment, stdout, stderr io.Writer) error

// command is one subcommand: its words ("projections rebuild"), its usage
// text and a function that defines its flags on a FlagSet and returns what
// to run once they are parsed.
type command struct {
	path  string
	usage string
	flags func(fs *flag.FlagSet) action
}

// noFlags is the flags function of a command that takes none.
func noFlags(a action) func(*flag.FlagSet) action {
	return func(*flag.FlagSet) action { return a }
}

// subcommands are every command; groups are the first words of those with
// two, and their usage.
var subcommands = []command{
	{"dev", devUsage, noFlags(runDev)},
	{"serve", serveUsage, noFlags(func(ctx context.Context, env environment, stdout, _ io.Writer) error {
		return runServe(ctx, env, stdout)
	})},
	{"migrate", migrateUsage, noFlags(func(ctx context.Context, env environment, stdout, stderr io.Writer) error {
		return runMigrate(ctx, env, stdout, stderr)
	})},
	{"audit verify", auditVerifyUsage, auditVerifyFlags},
	{"audit verify-export", verifyExportUsage, verifyExportFlags},
	{"audit monitor", monitorUsage, monitorFlags},
	{"audit keygen", keygenUsage, keygenFlags},
	{"projections rebuild", projectionsRebuildUsage, projectionsRebuildFlags},
	{"projections verify", projectionsVerifyUsage, noFlags(func(ctx context.Context, env environment, stdout, stderr io.Writer) error {
		return runProjections(ctx, "verify", env, stdout, stderr)
	})},
	{"users erase", usersEraseUsage, usersEraseFlags},
	{"users seal-legacy", usersSealLegacyUsage, usersSealLegacyFlags},
	{"users rewrap-keys", usersRewrapKeysUsage, usersRewrapKeysFlags},
	{"version", versionUsage, noFlags(func(_ context.Context, _ environment, stdout, _ io.Writer) error {
		fmt.Fprint(stdout, versionText(debug.ReadBuildInfo()))
		return nil
	})},
}

var groups = map[string]string{"audit": auditUsage, "projections": projectionsUsage, "users": usersUsage}

const devUsage = `Usage: saasapi dev

Start (initialising it on first use) a private PostgreSQL cluster under
SAAS_API_DEV_DIR (default .data), apply the migrations and serve the API on
SAAS_API_HTTP_ADDR (default 127.0.0.1:8000), with /docs, /redoc and
/openapi.json unless SAAS_API_DOCS_ENABLED=false. As root, a directory the
postgres user cannot reach is replaced by one under /var/lib/saasapi-dev.
One data directory serves one dev at a time. Ctrl-C stops the server, then
the cluster.
`

const serveUsage = `Usage: saasapi serve

Serve the API against SAAS_API_DATABASE_URL on SAAS_API_HTTP_ADDR (default
:8000). It never starts a database and does not migrate: run
saasapi migrate first.
`

const migrateUsage = `Usage: saasapi migrate

Apply the embedded migrations to SAAS_API_DATABASE_URL (safe to repeat) and
print the schema version.
`

const versionUsage = `Usage: saasapi version

Print the version and the source revision the binary was built from (also
saasapi --version).
`

// run is the whole program; tests call it with their own arguments,
// environment and output, and cancel ctx to stop it.
func run(ctx context.Context, args []string, env environment, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		if len(args) > 1 {
			return unexpected(stderr, "saasapi", args[1], usage)
		}
		fmt.Fprint(stdout, usage)
		return nil
	case "help":
		return help(args[1:], stdout, stderr)
	case "-version", "--version":
		args[0] = "version"
	}
	cmd, rest, err := find(args, stdout, stderr)
	if cmd == nil {
		return err
	}
	fs := flag.NewFlagSet("saasapi "+cmd.path, flag.ContinueOnError)
	fs.SetOutput(stderr) // the parse error; the usage is printed below
	fs.Usage = func() {}
	act := cmd.flags(fs)
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, cmd, fs)
			return nil
		}
		fmt.Fprintln(stderr)
		printUsage(stderr, cmd, fs)
		return errUsage
	}
	if fs.NArg() > 0 {
		return unexpected(stderr, fs.Name(), fs.Arg(0), cmd.usage)
	}
	return act(ctx, env, stdout, stderr)
}

// find returns the command args name and the arguments after its words.
// When there is none, it prints why and returns the error to return (nil
// for a group's --help).
func find(args []string, stdout, stderr io.Writer) (*command, []string, error) {
	for i := range subcommands {
		words := strings.Fields(subcommands[i].path)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == subcommands[i].path {
			return &subcommands[i], args[len(words):], nil
		}
	}
	groupUsage, ok := groups[args[0]]
	switch {
	case !ok:
		fmt.Fprintf(stderr, "saasapi: unknown command %q\n\n%s", args[0], usage)
	case len(args) == 2 && (args[1] == "-h" || args[1] == "-help" || args[1] == "--help"):
		fmt.Fprint(stdout, groupUsage)
		return nil, nil, nil
	case len(args) == 1:
		fmt.Fprintf(stderr, "saasapi %s: which one?\n\n%s", args[0], groupUsage)
	default:
		fmt.Fprintf(stderr, "saasapi %s: unknown command %q\n\n%s", args[0], args[1], groupUsage)
	}
	return nil, nil, errUsage
}

// help runs `saasapi help [COMMAND...]`.
func help(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if g, ok := groups[args[0]]; ok && len(args) == 1 {
		fmt.Fprint(stdout, g)
		return nil
	}
	cmd, rest, err := find(args, io.Discard, stderr)
	if cmd == nil {
		return err
	}
	if len(rest) > 0 {
		return unexpected(stderr, "saasapi help", rest[0], usage)
	}
	fs := flag.NewFlagSet("saasapi "+cmd.path, flag.ContinueOnError)
	cmd.flags(fs)
	printUsage(stdout, cmd, fs)
	return nil
}

// printUsage writes a command's usage and, if it has any, its flags.
func printUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprint(w, cmd.usage)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

func unexpected(stderr io.Writer, name, arg, usage string) error {
	fmt.Fprintf(stderr, "%s: unexpected argument %q\n\n%s", name, arg, usage)
	return errUsage
}

// versionText is the version of the main module and the VCS revision, as
// the Go toolchain recorded them in the binary (debug.ReadBuildInfo). The
// revision is there when the binary was built in a git checkout with
// -buildvcs (make build passes it).
func versionText(bi *debug.BuildInfo, ok bool) string {
	version, revision, when, modified := "(unknown)", "unknown", "", false
	if ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "saasapi %s\nrevision %s", version, revision)
	if when != "" {
		fmt.Fprintf(&b, " (%s)", when)
	}
	if modified {
		b.WriteString(" with uncommitted changes")
	}
	fmt.Fprintf(&b, "\n%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}
