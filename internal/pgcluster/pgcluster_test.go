package pgcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// clusterDir returns a not yet existing directory for a cluster. As root,
// the server runs as postgres, which must be able to traverse the 0700
// directories that t.TempDir creates.
func clusterDir(t *testing.T, elem ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(append([]string{dir}, elem...)...)
}

func start(t *testing.T, opts Options) *Cluster {
	t.Helper()
	opts.Fast = true
	opts.Logf = t.Logf
	began := time.Now()
	c, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %v", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return c
}

func connect(t *testing.T, c *Cluster, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), c.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := clusterDir(t, "cluster")

	c := start(t, Options{Dir: dir})
	conn := connect(t, c, AppDatabase) // Start created the app database
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, c.URL(AppDatabase)); err == nil {
		t.Fatal("server still accepts connections after Stop")
	}

	c2 := start(t, Options{Dir: dir})
	var v string
	if err := connect(t, c2, AppDatabase).QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != "hello" {
		t.Fatalf("got %q after restart, want hello", v)
	}
	if _, err := os.Stat(filepath.Join(dir, "postgres.log")); err != nil {
		t.Error(err)
	}
}

func TestReuseRunningAndLongDir(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	// Too deep for Dir/sock/.s.PGSQL.<port> to fit a unix socket path.
	dir := clusterDir(t, strings.Repeat("d", 60), strings.Repeat("e", 40))

	c := start(t, Options{Dir: dir})
	if c.sockTemp == "" {
		t.Errorf("socket directory for %s not moved to a short path", dir)
	}
	var one int
	if err := connect(t, c, "postgres").QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}

	again := start(t, Options{Dir: dir})
	if again.Port() != c.Port() {
		t.Errorf("second Start on a running cluster: port %d, want the running %d", again.Port(), c.Port())
	}
	if _, err := Start(ctx, Options{Dir: dir, Port: c.Port() + 1}); err == nil ||
		!strings.Contains(err.Error(), "already running") {
		t.Errorf("Start asking another port of a running cluster: err = %v, want 'already running'", err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := again.Stop(ctx); err != nil {
		t.Errorf("Stop of a cluster already stopped: %v", err)
	}
}

func TestStartAfterCrash(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := clusterDir(t, "cluster")

	c := start(t, Options{Dir: dir})
	pid, _, err := readPIDFile(c.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// kill returns before the process is gone.
	for deadline := time.Now().Add(10 * time.Second); processAlive(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still alive after SIGKILL", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// postmaster.pid now names a dead process, and the killed server's
	// backends may still hold its shared memory for a moment.
	c2 := start(t, Options{Dir: dir})
	connect(t, c2, "postgres")
	if err := c2.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// A postmaster.pid naming a live process that is not postgres, as after
	// a reboot that reused the PID.
	pidFile := filepath.Join(c.dataDir, "postmaster.pid")
	fake := strconv.Itoa(os.Getpid()) + "\n" + c.dataDir + "\n0\n5432\n\n\n0 0\nready\n"
	if err := os.WriteFile(pidFile, []byte(fake), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.user.chown(pidFile); err != nil {
		t.Fatal(err)
	}
	c3 := start(t, Options{Dir: dir})
	connect(t, c3, "postgres")
}

func TestStartTemp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	orphan, err := StartTemp(ctx, Options{Fast: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = orphan.Stop(context.Background()) }) // reaped: nothing left to stop
	pid, _, err := readPIDFile(orphan.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	// Make it look like the cluster of a process that died without Stop.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	owner := []byte(strconv.Itoa(dead.Process.Pid) + "\n")
	if err := os.WriteFile(filepath.Join(orphan.dir, ownerFile), owner, 0o644); err != nil {
		t.Fatal(err)
	}

	c, err := StartTemp(ctx, Options{Fast: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan.dir); !os.IsNotExist(err) {
		t.Errorf("orphaned cluster %s not removed: %v", orphan.dir, err)
	}
	if isPostgres(pid) {
		t.Errorf("orphaned server (pid %d) still running", pid)
	}
	connect(t, c, AppDatabase)
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir()); !os.IsNotExist(err) {
		t.Errorf("Stop left %s behind: %v", c.Dir(), err)
	}
}

func TestFindBinaries(t *testing.T) {
	t.Parallel()
	dir, err := FindBinaries()
	if err != nil {
		t.Skip(err)
	}
	if !hasServerBinaries(dir) {
		t.Errorf("FindBinaries() = %s, which lacks initdb, pg_ctl or postgres", dir)
	}
	if v, err := majorVersion(dir); err != nil || v == "" {
		t.Errorf("majorVersion(%s) = %q, %v", dir, v, err)
	}
}
