package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// devDataKeyFile is where local and test environments keep a generated
// key-encryption key when SAAS_API_DATA_KEY is unset: under the dev data
// directory, beside the cluster, never in the database.
const devDataKeyFile = "secrets/data.key"

// placeholderDataKey is the public key of the Compose stack, its 32 bytes
// used as they are; like the JWT placeholder it is refused outside local
// and test.
const placeholderDataKey = "local-placeholder-data-key-32byt"

// dataKeyring returns the keyring of SAAS_API_DATA_KEY. Outside local and
// test the variable is required; there, when it is unset, the key is read
// from (or generated into) the dev data directory.
func dataKeyring(cfg Config) (*saasapi.DataKeyring, error) {
	raw := cfg.DataKey
	if raw == "" {
		if !cfg.relaxed() {
			return nil, fmt.Errorf("%s is required when %sENVIRONMENT is %q (only local and test generate one): set it to %d random bytes as 64 hex digits (openssl rand -hex 32), the same key for every replica, kept outside the database",
				saasapi.EnvDataKey, envPrefix, cfg.Environment, saasapi.DataKeySize)
		}
		var err error
		if raw, err = devDataKey(cfg.DevDir); err != nil {
			return nil, err
		}
	}
	if raw == placeholderDataKey {
		if cfg.relaxed() {
			return saasapi.NewDataKeyring([]byte(raw))
		}
		return nil, fmt.Errorf("%s is the public local placeholder, which is allowed only when %sENVIRONMENT is local or test: set it to %d random bytes (openssl rand -hex 32)",
			saasapi.EnvDataKey, envPrefix, saasapi.DataKeySize)
	}
	kek, err := saasapi.ParseDataKEK(raw)
	if err != nil {
		return nil, err
	}
	return saasapi.NewDataKeyring(kek)
}

// devDataKey reads the generated development key, creating it on first use.
func devDataKey(dir string) (string, error) {
	path := filepath.Join(dir, devDataKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read the development data key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create the development data key: %w", err)
	}
	key := saasapi.NewDataKEK()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return devDataKey(dir) // another process made it first
	}
	if err != nil {
		return "", fmt.Errorf("create the development data key: %w", err)
	}
	_, err = f.WriteString(key + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write the development data key: %w", err)
	}
	return key, nil
}

// checkedKeyring returns the keyring after checking it against the
// database's key check value.
func checkedKeyring(ctx context.Context, cfg Config, q commands.Querier) (*saasapi.DataKeyring, error) {
	keys, err := dataKeyring(cfg)
	if err != nil {
		return nil, err
	}
	if err := commands.CheckDataKey(ctx, q, keys); err != nil {
		return nil, err
	}
	return keys, nil
}
