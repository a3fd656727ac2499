package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/saasapi/saasapi/eventstore"
)

// The ledger checkpoints' signing key (docs/audit.md). It never enters the
// database: whoever can write only to the database cannot sign a checkpoint.
// Outside local and test the service refuses to start without one, as it
// does without a real JWT secret; dev keeps a generated one under its data
// directory, next to the cluster; serve in local or test generates one for
// the process.

// devKeyFile is the file under SAAS_API_DEV_DIR holding dev's signing key.
const devKeyFile = "ledger-signing.key"

// ledgerOrigin is the origin prefix of every checkpoint.
func (c Config) ledgerOrigin() string {
	if c.LedgerOrigin != "" {
		return c.LedgerOrigin
	}
	return eventstore.DefaultOrigin(c.AppName)
}

// relaxed reports whether the environment is a developer's machine or a
// test, where generated secrets are allowed.
func (c Config) relaxed() bool {
	return strings.EqualFold(c.Environment, "local") || strings.EqualFold(c.Environment, "test")
}

// checkLedgerConfig validates SAAS_API_LEDGER_ORIGIN and, when set,
// SAAS_API_LEDGER_SIGNING_KEY.
func (c Config) checkLedgerConfig() error {
	if err := eventstore.CheckOrigin(c.ledgerOrigin()); err != nil {
		return fmt.Errorf("%sLEDGER_ORIGIN %w", envPrefix, err)
	}
	if c.LedgerSigningKey == "" {
		return nil
	}
	if _, err := eventstore.NewLedgerSigner(c.LedgerSigningKey, c.ledgerOrigin()); err != nil {
		return fmt.Errorf("%sLEDGER_SIGNING_KEY is %w (generate one with `saasapi audit keygen`)", envPrefix, err)
	}
	return nil
}

// ledgerSigner returns the checkpoints' signer. Without a key it refuses
// outside local and test, and otherwise generates one for this process.
func (c Config) ledgerSigner(logger *slog.Logger) (*eventstore.LedgerSigner, error) {
	key := c.LedgerSigningKey
	if key == "" {
		if !c.relaxed() {
			return nil, fmt.Errorf("%sLEDGER_SIGNING_KEY is required when %sENVIRONMENT is not local or test (it is %q): "+
				"generate one with `saasapi audit keygen` and keep it outside the database", envPrefix, envPrefix, c.Environment)
		}
		var err error
		if key, err = eventstore.GenerateSigningKey(c.ledgerOrigin()); err != nil {
			return nil, err
		}
		logger.Warn("no " + envPrefix + "LEDGER_SIGNING_KEY: checkpoints are signed with a key generated for this process, " +
			"which later processes will not have")
	}
	return eventstore.NewLedgerSigner(key, c.ledgerOrigin())
}

// devSigningKey returns dev's signing key from dir, generating and storing
// it (readable by its owner only) on first use, so that checkpoints signed
// before a restart still verify after it.
func devSigningKey(dir, origin string) (string, error) {
	return devSecret(dir, devKeyFile, "ledger signing key", func() (string, error) { return eventstore.GenerateSigningKey(origin) })
}

// devSecret returns the secret in dir/file, generating and storing it
// (readable by its owner only) on first use.
func devSecret(dir, file, what string, generate func() (string, error)) (string, error) {
	path := filepath.Join(dir, file)
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read the dev %s: %w", what, err)
	}
	key, err := generate()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("store the dev %s: %w", what, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("store the dev %s: %w", what, err)
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("store the dev %s: %w", what, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("store the dev %s: %w", what, err)
	}
	return key, nil
}
