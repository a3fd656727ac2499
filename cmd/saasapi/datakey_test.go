package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/internal/testdb"
)

func TestDataKeyRequiredOutsideLocalAndTest(t *testing.T) {
	t.Parallel()
	_, err := dataKeyring(Config{Environment: "production", DevDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "SAAS_API_DATA_KEY") {
		t.Fatalf("production without a data key: %v, want a refusal naming SAAS_API_DATA_KEY", err)
	}
	if _, err := dataKeyring(Config{Environment: "production", DataKey: "not a key"}); err == nil || !strings.Contains(err.Error(), "SAAS_API_DATA_KEY") {
		t.Fatalf("production with a malformed data key: %v", err)
	}
	if _, err := dataKeyring(Config{Environment: "production", DataKey: placeholderDataKey}); err == nil || !strings.Contains(err.Error(), "placeholder") {
		t.Fatalf("production with the placeholder data key: %v", err)
	}
	if _, err := dataKeyring(Config{Environment: "local", DataKey: placeholderDataKey}); err != nil {
		t.Fatalf("local with the placeholder data key: %v", err)
	}
	if _, err := dataKeyring(Config{Environment: "production", DataKey: saasapi.NewDataKEK()}); err != nil {
		t.Fatalf("production with a data key: %v", err)
	}
}

func TestDevGeneratesTheDataKeyOutsideTheDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Environment: "local", DevDir: dir}
	if _, err := dataKeyring(cfg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, devDataKeyFile)
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no generated key at %s: %v", path, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("generated key has mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := dataKeyring(cfg); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(first, again) {
		t.Fatal("the generated key changed between start-ups")
	}
	if _, err := saasapi.ParseDataKEK(string(first)); err != nil {
		t.Fatalf("generated key does not parse: %v", err)
	}
}

func TestServeRefusesAWrongDataKey(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	vars := map[string]string{"SAAS_API_DATABASE_URL": db.URL, "SAAS_API_ENVIRONMENT": "test", "SAAS_API_DATA_KEY": saasapi.NewDataKEK()}
	if _, err := checkedKeyring(t.Context(), Config{DataKey: vars["SAAS_API_DATA_KEY"]}, db.Pool); err != nil {
		t.Fatal(err)
	}
	vars["SAAS_API_DATA_KEY"] = saasapi.NewDataKEK()
	err := run(t.Context(), []string{"serve"}, environment(vars), io.Discard, io.Discard)
	if !errors.Is(err, saasapi.ErrWrongDataKey) || !strings.Contains(err.Error(), "SAAS_API_DATA_KEY") {
		t.Fatalf("serve with another data key: %v, want the wrong-key error naming SAAS_API_DATA_KEY", err)
	}
}
