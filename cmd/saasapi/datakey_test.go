package main

import (
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
	_, err := dataKeyring(Config{Environment: "production"}, nil)
	if err == nil || !strings.Contains(err.Error(), "SAAS_API_DATA_KEY") {
		t.Fatalf("production without a data key: %v, want a refusal naming SAAS_API_DATA_KEY", err)
	}
	if _, err := dataKeyring(Config{Environment: "production", DataKey: "not a key"}, nil); err == nil || !strings.Contains(err.Error(), "SAAS_API_DATA_KEY") {
		t.Fatalf("production with a malformed data key: %v", err)
	}
	if _, err := dataKeyring(Config{Environment: "production", DataKey: placeholderDataKey}, nil); err == nil || !strings.Contains(err.Error(), "placeholder") {
		t.Fatalf("production with the placeholder data key: %v", err)
	}
	if _, err := dataKeyring(Config{Environment: "local", DataKey: placeholderDataKey}, nil); err != nil {
		t.Fatalf("local with the placeholder data key: %v", err)
	}
	if _, err := dataKeyring(Config{Environment: "production", DataKey: saasapi.NewDataKEK()}, nil); err != nil {
		t.Fatalf("production with a data key: %v", err)
	}
}

func TestDevKeepsTheDataKeyOutsideTheDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := devDataKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, devDataKeyFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dev data key file %s: %v, %v; want mode 0600", path, fi, err)
	}
	again, err := devDataKey(dir)
	if err != nil || again != first {
		t.Fatalf("the dev data key changed between start-ups: %q then %q (%v)", first, again, err)
	}
	if _, err := dataKeyring(Config{Environment: "local", DataKey: first}, nil); err != nil {
		t.Fatalf("dev data key does not load: %v", err)
	}
	if _, err := dataKeyring(Config{Environment: "test"}, nil); err != nil {
		t.Fatalf("test without a data key: %v, want one generated for the process", err)
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
