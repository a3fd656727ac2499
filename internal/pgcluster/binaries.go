package pgcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ErrNotInstalled is returned (wrapped) when no PostgreSQL server binaries
// can be found. Its message tells the operator what to do about it.
var ErrNotInstalled = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH " +
	"or in /usr/lib/postgresql/*/bin: install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql), " +
	"or run `saasapi serve` with SAAS_API_DATABASE_URL set to an existing PostgreSQL database instead")

// debianRoot is where Debian and Ubuntu install one directory per major
// version; their /usr/bin holds only client wrappers, not initdb or pg_ctl.
const debianRoot = "/usr/lib/postgresql"

var serverBinaries = []string{"initdb", "pg_ctl", "postgres"}

// FindBinaries returns the directory holding initdb, pg_ctl and postgres:
// the one on PATH if pg_ctl is there, else the newest
// /usr/lib/postgresql/*/bin. The error wraps ErrNotInstalled.
func FindBinaries() (string, error) { return findBinaries(debianRoot) }

func findBinaries(root string) (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		// Resolve symlinks: distributions that link pg_ctl into /usr/bin
		// keep initdb and postgres only beside the real file.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if dir := filepath.Dir(p); hasServerBinaries(dir) {
			return dir, nil
		}
	}
	for _, dir := range debianBinDirs(root) {
		if hasServerBinaries(dir) {
			return dir, nil
		}
	}
	return "", ErrNotInstalled
}

// debianBinDirs lists /usr/lib/postgresql/*/bin, newest major version first.
func debianBinDirs(root string) []string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	type cand struct {
		version float64
		dir     string
	}
	var cands []cand
	for _, e := range entries {
		v, err := strconv.ParseFloat(e.Name(), 64) // "15", or "9.6" for old ones
		if err != nil {
			continue
		}
		cands = append(cands, cand{v, filepath.Join(root, e.Name(), "bin")})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].version > cands[j].version })
	dirs := make([]string, len(cands))
	for i, c := range cands {
		dirs[i] = c.dir
	}
	return dirs
}

func hasServerBinaries(dir string) bool {
	for _, name := range serverBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// majorVersion asks the postgres binary in binDir for its major version
// ("15"). postgres answers --version before its refusal to run as root.
func majorVersion(binDir string) (string, error) {
	out, err := exec.Command(filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s/postgres --version: %w", binDir, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s/postgres --version: unexpected output %q", binDir, strings.TrimSpace(string(out)))
	}
	return string(m[1]), nil
}
