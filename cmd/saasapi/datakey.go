package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
)

// The key-encryption key of the people's data keys (docs/security.md,
// personal data) is kept as the ledger signing key is (ledgerkey.go): never
// in the database; required outside local and test; dev keeps a generated
// one under its data directory, beside the signing key, so that the data
// sealed before a restart opens after it; serve in local or test generates
// one for the process.

// devDataKeyFile is the file under SAAS_API_DEV_DIR holding dev's data key.
const devDataKeyFile = "data.key"

// placeholderDataKey is the public key of the Compose stack, its 32 bytes
// used as they are; like the JWT placeholder it is refused outside local
// and test.
const placeholderDataKey = "local-placeholder-data-key-32byt"

// dataKeyring returns the keyring of SAAS_API_DATA_KEY and, during a
// rotation, of SAAS_API_DATA_KEY_PREVIOUS, which it unwraps with too.
func dataKeyring(cfg Config, logger *slog.Logger) (*saasapi.DataKeyring, error) {
	k, err := currentDataKeyring(cfg, logger)
	if err != nil || cfg.DataKeyPrevious == "" {
		return k, err
	}
	if cfg.DataKey == "" {
		return nil, fmt.Errorf("%s is set but %s is not: a rotation needs both", saasapi.EnvDataKeyPrevious, saasapi.EnvDataKey)
	}
	prev, err := saasapi.ParseDataKEK(cfg.DataKeyPrevious)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", saasapi.EnvDataKeyPrevious, err)
	}
	return k.WithPrevious(prev)
}

// currentDataKeyring returns the keyring of SAAS_API_DATA_KEY. Without a
// key it refuses outside local and test, and otherwise generates one for
// this process (logged, if logger is not nil).
func currentDataKeyring(cfg Config, logger *slog.Logger) (*saasapi.DataKeyring, error) {
	raw := cfg.DataKey
	switch {
	case raw == "" && !cfg.relaxed():
		return nil, fmt.Errorf("%s is required when %sENVIRONMENT is not local or test (it is %q): set it to %d random bytes as 64 hex digits (openssl rand -hex 32), the same for every replica and operator command, kept outside the database",
			saasapi.EnvDataKey, envPrefix, cfg.Environment, saasapi.DataKeySize)
	case raw == "":
		raw = saasapi.NewDataKEK()
		if logger != nil {
			logger.Warn("no " + saasapi.EnvDataKey + ": personal data is sealed under a key generated for this process, " +
				"which later processes will not have (they refuse this database)")
		}
	case raw == placeholderDataKey && cfg.relaxed():
		return saasapi.NewDataKeyring([]byte(raw))
	case raw == placeholderDataKey:
		return nil, fmt.Errorf("%s is the public local placeholder, which is allowed only when %sENVIRONMENT is local or test: set it to %d random bytes (openssl rand -hex 32)",
			saasapi.EnvDataKey, envPrefix, saasapi.DataKeySize)
	}
	kek, err := saasapi.ParseDataKEK(raw)
	if err != nil {
		return nil, err
	}
	return saasapi.NewDataKeyring(kek)
}

// devDataKey returns dev's data key from dir, generating and storing it
// (readable by its owner only) on first use.
func devDataKey(dir string) (string, error) {
	return devSecret(dir, devDataKeyFile, "data key", func() (string, error) { return saasapi.NewDataKEK(), nil })
}

// checkedKeyring returns the keyring after checking it against the
// database's key check value.
func checkedKeyring(ctx context.Context, cfg Config, q commands.Querier) (*saasapi.DataKeyring, error) {
	keys, err := dataKeyring(cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := commands.CheckDataKey(ctx, q, keys); err != nil {
		return nil, err
	}
	return keys, nil
}
