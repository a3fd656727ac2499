package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"
)

// noSideEffects is an environment under which any command that got past
// its flags would do something visible: dev would create devDir, and the
// others would fail to connect to a port nothing listens on.
func noSideEffects(t *testing.T) (environment, string) {
	t.Helper()
	devDir := filepath.Join(t.TempDir(), "must-not-exist")
	return environment{
		"SAAS_API_DEV_DIR":      devDir,
		"SAAS_API_DATABASE_URL": "postgres://127.0.0.1:1/none?connect_timeout=1",
		"SAAS_API_HTTP_ADDR":    freePort(t),
	}, devDir
}

// runQuick runs the program and fails the test if it does not return at
// once, as a command that started serving would not.
func runQuick(t *testing.T, args []string, env environment) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err = run(ctx, args, env, &out, &errOut)
	if ctx.Err() != nil {
		t.Fatalf("%q ran until its deadline: it did more than parse its command line", args)
	}
	return out.String(), errOut.String(), err
}

// TestEveryCommandParsesItsFlags: for every subcommand of the program, -h
// and --help print its usage to stdout and do nothing else; an unknown flag
// or an extra argument prints the usage to stderr and is a usage error
// (exit status 2).
func TestEveryCommandParsesItsFlags(t *testing.T) {
	t.Parallel()
	var paths []string
	for _, c := range subcommands {
		paths = append(paths, c.path)
	}
	// The table below is the program's own list; this only guards against
	// losing a command from it by accident.
	for _, want := range []string{"dev", "serve", "migrate", "audit verify", "audit verify-export", "audit monitor",
		"audit keygen", "projections rebuild", "projections verify", "users erase", "users seal-legacy", "users rewrap-keys", "version"} {
		if !slices.Contains(paths, want) {
			t.Errorf("subcommand %q is missing from the command table", want)
		}
	}
	for _, c := range subcommands {
		words := strings.Fields(c.path)
		cases := []struct {
			name string
			args []string
			help bool
		}{
			{"-h", append(slices.Clone(words), "-h"), true},
			{"--help", append(slices.Clone(words), "--help"), true},
			{"help COMMAND", append([]string{"help"}, words...), true},
			{"unknown flag", append(slices.Clone(words), "--no-such-flag"), false},
			{"extra argument", append(slices.Clone(words), "extra"), false},
		}
		for _, tc := range cases {
			t.Run(c.path+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				env, devDir := noSideEffects(t)
				stdout, stderr, err := runQuick(t, tc.args, env)
				wantUsage := "Usage: saasapi " + c.path
				if tc.help {
					if err != nil || !strings.HasPrefix(stdout, wantUsage) || stderr != "" {
						t.Errorf("%q: err %v, stdout %q, stderr %q; want nil, the usage on stdout, nothing on stderr",
							tc.args, err, stdout, stderr)
					}
				} else if !errors.Is(err, errUsage) || !strings.Contains(stderr, wantUsage) || stdout != "" {
					t.Errorf("%q: err %v, stdout %q, stderr %q; want errUsage and the usage on stderr only",
						tc.args, err, stdout, stderr)
				}
				if _, err := os.Stat(devDir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%q created the data directory %s", tc.args, devDir)
				}
			})
		}
	}
}

func TestTopLevelAndGroupUsage(t *testing.T) {
	t.Parallel()
	env, _ := noSideEffects(t)
	tests := []struct {
		args       []string
		wantErr    bool
		wantStdout string // prefix
		wantStderr string // substring
	}{
		{[]string{"--help"}, false, "saasapi: multi-tenant", ""},
		{[]string{"-h"}, false, "saasapi: multi-tenant", ""},
		{[]string{"help"}, false, "saasapi: multi-tenant", ""},
		{[]string{}, true, "", "Usage:"},
		{[]string{"frobnicate"}, true, "", `unknown command "frobnicate"`},
		{[]string{"--help", "extra"}, true, "", `unexpected argument "extra"`},
		{[]string{"audit"}, true, "", "Usage: saasapi audit verify"},
		{[]string{"audit", "--help"}, false, "Usage: saasapi audit verify", ""},
		{[]string{"audit", "frobnicate"}, true, "", `unknown command "frobnicate"`},
		{[]string{"projections"}, true, "", "saasapi projections rebuild"},
		{[]string{"projections", "-h"}, false, "Usage:\n  saasapi projections rebuild", ""},
		{[]string{"help", "projections"}, false, "Usage:\n  saasapi projections rebuild", ""},
		{[]string{"projections", "frobnicate"}, true, "", `unknown command "frobnicate"`},
		{[]string{"--version"}, false, "saasapi ", ""},
		{[]string{"version"}, false, "saasapi ", ""},
	}
	for _, tt := range tests {
		stdout, stderr, err := runQuick(t, tt.args, env)
		if tt.wantErr != errors.Is(err, errUsage) || (!tt.wantErr && err != nil) {
			t.Errorf("%q: err = %v, want usage error %v", tt.args, err, tt.wantErr)
		}
		if !strings.HasPrefix(stdout, tt.wantStdout) || (tt.wantStdout == "" && stdout != "") {
			t.Errorf("%q: stdout %q, want it to begin %q", tt.args, stdout, tt.wantStdout)
		}
		if !strings.Contains(stderr, tt.wantStderr) || (tt.wantStderr == "" && stderr != "") {
			t.Errorf("%q: stderr %q, want it to contain %q", tt.args, stderr, tt.wantStderr)
		}
	}
}

func TestVersionText(t *testing.T) {
	t.Parallel()
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	got := versionText(bi, true)
	for _, want := range []string{"saasapi v1.2.3\n", "revision 0123456789abcdef0123456789abcdef01234567 (2026-01-02T03:04:05Z) with uncommitted changes\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("versionText = %q, want it to contain %q", got, want)
		}
	}
	if got := versionText(nil, false); !strings.Contains(got, "revision unknown") {
		t.Errorf("versionText without build info = %q", got)
	}
}

// TestExitStatus runs the built program: help and version exit 0, a
// command line that does not parse exits 2, a failure exits 1.
func TestExitStatus(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH to build the program")
	}
	bin := filepath.Join(t.TempDir(), "saasapi")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env, _ := noSideEffects(t)
	tests := []struct {
		args   []string
		status int
	}{
		{[]string{"--help"}, 0},
		{[]string{"dev", "--help"}, 0},
		{[]string{"projections", "rebuild", "--help"}, 0},
		{[]string{"--version"}, 0},
		{[]string{"dev", "--bogus"}, 2},
		{[]string{"migrate", "extra"}, 2},
		{[]string{}, 2},
		{[]string{"projections", "verify"}, 1}, // nothing listens on the database port
	}
	for _, tt := range tests {
		cmd := exec.Command(bin, tt.args...)
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		err := cmd.Run()
		status := 0
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			status = exitErr.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if status != tt.status {
			t.Errorf("saasapi %q exited %d, want %d", tt.args, status, tt.status)
		}
	}
}
