package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	apihttp "github.com/saasapi/saasapi/http"
	"github.com/saasapi/saasapi/internal/testdb"
)

// walkthroughPath is the API walkthrough, relative to this package.
const walkthroughPath = "../../docs/api.md"

// walkthroughAPILine is the one line of the walkthrough the test changes:
// it points the script at the test's server.
const walkthroughAPILine = "API=http://127.0.0.1:8000"

// shellBlocks returns the ```sh blocks of a Markdown document, in order,
// joined into one script.
func shellBlocks(doc string) (string, int) {
	var script strings.Builder
	blocks, in := 0, false
	for line := range strings.SplitSeq(doc, "\n") {
		switch {
		case !in && line == "```sh":
			in = true
			blocks++
		case in && line == "```":
			in = false
		case in:
			script.WriteString(line + "\n")
		}
	}
	return script.String(), blocks
}

// TestAPIWalkthrough runs docs/api.md as a script, as a reader would: its
// sh blocks, top to bottom, with set -euo pipefail, against a real server
// on a fresh database. It fails when the script fails (a command exits
// non-zero, a variable is used unset, jq -e finds no value), when the
// server answers any 5xx, and when an operation of the OpenAPI document is
// not called, so that a new endpoint must be added to the walkthrough.
func TestAPIWalkthrough(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed, and CI must run the walkthrough (.ci/run installs it)", tool)
			}
			t.Skipf("%s is not installed: the docs/api.md walkthrough needs bash, curl and jq (apt-get install curl jq)", tool)
		}
	}
	raw, err := os.ReadFile(walkthroughPath)
	if err != nil {
		t.Fatal(err)
	}
	script, blocks := shellBlocks(string(raw))
	if n := strings.Count(script, "\n"+walkthroughAPILine+"\n"); n != 1 && !strings.HasPrefix(script, walkthroughAPILine+"\n") {
		t.Fatalf("docs/api.md must set %s on a line of its own exactly once (found %d)", walkthroughAPILine, n)
	}

	s := start(t, []string{"serve"}, map[string]string{
		"SAAS_API_DATABASE_URL": testdb.New(t).URL,
		"SAAS_API_DOCS_ENABLED": "true", // as in `make run`
	})
	waitReady(t, s, time.Now())
	// The trap only says where a failure happened.
	script = "set -euo pipefail\ntrap 'echo \"docs/api.md walkthrough: failed: $BASH_COMMAND\" >&2' ERR\n" +
		strings.Replace(script, walkthroughAPILine, "API=http://"+s.addr, 1)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash")
	cmd.Stdin = strings.NewReader(script)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + cmd.Dir, "LC_ALL=C"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	runErr := cmd.Run()
	t.Logf("docs/api.md: %d sh blocks ran in %v", blocks, time.Since(began).Round(time.Millisecond))
	if runErr != nil {
		t.Errorf("the walkthrough failed (%v); its output:\n%s", runErr, out.String())
	} else if testing.Verbose() {
		t.Logf("its output:\n%s", out.String())
	}

	// What the server saw, from its request log.
	called := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct{ Msg, Method, Route string }
		var status struct{ Status int }
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Msg != "request" {
			continue
		}
		_ = json.Unmarshal(sc.Bytes(), &status)
		if status.Status >= 500 {
			t.Errorf("the walkthrough got a %d from %s %s", status.Status, rec.Method, rec.Route)
		}
		called[rec.Method+" "+rec.Route]++
	}
	if len(called) == 0 {
		t.Fatalf("no request reached the server; logs:\n%s", s.logs.String())
	}
	for _, op := range openAPIOperations(t) {
		if called[op] == 0 {
			t.Errorf("docs/api.md never calls %s: add it to the walkthrough", op)
		}
	}
}

// openAPIOperations lists "METHOD /path" for every operation of the
// embedded OpenAPI document, in the router's path syntax (the same: the
// http tests check that the two agree).
func openAPIOperations(t *testing.T) []string {
	t.Helper()
	data, err := apihttp.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, fmt.Sprintf("%s %s", method, path))
		}
	}
	slices.Sort(ops)
	if len(ops) < 20 {
		t.Fatalf("only %d operations in the OpenAPI document", len(ops))
	}
	return ops
}
