package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/saasapi/saasapi/internal/pgcluster"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/migrations"
)

func TestMain(m *testing.M) { os.Exit(testdb.Run(m)) }

// lockedBuffer is a log sink that the server writes to while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestHelpListsSubcommands(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--help"}, environment(nil), &out, io.Discard); err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, sub := range []string{"dev", "serve", "migrate"} {
		if !strings.Contains(out.String(), "saasapi "+sub) {
			t.Errorf("--help does not list %q:\n%s", sub, out.String())
		}
	}
}

func TestUnknownSubcommandFails(t *testing.T) {
	t.Parallel()
	var errOut bytes.Buffer
	if err := run(t.Context(), []string{"frobnicate"}, environment(nil), io.Discard, &errOut); err == nil {
		t.Fatal("unknown subcommand succeeded")
	}
	if !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("stderr does not name the unknown command: %s", errOut.String())
	}
}

func TestServeRefusesPlaceholderSecretOutsideLocal(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"serve"}, environment(map[string]string{
		"SAAS_API_ENVIRONMENT":  "production",
		"SAAS_API_DATABASE_URL": "postgres://127.0.0.1:1/none",
	}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "SAAS_API_JWT_SECRET") {
		t.Fatalf("serve with the placeholder secret in production: got %v, want an error naming SAAS_API_JWT_SECRET", err)
	}
}

func TestServeRequiresDatabaseURL(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"serve"}, environment(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "SAAS_API_DATABASE_URL") {
		t.Fatalf("serve without a database URL: got %v, want an error naming SAAS_API_DATABASE_URL", err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	env := environment(map[string]string{"SAAS_API_DATABASE_URL": testdb.NewEmpty(t).URL})
	want := fmt.Sprintf("schema version %d (latest %d)\n", migrations.Latest(), migrations.Latest())
	for i := range 2 {
		var out bytes.Buffer
		if err := run(t.Context(), []string{"migrate"}, env, &out, io.Discard); err != nil {
			t.Fatalf("migrate run %d: %v", i+1, err)
		}
		if out.String() != want {
			t.Errorf("migrate run %d printed %q, want %q", i+1, out.String(), want)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// started is a running instance of the program.
type started struct {
	addr string
	logs *lockedBuffer
	stop func() error
	// exited is closed when the program returned on its own.
	exited chan struct{}
	err    error
}

// start runs the program in the background and returns once it listens.
func start(t *testing.T, args []string, vars map[string]string) *started {
	t.Helper()
	addr := freePort(t)
	vars["SAAS_API_HTTP_ADDR"] = addr
	ctx, cancel := context.WithCancel(context.Background())
	logs := &lockedBuffer{}
	s := &started{addr: addr, logs: logs, exited: make(chan struct{})}
	go func() {
		s.err = run(ctx, args, environment(vars), logs, logs)
		close(s.exited)
	}()
	s.stop = func() error {
		cancel()
		select {
		case <-s.exited:
			return s.err
		case <-time.After(time.Minute):
			return fmt.Errorf("did not stop within a minute")
		}
	}
	t.Cleanup(func() { _ = s.stop() })
	return s
}

// get fetches a path and decodes the JSON body.
func get(addr, path string) (int, map[string]any, error) {
	req, err := http.NewRequestWithContext(context.Background(), "GET", "http://"+addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = res.Body.Close() }()
	var body map[string]any
	_ = json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body, nil
}

// waitReady polls /readyz until it answers 200 and returns how long it took.
func waitReady(t *testing.T, s *started, begin time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if status, _, err := get(s.addr, "/readyz"); err == nil && status == http.StatusOK {
			return time.Since(begin)
		}
		select {
		case <-s.exited:
			t.Fatalf("the program exited before it was ready: %v; logs:\n%s", s.err, s.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("/readyz never answered 200; logs:\n%s", s.logs.String())
	return 0
}

func post(addr, path string, body any) (int, map[string]any, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(context.Background(), "POST", "http://"+addr+path, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = res.Body.Close() }()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out, nil
}

// TestDevKeepsDataAcrossRestarts runs `saasapi dev` twice on one data
// directory: the account registered in the first run can sign in during the
// second. The directory is under a 0700 parent, as a clone under /root is:
// run as root, the cluster is then relocated where the postgres user can
// reach it, and the same directory is used again on the second start. While
// the first runs, a second dev on the directory is refused at once and the
// first keeps its database. It prints how long /readyz took on a fresh and
// on an existing directory.
func TestDevKeepsDataAcrossRestarts(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "clone", ".data") // t.TempDir is 0700
	relocated := pgcluster.RelocationBase + "/"
	if os.Geteuid() == 0 {
		t.Cleanup(func() { _ = os.RemoveAll(relocatedDir(t, dir)) })
	}
	vars := map[string]string{"SAAS_API_DEV_DIR": dir, "SAAS_API_ENVIRONMENT": "test",
		"SAAS_API_DOCS_ENABLE": "false"} // misspelt: a warning, and docs stay on
	credentials := map[string]any{"email": "dev-restart@example.com", "password": "correct horse battery staple"}

	begin := time.Now()
	first := start(t, []string{"dev"}, vars)
	t.Logf("dev: /readyz after %v on a fresh data directory", waitReady(t, first, begin))
	logs := first.logs.String()
	if os.Geteuid() == 0 && !strings.Contains(logs, `"msg":"local PostgreSQL running in `+relocated) {
		t.Errorf("as root, dev did not say it keeps the cluster under %s; logs:\n%s", relocated, logs)
	}
	base := "http://" + first.addr
	announced := fmt.Sprintf(`"api":%q,"docs":%q,"redoc":%q,"openapi":%q,"metrics":%q,"database_url":"postgres://`,
		base, base+"/docs", base+"/redoc", base+"/openapi.json", base+"/metrics")
	if n := strings.Count(logs, `"database_url"`); n != 1 || !strings.Contains(logs, announced) {
		t.Errorf("dev did not log the URLs to open once (%d database URLs), want %s; logs:\n%s", n, announced, logs)
	}
	if !strings.Contains(logs, `"level":"WARN","msg":"SAAS_API_DOCS_ENABLE is not a setting and is ignored; did you mean SAAS_API_DOCS_ENABLED?"`) {
		t.Errorf("dev did not warn about a misspelt setting; logs:\n%s", logs)
	}
	for _, path := range []string{"/docs", "/redoc", "/openapi.json"} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("dev: GET %s = %d, want 200 (docs are on in dev)", path, res.StatusCode)
		}
	}
	status, _, err := post(first.addr, "/auth/register", map[string]any{
		"email": credentials["email"], "password": credentials["password"], "display_name": "Dev",
	})
	if err != nil || status != http.StatusCreated {
		t.Fatalf("register: %d %v", status, err)
	}

	// A second dev on the same directory, on another port or on the same
	// one (make run twice): refused at once, naming the directory and the
	// process, and the first keeps its database.
	for _, addr := range []string{freePort(t), first.addr} {
		var secondOut bytes.Buffer
		refusedAt := time.Now()
		err = run(t.Context(), []string{"dev"}, environment(map[string]string{
			"SAAS_API_DEV_DIR": dir, "SAAS_API_ENVIRONMENT": "test", "SAAS_API_HTTP_ADDR": addr,
		}), &secondOut, &secondOut)
		if err == nil || !strings.Contains(err.Error(), "the data directory "+dir+" ") ||
			!strings.Contains(err.Error(), fmt.Sprintf("in use by process %d", os.Getpid())) {
			t.Errorf("second dev on %s (address %s): err = %v, want one naming the directory and process %d",
				dir, addr, err, os.Getpid())
		}
		t.Logf("dev: a second dev on the directory (address %s) was refused after %v: %v",
			addr, time.Since(refusedAt).Round(time.Millisecond), err)
	}
	if status, _, err := post(first.addr, "/auth/login", credentials); err != nil || status != http.StatusOK {
		t.Fatalf("the first dev lost its database after a refused second dev: %d %v", status, err)
	}

	firstKey := verifierKeyOf(t, first.addr)
	if err := first.stop(); err != nil {
		t.Fatalf("first run stopped with %v; logs:\n%s", err, first.logs.String())
	}
	keyDir := dir // the key lives with the cluster, wherever dev put it
	if _, err := os.Stat(filepath.Join(dir, "CLUSTER-IS-ELSEWHERE.txt")); err == nil {
		keyDir = relocatedDir(t, dir)
	}
	if fi, err := os.Stat(filepath.Join(keyDir, devKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("dev's ledger signing key file: %v, %v; want it private to its owner", fi, err)
	}
	for _, line := range []string{`"msg":"shutting down"`, `"msg":"local PostgreSQL stopped"`} {
		if !strings.Contains(first.logs.String(), line) {
			t.Errorf("logs lack %s:\n%s", line, first.logs.String())
		}
	}

	begin = time.Now()
	second := start(t, []string{"dev"}, vars)
	t.Logf("dev: /readyz after %v on an existing data directory", waitReady(t, second, begin))
	status, body, err := post(second.addr, "/auth/login", credentials)
	if err != nil || status != http.StatusOK || body["token_type"] != "bearer" {
		t.Fatalf("login after restart: %d %v %v", status, body, err)
	}
	if key := verifierKeyOf(t, second.addr); key != firstKey {
		t.Errorf("the verifier key changed across restarts: %q, then %q", firstKey, key)
	}
	if err := second.stop(); err != nil {
		t.Fatalf("second run stopped with %v", err)
	}
}

// relocatedDir is where dev keeps the cluster of dir when the postgres user
// cannot reach it, as the note it leaves in dir says.
func relocatedDir(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "CLUSTER-IS-ELSEWHERE.txt"))
	if err != nil {
		return filepath.Join(pgcluster.RelocationBase, "none")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, pgcluster.RelocationBase+"/") {
			return l
		}
	}
	return filepath.Join(pgcluster.RelocationBase, "none")
}

// TestServeKeepsDocsOff: serve follows the contract's default, docs off.
func TestServeKeepsDocsOff(t *testing.T) {
	t.Parallel()
	s := start(t, []string{"serve"}, map[string]string{"SAAS_API_DATABASE_URL": testdb.New(t).URL, "SAAS_API_ENVIRONMENT": "test"})
	waitReady(t, s, time.Now())
	if status, _, err := get(s.addr, "/docs"); err != nil || status != http.StatusNotFound {
		t.Errorf("serve: GET /docs = %d %v, want 404", status, err)
	}
}

// verifierKeyOf fetches the ledger verifier key of the server at addr.
func verifierKeyOf(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/ledger/verifier-key") //nolint:noctx // a test's one-off request
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "+") {
		t.Fatalf("GET /ledger/verifier-key: %d %q %v", resp.StatusCode, b, err)
	}
	return string(b)
}

// TestServeIsNotReadyUntilMigrated starts serve against an empty database:
// /readyz says not_ready until `saasapi migrate` ran, then ready.
func TestServeIsNotReadyUntilMigrated(t *testing.T) {
	t.Parallel()
	dbURL := testdb.NewEmpty(t).URL
	vars := map[string]string{"SAAS_API_DATABASE_URL": dbURL, "SAAS_API_ENVIRONMENT": "test"}
	s := start(t, []string{"serve"}, vars)
	deadline := time.Now().Add(time.Minute)
	for {
		status, body, err := get(s.addr, "/readyz")
		if err == nil {
			if status != http.StatusServiceUnavailable || body["status"] != "not_ready" {
				t.Fatalf("unmigrated /readyz: %d %v, want 503 not_ready", status, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never listened: %v\n%s", err, s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := run(t.Context(), []string{"migrate"}, environment(vars), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	waitReady(t, s, time.Now())
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}
