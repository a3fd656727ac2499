package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
)

const usersUsage = `Usage:
  saasapi users erase --user ID   erase a person (a data subject request
                                  received by other channels)
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
