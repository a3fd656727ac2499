// Package pgcluster runs a private PostgreSQL cluster from the server
// binaries installed on the machine, so that the service and its tests need
// no database set up beforehand.
//
// A cluster lives in one directory:
//
//	Dir/data          the data directory (initdb'd on first start, kept after)
//	Dir/postgres.log  the server log
//	Dir/sock          the unix socket directory
//
// The server listens on 127.0.0.1 only and trusts every local connection
// (initdb --auth=trust): anyone who can connect to 127.0.0.1 on this machine
// can connect as the superuser "postgres". That suits a developer's machine
// and CI; production should use SAAS_API_DATABASE_URL and a real server.
//
// PostgreSQL refuses to run as root. When the calling process is root, the
// server binaries run as the "postgres" system user instead, Dir and
// everything the server writes are handed to that user, and every parent of
// Dir must be traversable by it. With Options.Relocate, a Dir it cannot
// reach (under /root, say) is replaced by a directory of its own under
// RelocationBase.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// AppDatabase is the database Start creates for the service if missing.
const AppDatabase = "saasapi"

// Superuser is the cluster's superuser, created by initdb -U.
const Superuser = "postgres"

// confFile holds the settings Start writes before every start, included at
// the end of postgresql.conf so it overrides the defaults there (ALTER
// SYSTEM, in postgresql.auto.conf, still overrides it).
const confFile = "saasapi.conf"

// maxSocketPath is the longest unix socket path the kernel accepts
// (sizeof(sun_path) - 1); PostgreSQL appends "/.s.PGSQL.<port>" to the
// socket directory.
const maxSocketPath = 107

// Options configures Start.
type Options struct {
	// Dir holds the cluster (see the package comment). It is created if
	// missing; the cluster is initialised only when Dir/data does not exist
	// yet, so data survives restarts. Required, except for StartTemp.
	Dir string
	// Port is the TCP port to listen on at 127.0.0.1. 0 picks a free one
	// at every start.
	Port int
	// Fast trades durability for speed, for tests: initdb --no-sync and a
	// server with fsync, synchronous_commit and full_page_writes off. A
	// machine crash can then corrupt the cluster.
	Fast bool
	// BinDir is the directory holding initdb, pg_ctl and postgres. Empty
	// means FindBinaries.
	BinDir string
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
	// Relocate, when we are root and the postgres user cannot reach Dir,
	// keeps the cluster in relocatedDir(RelocationBase, Dir) instead of
	// failing, and leaves a note in Dir saying where it is. The same Dir
	// always maps to the same directory, so the data survives restarts.
	Relocate bool
	// Exclusive makes the calling process the cluster's only user until
	// Stop: Start takes a lock in the cluster directory (holding our PID)
	// and fails at once, with an *InUseError, when another process holds it.
	Exclusive bool
}

// Cluster is a running PostgreSQL server started (or found running) by Start.
type Cluster struct {
	dir     string
	dataDir string
	logPath string
	binDir  string
	port    int
	user    *serverUser
	logf    func(string, ...any)

	temp     bool   // made by StartTemp: Stop removes dir
	sockTemp string // socket directory outside dir, removed by Stop
	origin   string // Options.Dir, when the cluster was relocated from it
	owner    *os.File
	reused   bool // the server was running before Start: Stop leaves it running

	mu      sync.Mutex
	stopped bool
}

// Start starts the cluster in opts.Dir, initialising it first if needed,
// and makes sure the database AppDatabase exists. If the cluster in
// opts.Dir is already running (left by an earlier process), Start reuses it
// as it is, and Stop leaves it running; it fails if opts.Port asks for
// another port.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("pgcluster: Options.Dir is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	c := &Cluster{
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "postgres.log"),
		logf:    opts.Logf,
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if err := c.start(ctx, opts); err != nil {
		if c.owner != nil {
			_ = c.owner.Close() // releases the lock; nothing was written
		}
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	var err error
	if c.user, err = lookupServerUser(); err != nil {
		return err
	}
	if c.binDir = opts.BinDir; c.binDir == "" {
		if c.binDir, err = FindBinaries(); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(c.dir), 0o755); err != nil {
		return err
	}
	if err := c.user.checkReachable(c.dir); err != nil {
		if !opts.Relocate {
			return err
		}
		if err := c.relocate(err); err != nil {
			return err
		}
	}
	if err := c.user.mkdirOwned(c.dir); err != nil {
		return err
	}
	if opts.Exclusive {
		if c.owner, err = lockOwner(c.dir); err != nil {
			return err
		}
	}
	// Two processes starting the same Dir at once (say, two `saasapi serve`)
	// would otherwise both run initdb or both pg_ctl start.
	unlock, err := lockDir(ctx, c.dir)
	if err != nil {
		return err
	}
	defer unlock()

	if err := c.initdb(ctx, opts.Fast); err != nil {
		return err
	}
	if err := c.checkVersion(opts.BinDir != ""); err != nil {
		return err
	}
	running, port, err := c.status(ctx)
	if err != nil {
		return err
	}
	if running {
		if opts.Port != 0 && opts.Port != port {
			return fmt.Errorf("the cluster in %s is already running on port %d, not %d: stop it first "+
				"(%s stop -D %s)", c.dir, port, opts.Port, filepath.Join(c.binDir, "pg_ctl"), c.dataDir)
		}
		c.port = port
		c.reused = true
		c.logf("pgcluster: reusing the server already running in %s on port %d (it is left running at the end)", c.dir, port)
	} else if err := c.startServer(ctx, opts); err != nil {
		return err
	}
	if err := c.ensureDatabase(ctx, AppDatabase); err != nil {
		return fmt.Errorf("server in %s on port %d: %w", c.dir, c.port, err)
	}
	return nil
}

// initdb creates the data directory unless it exists. It initialises a
// sibling directory and renames it into place, so that Dir/data exists only
// once initdb has finished and a killed initdb is simply redone.
func (c *Cluster) initdb(ctx context.Context, fast bool) error {
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); err == nil {
		return nil
	}
	if _, err := os.Stat(c.dataDir); err == nil {
		return fmt.Errorf("%s exists but is not a PostgreSQL data directory (no PG_VERSION); "+
			"remove it to start afresh", c.dataDir)
	}
	tmp := c.dataDir + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	began := time.Now()
	args := []string{"-D", tmp, "-U", Superuser, "--auth=trust", "-E", "UTF8", "--locale=C"}
	if fast {
		args = append(args, "--no-sync")
	}
	if out, err := c.run(ctx, "initdb", args...); err != nil {
		_ = os.RemoveAll(tmp) // best effort: the next start removes it too
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(tmp, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n# Settings managed by saasapi (pgcluster), rewritten at every start.\ninclude_if_exists = '%s'\n", confFile)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, c.dataDir); err != nil {
		return err
	}
	c.logf("pgcluster: initialised %s in %v", c.dataDir, time.Since(began).Round(time.Millisecond))
	return nil
}

// checkVersion makes sure the binaries can run the data directory: after an
// upgrade of the distribution's PostgreSQL, the newest binaries may not be
// the ones that created it. Unless the caller chose the binaries, it falls
// back to the Debian directory of the data's major version.
func (c *Cluster) checkVersion(binDirChosen bool) error {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION"))
	if err != nil {
		return err
	}
	want := strings.TrimSpace(string(b))
	have, err := majorVersion(c.binDir)
	if err != nil {
		return err
	}
	if have == want {
		return nil
	}
	if alt := filepath.Join(debianRoot, want, "bin"); !binDirChosen && hasServerBinaries(alt) {
		c.binDir = alt
		return nil
	}
	return fmt.Errorf("%s was created by PostgreSQL %s but the binaries in %s are PostgreSQL %s: "+
		"install PostgreSQL %s, upgrade the data with pg_upgrade, or remove %s to start afresh",
		c.dataDir, want, c.binDir, have, want, c.dir)
}

// status reports whether the server of the data directory is running, and
// on which port. A postmaster.pid naming a live process that is not
// postgres (its PID was reused after a crash or a container restart) is
// removed, since pg_ctl would take it for a running server and postgres
// would refuse to start.
func (c *Cluster) status(ctx context.Context) (running bool, port int, err error) {
	out, err := c.run(ctx, "pg_ctl", "status", "-D", c.dataDir)
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 3: // not running
		return false, 0, nil
	default:
		return false, 0, fmt.Errorf("pg_ctl status: %w\n%s", err, out)
	}
	pid, port, err := readPIDFile(c.dataDir)
	if err != nil {
		return false, 0, err
	}
	if !isPostgres(pid) {
		c.logf("pgcluster: removing stale postmaster.pid: process %d is not postgres", pid)
		if err := os.Remove(filepath.Join(c.dataDir, "postmaster.pid")); err != nil {
			return false, 0, err
		}
		return false, 0, nil
	}
	return true, port, nil
}

// readPIDFile returns the postmaster's PID and port from postmaster.pid
// (lines 1 and 4).
func readPIDFile(dataDir string) (pid, port int, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, 0, err
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, 0, fmt.Errorf("%s/postmaster.pid: too short", dataDir)
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(lines[0]))
	port, err2 := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%s/postmaster.pid: malformed", dataDir)
	}
	return pid, port, nil
}

// isPostgres tells whether pid is a live (not zombie) postgres process.
// Where /proc is not available it cannot tell and says yes, leaving the
// decision to postgres.
func isPostgres(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// "pid (comm) state ...": comm may itself contain parentheses.
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || len(s) < end+3 {
		return true
	}
	comm, state := s[open+1:end], s[end+2]
	return (comm == "postgres" || comm == "postmaster") && state != 'Z'
}

// startServer writes the settings and starts the server with pg_ctl -w. It
// retries when the port it picked was taken meanwhile, and when the shared
// memory of a killed server is still attached by its dying backends.
func (c *Cluster) startServer(ctx context.Context, opts Options) error {
	sockDir, err := c.socketDir()
	if err != nil {
		return err
	}
	// pg_ctl opens the log as the server user.
	if f, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600); err != nil {
		return err
	} else if err := f.Close(); err != nil {
		return err
	}
	if err := c.user.chown(c.logPath); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return err
			}
		}
		if err := c.writeConf(port, sockDir, opts.Fast); err != nil {
			return err
		}
		var logStart int64
		if fi, err := os.Stat(c.logPath); err == nil {
			logStart = fi.Size()
		}
		began := time.Now()
		out, err := c.run(ctx, "pg_ctl", "start", "-w", "-t", "120", "-D", c.dataDir, "-l", c.logPath)
		if err == nil {
			c.port = port
			c.logf("pgcluster: started PostgreSQL in %s on 127.0.0.1:%d in %v", c.dir, port,
				time.Since(began).Round(time.Millisecond))
			return nil
		}
		logText := readFrom(c.logPath, logStart)
		portTaken := opts.Port == 0 && (strings.Contains(logText, "could not bind") ||
			strings.Contains(logText, "could not create any TCP/IP sockets"))
		shmemBusy := strings.Contains(logText, "pre-existing shared memory block")
		if attempt < 10 && ctx.Err() == nil && (portTaken || shmemBusy) {
			c.logf("pgcluster: start failed (attempt %d), retrying: %s", attempt, lastLines(logText, 1))
			time.Sleep(300 * time.Millisecond)
			continue
		}
		return fmt.Errorf("pg_ctl start in %s: %w\n%s\nlast lines of %s:\n%s",
			c.dir, err, strings.TrimSpace(out), c.logPath, lastLines(logText, 30))
	}
}

// socketDir returns Dir/sock, or a short directory under os.TempDir() when
// Dir is too deep for the unix socket path limit.
func (c *Cluster) socketDir() (string, error) {
	dir := filepath.Join(c.dir, "sock")
	if len(dir)+len("/.s.PGSQL.65535") > maxSocketPath {
		tmp, err := os.MkdirTemp("", "pgsock-")
		if err != nil {
			return "", err
		}
		c.sockTemp = tmp
		dir = tmp
	}
	return dir, c.user.mkdirOwned(dir)
}

func (c *Cluster) writeConf(port int, sockDir string, fast bool) error {
	var b strings.Builder
	b.WriteString("# Written by saasapi (pgcluster) at every start: edits are lost. Use ALTER SYSTEM instead.\n")
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = %s\n", port, quoteConf(sockDir))
	// Sized for the 2-core, 24 GiB machines the service runs on: room for
	// the service's pool plus parallel test packages.
	b.WriteString("max_connections = 200\nshared_buffers = '256MB'\n")
	if fast {
		// Durability is worthless for a throwaway test cluster; skipping
		// the flushes makes CREATE DATABASE and commits several times faster.
		b.WriteString("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
	}
	path := filepath.Join(c.dataDir, confFile)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return c.user.chown(path)
}

// quoteConf quotes a string for postgresql.conf.
func quoteConf(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process may
// take it before postgres binds it; startServer then retries.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lockDir takes an exclusive flock on Dir/.start.lock, waiting for it as
// long as ctx allows.
func lockDir(ctx context.Context, dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".start.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("waiting for another process starting the cluster in %s: %w", dir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ensureDatabase creates database name unless it exists.
func (c *Cluster) ensureDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42P04" {
		return nil // duplicate_database: another process sharing the cluster won the race
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// URL returns the superuser's connection URL for database dbname.
func (c *Cluster) URL(dbname string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, c.port, url.PathEscape(dbname))
}

// PID returns the postmaster's process ID, from its postmaster.pid.
func (c *Cluster) PID() (int, error) {
	pid, _, err := readPIDFile(c.dataDir)
	return pid, err
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Dir returns the cluster directory: Options.Dir, or the directory that
// stands in for it when it was relocated.
func (c *Cluster) Dir() string { return c.dir }

// Relocated returns Options.Dir when the cluster was relocated from it to
// Dir(), and "" otherwise.
func (c *Cluster) Relocated() string { return c.origin }

// Reused tells whether the server was already running when Start was
// called; Stop then leaves it running.
func (c *Cluster) Reused() bool { return c.reused }

// Stop shuts the server down (pg_ctl stop -m fast, or -m immediate for a
// StartTemp cluster, whose data is discarded anyway) and, for a StartTemp
// cluster, removes its directory. A server Start found running was not
// started by us and is left running. Stop releases the Exclusive lock.
// Stopping a stopped cluster does nothing.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	if c.owner != nil {
		// Released last: until the server is down, the directory is ours.
		defer func() { _ = c.owner.Close() }()
	}
	if c.reused {
		c.stopped = true
		c.logf("pgcluster: left the server in %s running, as it was running before", c.dir)
		return nil
	}
	mode := "fast"
	if c.temp {
		mode = "immediate"
	}
	out, err := c.run(ctx, "pg_ctl", "stop", "-w", "-t", "120", "-m", mode, "-D", c.dataDir)
	if err != nil {
		// pg_ctl also fails when the server was already stopped (by an
		// operator, say), which is not an error for us.
		if running, _, serr := c.status(ctx); running || serr != nil {
			return fmt.Errorf("pgcluster: pg_ctl stop in %s: %w\n%s", c.dir, err, strings.TrimSpace(out))
		}
	}
	c.stopped = true
	c.logf("pgcluster: stopped the server in %s", c.dir)
	var err2 error
	if c.sockTemp != "" {
		err2 = os.RemoveAll(c.sockTemp)
	}
	if c.temp {
		err2 = errors.Join(err2, os.RemoveAll(c.dir))
	}
	if err2 != nil {
		return fmt.Errorf("pgcluster: %w", err2)
	}
	return nil
}
