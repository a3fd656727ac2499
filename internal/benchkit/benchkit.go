// Package benchkit holds what the benchmark commands (internal/benchhttp,
// internal/benchrebuild) share: a private cluster with fsync on and the
// service migrated on it, `saasapi serve` started and stopped by its PID,
// a JSON client of the API and a parallel loop for seeding through it.
package benchkit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi/internal/pgcluster"
)

// Logf prints a progress line on stderr.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "# "+format+"\n", args...)
}

// Service is a private cluster with the service's database migrated, and
// the environment that `saasapi` commands run against it with.
type Service struct {
	Cluster *pgcluster.Cluster
	Bin     string
	// Env is the environment of serve and of the operator commands.
	Env []string
}

// StartService starts a private cluster with fsync on (commits cost what
// they cost in production), generates the keys a non-local environment
// requires and migrates the database with bin. extra is added to Env.
func StartService(ctx context.Context, bin string, extra ...string) (*Service, error) {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	cluster, err := pgcluster.StartTemp(ctx, pgcluster.Options{Logf: Logf})
	if err != nil {
		return nil, err
	}
	s := &Service{Cluster: cluster, Bin: bin}
	fail := func(err error) (*Service, error) { return nil, errors.Join(err, s.Stop(ctx)) }
	// Outside local and test the service wants a checkpoint signing key
	// and a data key, and so do the operator commands.
	key, err := exec.CommandContext(ctx, bin, "audit", "keygen").Output()
	if err != nil {
		return fail(fmt.Errorf("audit keygen: %w", err))
	}
	dataKey := make([]byte, 32)
	if _, err := rand.Read(dataKey); err != nil {
		return fail(err)
	}
	s.Env = append(append(os.Environ(), "SAAS_API_DATABASE_URL="+cluster.URL(pgcluster.AppDatabase),
		"SAAS_API_JWT_SECRET=benchmark-secret-that-is-long-enough-for-hs256",
		"SAAS_API_LEDGER_SIGNING_KEY="+strings.TrimSpace(string(key)),
		"SAAS_API_DATA_KEY="+hex.EncodeToString(dataKey),
		"SAAS_API_ENVIRONMENT=benchmark"), extra...)
	if out, err := Command(ctx, s.Env, bin, "migrate").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("migrate: %w: %s", err, out))
	}
	if err := warmWAL(ctx, cluster); err != nil {
		return fail(err)
	}
	return s, nil
}

// warmWALSegments is how many 16 MB WAL segments the cluster is given
// before anything is measured: max_wal_size's worth (1 GB by default).
const warmWALSegments = 64

// warmWAL gives the fresh cluster the WAL segments a cluster that has run
// for a while has. A new cluster creates each segment as it first needs it
// and zero-fills it, which stalled every commit for 30-50 ms about twice
// a second under the write workloads; a cluster in service recycles the
// segments of earlier checkpoints instead. Here the segments are made up
// front (a switch to a new segment after a tiny record each), kept by a
// min_wal_size of as much, and a checkpoint makes them recyclable. The
// service and pgbench meet the same cluster.
func warmWAL(ctx context.Context, c *pgcluster.Cluster) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	for _, sql := range []string{
		fmt.Sprintf(`ALTER SYSTEM SET min_wal_size = '%dMB'`, warmWALSegments*16),
		`SELECT pg_reload_conf()`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("warm the WAL: %s: %w", sql, err)
		}
	}
	for range warmWALSegments {
		if _, err := conn.Exec(ctx, `SELECT pg_logical_emit_message(false, 'saasapi-bench', 'warm'), pg_switch_wal()`); err != nil {
			return fmt.Errorf("warm the WAL: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, `CHECKPOINT`); err != nil {
		return fmt.Errorf("warm the WAL: %w", err)
	}
	return nil
}

// Stop stops the cluster.
func (s *Service) Stop(ctx context.Context) error {
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	return s.Cluster.Stop(stopCtx)
}

// Command is exec.CommandContext with env (nil: this process's).
func Command(ctx context.Context, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	return cmd
}

// FreeAddr returns a loopback address with a free port.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String(), nil
}

// Server is the `saasapi serve` process a benchmark started.
type Server struct {
	Cmd  *exec.Cmd
	done chan error
}

// StartServer runs `bin serve` with env (which sets SAAS_API_HTTP_ADDR),
// logging into dir, and waits until it is ready.
func StartServer(ctx context.Context, bin string, env []string, dir string) (*Server, error) {
	logFile, err := os.Create(filepath.Join(dir, "saasapi.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); _ = logFile.Close() }()
	var addr string
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "SAAS_API_HTTP_ADDR="); ok {
			addr = v
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("saasapi serve exited: %w (log in %s)", err, logFile.Name())
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), s.Stop())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, errors.Join(errors.New("saasapi serve did not become ready"), s.Stop())
}

// Stop ends the server this program started, by its PID.
func (s *Server) Stop() error {
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("saasapi serve: %w", err)
		}
		return nil
	case <-time.After(20 * time.Second):
		_ = s.Cmd.Process.Kill()
		err := <-s.done
		return errors.Join(errors.New("saasapi serve did not stop on SIGTERM"), err)
	}
}

// Client calls the API with JSON bodies.
type Client struct {
	Base  string
	Token string
	HTTP  *http.Client
}

// Call sends body (if not nil) as JSON and decodes the answer into out
// (if not nil); an answer of 300 or more is an error.
func (c *Client) Call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	res, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = res.Body.Close() }()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// Parallel runs fn(i) for i in [0, n) on workers goroutines.
func Parallel(n, workers int, fn func(i int) error) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		next = make(chan int)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}
