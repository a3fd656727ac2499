package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/progress"
)

const usersUsage = `Usage:
  saasapi users erase --user ID   erase a person (a data subject request
                                  received by other channels)
  saasapi users seal-legacy [--limit N]
                                  seal the personal data that versions
                                  before sealing stored in plain text
  saasapi users rewrap-keys [--batch N]
                                  re-wrap every person's data key under a
                                  new SAAS_API_DATA_KEY
`

const usersEraseUsage = `Usage: saasapi users erase --user ID

Erase the user ID as DELETE /me does, without their password: end each of
their memberships (member.removed in every organisation's ledger), record
user.erased in their own ledger, destroy their data key (the email and
display name in their events can no longer be read), delete their
credentials and keep only their ID in the users table. The last owner of
an organisation is refused until they hand over. Needs SAAS_API_DATABASE_URL
and SAAS_API_DATA_KEY. Safe to repeat after an interruption. Exit status: 0
erased, 1 refused or failed, 2 usage. See docs/operations.md.
`

// usersEraseFlags defines the flags of `saasapi users erase`.
func usersEraseFlags(fs *flag.FlagSet) action {
	user := fs.String("user", "", "the `ID` of the user to erase")
	return func(ctx context.Context, env environment, stdout, stderr io.Writer) error {
		id, err := saasapi.ParseID(*user)
		if *user == "" || err != nil {
			return usageFail(stderr, "users erase", "--user must be a user ID", usersEraseUsage)
		}
		return runUsersErase(ctx, id, env, stdout, stderr)
	}
}

func runUsersErase(ctx context.Context, id saasapi.ID, env environment, stdout, stderr io.Writer) error {
	pool, err := opsPool(ctx, env, stderr, "users erase")
	if err != nil {
		return err
	}
	defer pool.Close()
	keys, err := opsKeyring(ctx, env, pool)
	if err != nil {
		return fmt.Errorf("users erase: %w", err)
	}
	svc := commands.New(pool, commands.Config{Keys: keys})
	defer svc.Close()
	meta := commands.Meta{Principal: saasapi.Principal{Type: saasapi.PrincipalSystem}}
	if err := svc.EraseUser(ctx, meta, id, nil); err != nil {
		return fmt.Errorf("users erase: %w", err)
	}
	fmt.Fprintf(stdout, "erased user %s\n", id)
	return nil
}

const usersSealLegacyUsage = `Usage: saasapi users seal-legacy [--limit N]

Seal the personal fields (email, display name) that versions before sealing
stored in plain text in the events of users' ledgers. Each ledger is done in
one transaction: the person's data key is created if they have none (an
erased person's values are sealed under a key that is never kept), the plain
fields are replaced by sealed ones, the ledger's hash chain and Merkle tree
are recomputed, its last signed checkpoint is dropped (the next one is
signed afresh), and the old and new head and root are recorded in the table
ledger_reseals. Ledgers already sealed are skipped, so the command can be
interrupted and run again. It must connect as the schema owner (the role
that runs saasapi migrate) with SAAS_API_DATABASE_URL, and needs
SAAS_API_DATA_KEY; the service may keep running. A ledger whose stored chain
does not verify is left alone and reported. Exit status: 0 nothing left in
plain text (or --limit reached), 1 a failure or a ledger left, 2 usage. See
docs/operations.md.
`

// usersSealLegacyFlags defines the flags of `saasapi users seal-legacy`.
func usersSealLegacyFlags(fs *flag.FlagSet) action {
	limit := fs.Int("limit", 0, "seal at most `N` ledgers, then stop (0: all)")
	return func(ctx context.Context, env environment, stdout, stderr io.Writer) error {
		if *limit < 0 {
			return usageFail(stderr, "users seal-legacy", "--limit must not be negative", usersSealLegacyUsage)
		}
		return withKeyring(ctx, env, stderr, "users seal-legacy", func(pool *pgxpool.Pool, keys *saasapi.DataKeyring) error {
			return sealLegacy(ctx, pool, keys, *limit, stdout, stderr, nil)
		})
	}
}

// withKeyring runs f with the pool and the checked keyring of an operator
// command.
func withKeyring(ctx context.Context, env environment, stderr io.Writer, command string,
	f func(*pgxpool.Pool, *saasapi.DataKeyring) error,
) error {
	pool, err := opsPool(ctx, env, stderr, command)
	if err != nil {
		return err
	}
	defer pool.Close()
	keys, err := opsKeyring(ctx, env, pool)
	if err != nil {
		return fmt.Errorf("%s: %w", command, err)
	}
	return f(pool, keys)
}

// sealLegacyPage is how many ledgers one query of sealLegacy finds.
const sealLegacyPage = 200

// sealLegacy seals the plain personal data of up to limit ledgers (0: all),
// calling done, if not nil, after each ledger's transaction committed.
func sealLegacy(ctx context.Context, db interface {
	commands.Querier
	commands.TxBeginner
}, keys *saasapi.DataKeyring, limit int, stdout, stderr io.Writer, done func(*eventstore.Reseal),
) error {
	total, err := commands.CountPlainPersonalEvents(ctx, db)
	if err != nil {
		return fmt.Errorf("users seal-legacy: %w", err)
	}
	meter := progress.New(stderr, "users seal-legacy")
	meter.SetTotal(total)
	var (
		ledgers, events int64
		left            []string
		after           saasapi.ID
	)
	for limit == 0 || ledgers < int64(limit) {
		ids, err := commands.PlainPersonalLedgers(ctx, db, after, sealLegacyPage)
		if err != nil {
			return fmt.Errorf("users seal-legacy: %w", err)
		}
		for _, id := range ids {
			if limit > 0 && ledgers == int64(limit) {
				break
			}
			after = id
			r, err := commands.SealPlainLedger(ctx, db, keys, id)
			var ce *eventstore.ChainError
			switch {
			case errors.As(err, &ce):
				fmt.Fprintf(stderr, "users seal-legacy: %v\n", err)
				left = append(left, string(id))
				continue
			case err != nil:
				return fmt.Errorf("users seal-legacy: %w (the ledgers sealed so far stay sealed; run again to go on)", err)
			case r == nil:
				continue // sealed meanwhile
			}
			ledgers++
			events += int64(r.EventsChanged)
			meter.Add(int64(r.EventsChanged))
			if done != nil {
				done(r)
			}
		}
		if len(ids) < sealLegacyPage {
			break
		}
	}
	meter.Finish()
	fmt.Fprintf(stdout, "sealed %d ledgers (%d events with personal data in plain text)\n", ledgers, events)
	remaining, err := commands.CountPlainPersonalEvents(ctx, db)
	if err != nil {
		return fmt.Errorf("users seal-legacy: %w", err)
	}
	switch {
	case len(left) > 0:
		return fmt.Errorf("users seal-legacy: %d ledgers do not verify and were left in plain text (run saasapi audit verify): %s",
			len(left), strings.Join(left, ", "))
	case remaining > 0 && limit > 0 && ledgers == int64(limit):
		fmt.Fprintf(stdout, "%d events still hold personal data in plain text: run again to go on\n", remaining)
	case remaining > 0:
		return fmt.Errorf("users seal-legacy: %d events still hold personal data in plain text (written meanwhile by an earlier version?): run again", remaining)
	default:
		fmt.Fprintln(stdout, "no personal data is left in plain text")
	}
	return nil
}

const usersRewrapKeysUsage = `Usage: saasapi users rewrap-keys [--batch N]

Re-wrap every person's data key (person_keys) from the key-encryption key in
SAAS_API_DATA_KEY_PREVIOUS to the one in SAAS_API_DATA_KEY, N keys per
transaction, then move the key check value to the new key. The start is
recorded in data_key_check, so a rotation left half-done is detected at
start-up (processes are then refused unless they hold both keys) and
finished by running the command again with the same two keys. Keys are
unwrapped only in this process; the database sees wrapped keys alone. Run
it after every process of the service holds both keys, and remove
SAAS_API_DATA_KEY_PREVIOUS once it has finished. Needs the schema owner's
SAAS_API_DATABASE_URL. Exit status: 0 finished (or nothing to do), 1 a
failure, 2 usage. See docs/runbook.md.
`

// usersRewrapKeysFlags defines the flags of `saasapi users rewrap-keys`.
func usersRewrapKeysFlags(fs *flag.FlagSet) action {
	batch := fs.Int("batch", 1000, "re-wrap `N` keys per transaction")
	return func(ctx context.Context, env environment, stdout, stderr io.Writer) error {
		if *batch < 1 {
			return usageFail(stderr, "users rewrap-keys", "--batch must be at least 1", usersRewrapKeysUsage)
		}
		return withKeyring(ctx, env, stderr, "users rewrap-keys", func(pool *pgxpool.Pool, keys *saasapi.DataKeyring) error {
			return rewrapKeys(ctx, pool, keys, *batch, stdout, stderr, nil)
		})
	}
}

// rewrapKeys runs the rotation, calling done, if not nil, after each batch
// committed.
func rewrapKeys(ctx context.Context, db commands.TxBeginner, keys *saasapi.DataKeyring, batch int,
	stdout, stderr io.Writer, done func(n int),
) error {
	left, err := commands.BeginRewrap(ctx, db, keys)
	if errors.Is(err, commands.ErrRotationDone) {
		fmt.Fprintf(stdout, "the data keys are wrapped with %s already: nothing to do\n", saasapi.EnvDataKey)
		return nil
	}
	if err != nil {
		return fmt.Errorf("users rewrap-keys: %w", err)
	}
	meter := progress.New(stderr, "users rewrap-keys")
	meter.SetTotal(left)
	var (
		after saasapi.ID
		total int
	)
	for {
		var n int
		after, n, err = commands.RewrapBatch(ctx, db, keys, after, batch)
		if err != nil {
			return fmt.Errorf("users rewrap-keys: %w (the keys re-wrapped so far stay so; run again to go on)", err)
		}
		total += n
		meter.Add(int64(n))
		if done != nil && n > 0 {
			done(n)
		}
		if n < batch {
			break
		}
	}
	n, err := commands.FinishRewrap(ctx, db, keys)
	if err != nil {
		return fmt.Errorf("users rewrap-keys: %w (run again to finish)", err)
	}
	meter.Add(int64(n))
	meter.Finish()
	fmt.Fprintf(stdout, "re-wrapped %d data keys under %s; the key check value names it now: remove %s from every process\n",
		total+n, saasapi.EnvDataKey, saasapi.EnvDataKeyPrevious)
	return nil
}
