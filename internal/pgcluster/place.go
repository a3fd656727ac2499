package pgcluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// RelocationBase is where Start keeps the clusters of directories that the
// postgres user cannot reach (see Options.Relocate). It is root's, 0755;
// every cluster inside is the postgres user's, 0700.
const RelocationBase = "/var/lib/saasapi-dev"

// originFile, in a relocated cluster directory, holds the absolute path of
// the directory it stands in for.
const originFile = "origin"

// pointerFile, in a directory whose cluster was relocated, says where the
// cluster is, for a person looking for it.
const pointerFile = "CLUSTER-IS-ELSEWHERE.txt"

// relocatedDir is the directory under base that stands in for dir: its
// base name, for people listing base, and a hash of its absolute path, so
// that one path always maps to the same directory and two paths never share
// one.
func relocatedDir(base, dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(base, filepath.Base(dir)+"-"+hex.EncodeToString(sum[:8]))
}

// relocate moves the cluster of c.dir, which the server user cannot reach,
// to relocatedDir(RelocationBase, c.dir). It leaves a note in c.dir saying
// where the cluster went and checks that the relocated directory is this
// one's and not another path's.
func (c *Cluster) relocate(why error) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.dir, "data", "PG_VERSION")); err == nil {
		return fmt.Errorf("%w; %s holds a cluster already, so it is not relocated: make it reachable or move it", why,
			filepath.Join(c.dir, "data"))
	}
	if err := os.MkdirAll(RelocationBase, 0o755); err != nil {
		return fmt.Errorf("%w; relocating the cluster: %w", why, err)
	}
	to := relocatedDir(RelocationBase, c.dir)
	if err := c.user.mkdirOwned(to); err != nil {
		return fmt.Errorf("%w; relocating the cluster: %w", why, err)
	}
	if err := c.user.checkReachable(to); err != nil {
		return fmt.Errorf("%w; relocating the cluster: %w", why, err)
	}
	origin := filepath.Join(to, originFile)
	switch b, err := os.ReadFile(origin); {
	case errors.Is(err, os.ErrNotExist):
		if err := os.WriteFile(origin, []byte(c.dir+"\n"), 0o644); err != nil {
			return err
		}
	case err != nil:
		return err
	case strings.TrimSpace(string(b)) != c.dir:
		return fmt.Errorf("%s holds the cluster of %s, not of %s: remove it", to, strings.TrimSpace(string(b)), c.dir)
	}
	note := fmt.Sprintf("The PostgreSQL cluster of this directory is kept in\n\n  %s\n\n"+
		"because PostgreSQL runs as the postgres user, which cannot reach this directory:\n%v\n"+
		"Remove both directories to start afresh.\n", to, why)
	if err := os.WriteFile(filepath.Join(c.dir, pointerFile), []byte(note), 0o644); err != nil {
		return err
	}
	c.logf("pgcluster: the postgres user cannot reach %s; the cluster is kept in %s instead", c.dir, to)
	c.origin = c.dir
	c.dir = to
	c.dataDir = filepath.Join(to, "data")
	c.logPath = filepath.Join(to, "postgres.log")
	return nil
}

// ownerLockFile, in an exclusively started cluster directory, is flock'd by
// the process using the cluster and holds its PID.
const ownerLockFile = "owner.lock"

// InUseError is returned (wrapped) by an exclusive Start on a directory that
// another process uses.
type InUseError struct {
	Dir     string // the cluster directory
	PID     int    // the process holding it, 0 if unknown
	Command string // that process's command line, if known
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("%s is in use by %s: stop it first, or use another directory", e.Dir, e.Holder())
}

// Holder names the process holding the directory: "process 12 (saasapi dev)".
func (e *InUseError) Holder() string {
	if e.PID <= 0 {
		return "another process"
	}
	who := "process " + strconv.Itoa(e.PID)
	if e.Command != "" {
		who += " (" + e.Command + ")"
	}
	return who
}

// lockOwner takes the exclusive, lifetime lock of dir without waiting. The
// lock lives as long as the returned file is open.
func lockOwner(dir string) (*os.File, error) {
	path := filepath.Join(dir, ownerLockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := flockNow(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// flockNow takes an exclusive flock on the lock file f without waiting; a
// lock held elsewhere is an *InUseError naming the holder.
func flockNow(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	inUse := &InUseError{Dir: filepath.Dir(f.Name())}
	// The holder writes its PID right after taking the lock; it may not
	// have yet.
	if b, err := os.ReadFile(f.Name()); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			inUse.PID = pid
			inUse.Command = commandLine(pid)
		}
	}
	return inUse
}

// InUse returns an *InUseError when an Exclusive Start holds the cluster
// of dir, in dir itself or relocated, and nil otherwise. It creates
// nothing, so a caller can ask before deciding to start.
func InUse(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for _, d := range []string{abs, relocatedDir(RelocationBase, abs)} {
		f, err := os.Open(filepath.Join(d, ownerLockFile))
		if err != nil {
			continue // no lock file: never held
		}
		err = flockNow(f)
		_ = f.Close() // releases the lock if we got it
		if err != nil {
			return err
		}
	}
	return nil
}

// commandLine returns the command line of pid from /proc, or "".
func commandLine(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
