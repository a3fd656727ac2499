package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownerFile, in a StartTemp directory, holds the PID of the process that
// owns the cluster, so that a later StartTemp can tell an orphan.
const ownerFile = "owner.pid"

// StartTemp starts a throwaway cluster in a new directory under
// os.TempDir() (opts.Dir must be empty); Stop removes the directory.
//
// A process killed before it could call Stop (a test binary hitting its
// timeout, Ctrl-C) leaves its server running. StartTemp therefore first
// stops and removes the clusters of processes that no longer exist.
func StartTemp(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir != "" {
		return nil, errors.New("pgcluster: StartTemp chooses the directory; Options.Dir must be empty")
	}
	base, err := tempBase()
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	reapOrphans(base, opts.Logf)
	dir, err := os.MkdirTemp(base, "c")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		_ = os.RemoveAll(dir) // best effort; a later StartTemp removes it
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	opts.Dir = dir
	c, err := Start(ctx, opts)
	if err != nil {
		_ = os.RemoveAll(dir) // best effort; a later StartTemp removes it
		return nil, err
	}
	c.temp = true
	return c, nil
}

// tempBase returns the directory holding this user's StartTemp clusters,
// creating it. It is per user so that root's and an ordinary user's
// clusters do not share permissions. When root, it is 0755 so the postgres
// user can reach the clusters inside, unlike directories from os.MkdirTemp.
func tempBase() (string, error) {
	euid := os.Geteuid()
	base := filepath.Join(os.TempDir(), fmt.Sprintf("saasapi-pgcluster-%d", euid))
	mode := os.FileMode(0o700)
	if euid == 0 {
		mode = 0o755
	}
	if err := os.Mkdir(base, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	// In a world-writable /tmp, someone else may have made base first.
	fi, err := os.Lstat(base)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || (ok && int(st.Uid) != euid) {
		return "", fmt.Errorf("%s is not a directory owned by uid %d; remove it", base, euid)
	}
	if fi.Mode().Perm() != mode {
		if err := os.Chmod(base, mode); err != nil {
			return "", err
		}
	}
	return base, nil
}

// reapOrphans stops and removes the clusters under base whose owner process
// is gone. Errors are only logged: an orphan must not stop a new cluster.
func reapOrphans(base string, logf func(string, ...any)) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		dir := filepath.Join(base, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			// The owner may be between MkdirTemp and writing the file;
			// only an old directory without one is debris.
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		} else if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil &&
			(pid == os.Getpid() || processAlive(pid)) {
			continue
		}
		logf("pgcluster: removing orphaned cluster %s", dir)
		killServer(filepath.Join(dir, "data"))
		if err := os.RemoveAll(dir); err != nil {
			logf("pgcluster: %v", err)
		}
	}
}

// killServer shuts down the server of dataDir, if running, with SIGQUIT
// (immediate shutdown: the data is about to be deleted) and waits a little
// for it to exit. It signals the postmaster itself rather than running
// pg_ctl so that it needs neither the binaries nor the server user.
func killServer(dataDir string) {
	pid, _, err := readPIDFile(dataDir)
	if err != nil || !isPostgres(pid) {
		return
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		return
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && processAlive(pid); {
		time.Sleep(50 * time.Millisecond)
	}
}

// processAlive tells whether pid exists and is not a zombie: in a
// container whose PID 1 does not reap orphans, a killed process stays a
// zombie forever.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	end := strings.LastIndexByte(string(b), ')')
	return end < 0 || len(b) < end+3 || b[end+2] != 'Z'
}
