package pgcluster

import (
	"context"
	"errors"
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
	if !again.Reused() || c.Reused() {
		t.Errorf("Reused() = %v for the second Start and %v for the first, want true and false", again.Reused(), c.Reused())
	}
	// The second Start did not start the server, so its Stop leaves it
	// running for the first.
	if err := again.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := connect(t, c, "postgres").QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("the server is gone after Stop of a Cluster that only reused it: %v", err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, c.URL("postgres")); err == nil {
		t.Fatal("server still accepts connections after Stop of the Cluster that started it")
	}
}

// TestExclusive: while one process holds a directory exclusively, another
// exclusive Start fails at once naming the holder, and the server keeps
// running; after Stop the directory is free again.
func TestExclusive(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := clusterDir(t, "cluster")
	c := start(t, Options{Dir: dir, Exclusive: true})

	began := time.Now()
	_, err := Start(ctx, Options{Dir: dir, Exclusive: true, Fast: true})
	var inUse *InUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("second exclusive Start: err = %v, want an *InUseError", err)
	}
	if inUse.PID != os.Getpid() || inUse.Dir != dir || !strings.Contains(err.Error(), dir) ||
		!strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("InUseError %+v (%q) does not name %s and process %d", inUse, err, dir, os.Getpid())
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("the refusal took %v: it should not wait", d)
	}
	if err := InUse(dir); !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Errorf("InUse while held: %v, want an *InUseError naming process %d", err, os.Getpid())
	}
	var one int
	if err := connect(t, c, "postgres").QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("the first holder's server is gone after a refused Start: %v", err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := InUse(dir); err != nil {
		t.Errorf("InUse after Stop: %v", err)
	}
	start(t, Options{Dir: dir, Exclusive: true})
}

// TestRelocate: as root, a directory under a 0700 parent cannot be reached
// by the postgres user. Without Relocate, Start says so; with it, the
// cluster lives under RelocationBase, in the same directory on every start.
func TestRelocate(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to another user; as anyone else every directory we can use is reachable")
	}
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "private", "cluster") // t.TempDir is 0700, root's
	want := relocatedDir(RelocationBase, dir)
	t.Cleanup(func() { _ = os.RemoveAll(want) })

	if _, err := Start(ctx, Options{Dir: dir, Fast: true}); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("Start without Relocate: err = %v, want one saying postgres cannot reach it", err)
	}
	c := start(t, Options{Dir: dir, Relocate: true})
	if c.Dir() != want || c.Relocated() != dir {
		t.Fatalf("Dir() = %s, Relocated() = %s; want %s and %s", c.Dir(), c.Relocated(), want, dir)
	}
	note, err := os.ReadFile(filepath.Join(dir, pointerFile))
	if err != nil || !strings.Contains(string(note), want) {
		t.Errorf("the note in %s does not name %s: %q, %v", dir, want, note, err)
	}
	if _, err := connect(t, c, AppDatabase).Exec(ctx, "CREATE TABLE kept ()"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	c2 := start(t, Options{Dir: dir, Relocate: true})
	if c2.Dir() != want {
		t.Fatalf("second start in %s, want %s", c2.Dir(), want)
	}
	if _, err := connect(t, c2, AppDatabase).Exec(ctx, "SELECT FROM kept"); err != nil {
		t.Fatalf("the relocated cluster lost its data across a restart: %v", err)
	}

	// The relocated directory belongs to one path only.
	if err := os.WriteFile(filepath.Join(want, originFile), []byte("/elsewhere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(ctx, Options{Dir: dir, Relocate: true, Fast: true}); err == nil || !strings.Contains(err.Error(), "/elsewhere") {
		t.Errorf("Start on a relocated directory of another path: err = %v", err)
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
