package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// serverUser is the system account the server binaries run as when we are
// root, because postgres refuses to run as root. A nil *serverUser means
// "run as ourselves".
type serverUser struct {
	name   string
	home   string
	uid    uint32
	gid    uint32
	groups []uint32
}

// lookupServerUser returns nil when we are not root, and otherwise the
// postgres system user that Debian's postgresql package creates.
func lookupServerUser() (*serverUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, but PostgreSQL refuses to run as root and the system user "+
			"\"postgres\" to run it as was not found (%w): install the PostgreSQL server package, "+
			"create the user (useradd --system postgres), or run as an ordinary user", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user postgres has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	su := &serverUser{name: u.Username, home: u.HomeDir, uid: uint32(uid), gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				su.groups = append(su.groups, uint32(g))
			}
		}
	}
	return su, nil
}

// chown hands path to the server user; a no-op when we run as ourselves.
func (u *serverUser) chown(path string) error {
	if u == nil {
		return nil
	}
	if err := os.Lchown(path, int(u.uid), int(u.gid)); err != nil {
		return fmt.Errorf("chown %s to postgres: %w", path, err)
	}
	return nil
}

// mkdirOwned creates dir (0700) if missing and hands it to the server user.
// Missing parents are created 0755 (less the umask) so that the server user
// can reach dir through them.
func (u *serverUser) mkdirOwned(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return u.chown(dir)
}

// checkReachable fails when the server user cannot traverse every parent of
// dir, which is the usual way running as root goes wrong: t.TempDir,
// os.MkdirTemp and /root are 0700 root-owned, and initdb would only say
// "Permission denied" about a path it cannot even see.
func (u *serverUser) checkReachable(dir string) error {
	if u == nil {
		return nil
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(dir))
	if err != nil {
		return err
	}
	for p := parent; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !u.canTraverse(fi) {
			return fmt.Errorf("PostgreSQL runs as user postgres (we are root), which cannot reach %s: "+
				"%s (mode %v) is not traversable by it; put the cluster elsewhere or chmod o+x %s",
				dir, p, fi.Mode().Perm(), p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (u *serverUser) canTraverse(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell; let the server report it
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == u.uid:
		return perm&0o100 != 0
	case st.Gid == u.gid || slices.Contains(u.groups, st.Gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// command builds an exec.Cmd for a server binary, run as the server user
// when we are root.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	// The server user may not be able to enter our working directory; the
	// cluster directory is always its own.
	cmd.Dir = c.dir
	cmd.Env = serverEnv(c.user)
	if c.user != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
			Uid: c.user.uid, Gid: c.user.gid, Groups: c.user.groups,
		}}
	}
	return cmd
}

// run runs a server binary and returns its combined output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := c.command(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// serverEnv is our environment without PG* variables, which would otherwise
// leak into the server (PGPORT, PGDATA, PGOPTIONS...), and with a C locale so
// that messages in postgres.log, which Start inspects, are in English.
func serverEnv(u *serverUser) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" ||
			(u != nil && (k == "HOME" || k == "USER" || k == "LOGNAME")) {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C")
	if u != nil {
		env = append(env, "HOME="+u.home, "USER="+u.name, "LOGNAME="+u.name)
	}
	return env
}
