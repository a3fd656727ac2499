package guardrails

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// ---------------------------------------------------------------------------
// Locating the module

// moduleRoot walks up from the working directory (the package directory
// under go test) to the directory holding go.mod, and returns it with the
// module path declared there.
func moduleRoot(t *testing.T) (dir, module string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir = wd; ; {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for line := range strings.Lines(string(b)) {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
					return dir, strings.Trim(f[1], `"`)
				}
			}
			t.Fatalf("%s/go.mod has no module line", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above %s", wd)
		}
		dir = parent
	}
}

// ---------------------------------------------------------------------------
// a. Import rules (DESIGN.md, "Packages")

// rule says what one package of ours may import. Package names are relative
// to the module: "." is the root package; a trailing "/..." matches a
// directory and everything below it.
type rule struct {
	pkg string
	// ours lists the packages of ours that may be imported.
	ours []string
	// thirdParty lists the third-party module paths (and their
	// subpackages) that may be imported, unless anyThirdParty is set. The
	// standard library is always allowed.
	thirdParty    []string
	anyThirdParty bool
	why           string
}

// everythingButTransport is every package of ours except http and cmd:
// nothing imports those.
var everythingButTransport = []string{".", "eventstore", "projections", "commands", "auth",
	"observability", "migrations", "internal/..."}

// importTable is DESIGN.md's package table. Where it says "root", the
// module's other packages are forbidden and third-party libraries (pgx,
// chi, tern) are allowed; where it names libraries, only those are.
var importTable = []rule{
	{pkg: ".", thirdParty: []string{"github.com/oklog/ulid/v2", "golang.org/x/text/unicode/norm"},
		why: "the root package is the domain language: standard library, ulid and Unicode normalisation only"},
	{pkg: "eventstore", ours: []string{"."}, anyThirdParty: true,
		why: "eventstore imports the root package only: it does not import projections, commands or http"},
	{pkg: "projections", ours: []string{"."}, anyThirdParty: true,
		why: "projections imports the root package only: it does not import eventstore, commands or http"},
	{pkg: "commands", ours: []string{".", "eventstore", "projections", "auth"}, anyThirdParty: true,
		why: "commands imports root, eventstore, projections and auth only"},
	{pkg: "auth", ours: []string{"."}, thirdParty: []string{"github.com/golang-jwt/jwt", "golang.org/x/crypto"},
		why: "auth is a leaf: standard library, root, golang-jwt and golang.org/x/crypto only"},
	{pkg: "http", ours: []string{".", "commands", "projections", "eventstore", "auth", "observability"}, anyThirdParty: true,
		why: "http imports root, commands, projections, eventstore, auth and observability only (not migrations or internal/...)"},
	{pkg: "observability", ours: []string{"."}, thirdParty: []string{"github.com/prometheus"},
		why: "observability imports the standard library, root and the Prometheus client only"},
	{pkg: "migrations", anyThirdParty: true,
		why: "migrations imports nothing of ours"},
	{pkg: "cmd/...", ours: append(slices.Clone(everythingButTransport), "http"), anyThirdParty: true,
		why: "cmd wires everything, but no package imports cmd"},
	{pkg: "internal/...", ours: everythingButTransport, anyThirdParty: true,
		why: "internal helpers import what they need, but nothing imports http or cmd"},
}

// matchPkg reports whether the module-relative package p matches pattern.
func matchPkg(pattern, p string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

func isStandard(importPath string) bool {
	first, _, _ := strings.Cut(importPath, "/")
	return !strings.Contains(first, ".")
}

// relative returns importPath relative to the module ("." for the root)
// and whether it belongs to the module.
func relative(module, importPath string) (string, bool) {
	if importPath == module {
		return ".", true
	}
	rest, ok := strings.CutPrefix(importPath, module+"/")
	return rest, ok
}

func ruleFor(rel string) (rule, bool) {
	for _, r := range importTable {
		if matchPkg(r.pkg, rel) {
			return r, true
		}
	}
	return rule{}, false
}

// listedPackage is the part of `go list -json` output the rules need.
type listedPackage struct {
	ImportPath string
	Imports    []string
}

// importViolations checks packages against importTable and returns one
// message per forbidden import.
func importViolations(module string, pkgs []listedPackage) []string {
	var out []string
	for _, p := range pkgs {
		rel, ours := relative(module, p.ImportPath)
		if !ours {
			out = append(out, fmt.Sprintf("%s is not in module %s", p.ImportPath, module))
			continue
		}
		r, ok := ruleFor(rel)
		if !ok {
			out = append(out, fmt.Sprintf("package %s is not in the import table of DESIGN.md: "+
				"decide what it may import, add it to importTable, and record the decision", p.ImportPath))
			continue
		}
		for _, imp := range p.Imports {
			if isStandard(imp) {
				continue
			}
			var allowed bool
			if impRel, isOurs := relative(module, imp); isOurs {
				allowed = slices.ContainsFunc(r.ours, func(pattern string) bool { return matchPkg(pattern, impRel) })
			} else {
				allowed = r.anyThirdParty || slices.ContainsFunc(r.thirdParty, func(mod string) bool {
					return imp == mod || strings.HasPrefix(imp, mod+"/")
				})
			}
			if !allowed {
				out = append(out, fmt.Sprintf("%s imports %s, which the rule for %s forbids: %s",
					p.ImportPath, imp, r.pkg, r.why))
			}
		}
	}
	return out
}

func goList(t *testing.T, root string) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps=false -json ./...: %v\n%s", err, stderr.String())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	root, module := moduleRoot(t)
	pkgs := goList(t, root)
	for _, msg := range importViolations(module, pkgs) {
		t.Error(msg)
	}
	// The table must describe the module as it is: every rule but the
	// wildcard ones matches a package that exists.
	for _, r := range importTable {
		if strings.HasSuffix(r.pkg, "/...") {
			continue
		}
		if !slices.ContainsFunc(pkgs, func(p listedPackage) bool {
			rel, _ := relative(module, p.ImportPath)
			return rel == r.pkg
		}) {
			t.Errorf("importTable has a rule for %q, but go list found no such package", r.pkg)
		}
	}
}

// TestImportRulesReject feeds the checker forbidden arrows, so that a
// table that allowed everything would not pass unnoticed.
func TestImportRulesReject(t *testing.T) {
	const m = "example.com/mod"
	cases := []struct {
		pkg, imp, want string
	}{
		{".", "github.com/jackc/pgx/v5", "the root package is the domain language"},
		{".", m + "/auth", "the root package"},
		{"eventstore", m + "/projections", "does not import projections"},
		{"projections", m + "/eventstore", "does not import eventstore"},
		{"projections", m + "/commands", "does not import eventstore, commands"},
		{"commands", m + "/http", "commands imports root"},
		{"commands", m + "/observability", "commands imports root"},
		{"auth", "github.com/jackc/pgx/v5", "auth is a leaf"},
		{"observability", m + "/commands", "observability imports"},
		{"migrations", m, "migrations imports nothing of ours"},
		{"http", m + "/migrations", "not migrations"},
		{"http", m + "/internal/testdb", "internal/..."},
		{"internal/dbpool", m + "/http", "nothing imports http or cmd"},
		{"internal/dbpool", m + "/cmd/saasapi", "nothing imports http or cmd"},
		{"cmd/saasapi", m + "/cmd/other", "no package imports cmd"},
	}
	for _, c := range cases {
		got := importViolations(m, []listedPackage{{ImportPath: path.Join(m, c.pkg), Imports: []string{"fmt", c.imp}}})
		if len(got) != 1 || !strings.Contains(got[0], c.want) || !strings.Contains(got[0], c.imp) {
			t.Errorf("%s importing %s: got %q, want one message naming the import and containing %q", c.pkg, c.imp, got, c.want)
		}
	}
	allowed := []listedPackage{
		{ImportPath: m, Imports: []string{"time", "github.com/oklog/ulid/v2"}},
		{ImportPath: m + "/auth", Imports: []string{m, "golang.org/x/crypto/argon2", "github.com/golang-jwt/jwt/v5"}},
		{ImportPath: m + "/observability", Imports: []string{m, "github.com/prometheus/client_golang/prometheus"}},
		{ImportPath: m + "/http", Imports: []string{m, m + "/commands", m + "/eventstore", "github.com/go-chi/chi/v5"}},
		{ImportPath: m + "/cmd/saasapi", Imports: []string{m + "/http", m + "/internal/pgcluster", m + "/migrations"}},
	}
	if got := importViolations(m, allowed); len(got) != 0 {
		t.Errorf("allowed imports reported: %q", got)
	}
	if got := importViolations(m, []listedPackage{{ImportPath: m + "/billing"}}); len(got) != 1 ||
		!strings.Contains(got[0], "not in the import table") {
		t.Errorf("unknown package: got %q", got)
	}
}

// ---------------------------------------------------------------------------
// b. Public safety

// builtinPatterns are never public, whatever the terms file says. The
// expressions are written so that they do not match their own source.
var builtinPatterns = []struct {
	name string
	re   *regexp.Regexp
}{
	{"a private key block", regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----`)},
	{"an AWS access key ID", regexp.MustCompile(`\b(AKIA|ASIA)[0-9A-Z]{16}\b`)},
	{"a GitHub token", regexp.MustCompile(`\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b`)},
	{"a Slack token", regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}`)},
	{"a raw API key of this service", regexp.MustCompile(`\bsapi_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}\b`)},
}

// forbiddenTerm is one line of the terms file, lower-cased.
type forbiddenTerm struct {
	line int
	term string
}

func parseTerms(r io.Reader) ([]forbiddenTerm, error) {
	var terms []forbiddenTerm
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		terms = append(terms, forbiddenTerm{line: n, term: strings.ToLower(line)})
	}
	return terms, sc.Err()
}

// scanContent returns one message per finding in a file's content. Terms
// are reported by their line in the terms file, not by their text.
func scanContent(name string, content []byte, terms []forbiddenTerm) []string {
	var out []string
	lower := bytes.ToLower(content)
	for _, term := range terms {
		if bytes.Contains(lower, []byte(term.term)) || strings.Contains(strings.ToLower(name), term.term) {
			out = append(out, fmt.Sprintf("%s: contains the forbidden term on line %d of $SAAS_API_FORBIDDEN_TERMS_FILE", name, term.line))
		}
	}
	for _, p := range builtinPatterns {
		if loc := p.re.FindIndex(content); loc != nil {
			line := 1 + bytes.Count(content[:loc[0]], []byte("\n"))
			out = append(out, fmt.Sprintf("%s:%d: looks like %s", name, line, p.name))
		}
	}
	return out
}

func isBinary(content []byte) bool {
	return bytes.IndexByte(content[:min(len(content), 8000)], 0) >= 0
}

// repoFiles lists the git-tracked files of the repository (relative
// paths), or, when git cannot answer, every file of the tree but .git,
// .data and bin.
func repoFiles(t *testing.T, root string) []string {
	t.Helper()
	if git, err := exec.LookPath("git"); err == nil {
		cmd := exec.Command(git, "ls-files", "-z")
		cmd.Dir = root
		out, err := cmd.Output()
		if err == nil {
			var files []string
			for f := range strings.SplitSeq(string(out), "\x00") {
				if f != "" {
					files = append(files, filepath.FromSlash(f))
				}
			}
			return files
		}
		t.Logf("git ls-files failed (%v); scanning the whole tree instead", err)
	} else {
		t.Log("git is not installed; scanning the whole tree instead")
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			switch rel {
			case ".git", ".data", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestPublicSafety(t *testing.T) {
	root, _ := moduleRoot(t)
	var terms []forbiddenTerm
	termsFile := os.Getenv("SAAS_API_FORBIDDEN_TERMS_FILE")
	if termsFile == "" {
		t.Log("SAAS_API_FORBIDDEN_TERMS_FILE is not set: scanning for the built-in patterns only")
	} else {
		f, err := os.Open(termsFile)
		if err != nil {
			t.Fatalf("SAAS_API_FORBIDDEN_TERMS_FILE: %v", err)
		}
		terms, err = parseTerms(f)
		_ = f.Close()
		if err != nil {
			t.Fatalf("SAAS_API_FORBIDDEN_TERMS_FILE: %v", err)
		}
		if abs, err := filepath.Abs(termsFile); err == nil {
			termsFile = abs
		}
	}
	files := repoFiles(t, root)
	scanned := 0
	for _, rel := range files {
		full := filepath.Join(root, rel)
		if full == termsFile {
			continue
		}
		content, err := os.ReadFile(full)
		if errors.Is(err, fs.ErrNotExist) {
			continue // tracked but deleted in the working tree
		} else if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if isBinary(content) {
			continue
		}
		scanned++
		for _, msg := range scanContent(filepath.ToSlash(rel), content, terms) {
			t.Error(msg)
		}
	}
	t.Logf("scanned %d text files with %d built-in patterns and %d forbidden terms", scanned, len(builtinPatterns), len(terms))
}

func TestPublicSafetyScannerFinds(t *testing.T) {
	// Built at run time so that this file does not contain them.
	samples := map[string]string{
		"a private key block":           "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIE...",
		"an AWS access key ID":          "aws_access_key_id = " + "AKIA" + strings.Repeat("Q", 16),
		"a GitHub token":                "token: " + "ghp_" + strings.Repeat("a1", 18),
		"a Slack token":                 "xoxb" + "-123456789012-abcdefghij",
		"a raw API key of this service": "Bearer " + "sapi_" + strings.Repeat("x", 43) + "_" + strings.Repeat("Y", 6),
	}
	for name, sample := range samples {
		got := scanContent("f.txt", []byte("line one\n"+sample+"\n"), nil)
		if len(got) != 1 || !strings.Contains(got[0], "f.txt:2: looks like "+name) {
			t.Errorf("%s: got %q", name, got)
		}
	}
	terms, err := parseTerms(strings.NewReader("# private words\n\nAcme Internal\nsecret-host\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := scanContent("docs/x.md", []byte("deployed on the acme internal cluster"), terms)
	if len(got) != 1 || !strings.Contains(got[0], "line 3 of") || strings.Contains(got[0], "acme") {
		t.Errorf("forbidden term: got %q (want line 3, without the term itself)", got)
	}
	if got := scanContent("secret-host.txt", nil, terms); len(got) != 1 {
		t.Errorf("term in a file name: got %q", got)
	}
	if got := scanContent("ok.md", []byte("sapi_ keys are 55 characters; an AKIA prefix marks AWS keys"), terms); len(got) != 0 {
		t.Errorf("clean text reported: %q", got)
	}
}

// committedConfig are the globs of committed configuration that may hold
// placeholders only. `**` matches any number of directories.
var committedConfig = []string{
	"docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml",
	"example.env",
	"observability/**/*.yml", "observability/**/*.yaml", "observability/**/*.json",
	".github/workflows/*.yml", ".github/workflows/*.yaml",
}

// secretKeyWords are the last words of key names whose values are secrets.
// Only the last word counts: SAAS_API_ACCESS_TOKEN_TTL_SECONDS and
// SAAS_API_PASSWORD_MIN_LENGTH are settings about secrets, not secrets.
var secretKeyWords = []string{"password", "passwd", "pwd", "secret", "token", "key", "apikey", "credential", "credentials"}

// keyWords splits a key name into lower-case words at separators and
// camelCase boundaries: basicAuthPassword -> basic auth password.
func keyWords(key string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	runes := []rune(key)
	for i, r := range runes {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
		case unicode.IsUpper(r) && i > 0 && unicode.IsLower(runes[i-1]):
			flush()
			cur = append(cur, r)
		default:
			cur = append(cur, r)
		}
	}
	flush()
	return words
}

func isSecretKey(key string) bool {
	w := keyWords(key)
	return len(w) > 0 && slices.Contains(secretKeyWords, w[len(w)-1])
}

var (
	placeholderWords = regexp.MustCompile(`(?i)placeholder|local|example|test`)
	// The password of a URL with credentials, such as a database URL.
	urlPassword = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]+:([^@\s/]+)@`)
	// A value that is only a reference to a secret kept elsewhere.
	secretReference = regexp.MustCompile(`^(\$\{\{\s*secrets\.[A-Za-z_][A-Za-z0-9_]*\s*\}\}|\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?=+][^}]*)?\}|\$[A-Za-z_][A-Za-z0-9_]*)$`)
)

// placeholderOK reports whether a committed value of a secret key is
// acceptable.
func placeholderOK(value string) bool {
	return value == "" || secretReference.MatchString(value) || placeholderWords.MatchString(value)
}

// unquote strips YAML/env quoting and a trailing comment from a scalar.
func unquote(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	if q := v[0]; q == '"' || q == '\'' {
		if end := strings.IndexByte(v[1:], q); end >= 0 {
			return v[1 : 1+end]
		}
		return v[1:]
	}
	if i := strings.Index(v, " #"); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

type keyValue struct {
	line       int
	key, value string
}

var (
	yamlEntry = regexp.MustCompile(`^\s*(?:-\s+)?(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_.\-]+))\s*:(?:\s+(.*))?$`)
	envEntry  = regexp.MustCompile(`^\s*(?:-\s+|export\s+)?["']?([A-Za-z_][A-Za-z0-9_.\-]*)=(.*?)["']?\s*$`)
)

// yamlPairs finds the key: value and "- KEY=value" entries of a YAML file
// line by line, so that it also reads the env-style lists of compose files
// and reports line numbers: values spread over several lines (block
// scalars, nested mappings) are not secrets of a key and are skipped, while
// lines inside
// block scalars that look like entries are checked too, which errs on the
// safe side.
func yamlPairs(content string) []keyValue {
	var out []keyValue
	n := 0
	for line := range strings.Lines(content) {
		n++
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := envEntry.FindStringSubmatch(line); m != nil && strings.HasPrefix(strings.TrimSpace(line), "-") {
			out = append(out, keyValue{n, m[1], unquote(m[2])})
			continue
		}
		m := yamlEntry.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		value := unquote(m[4])
		if strings.HasPrefix(value, "|") || strings.HasPrefix(value, ">") {
			value = ""
		}
		out = append(out, keyValue{n, m[1] + m[2] + m[3], value})
	}
	return out
}

// envPairs finds the KEY=value lines of an env file.
func envPairs(content string) []keyValue {
	var out []keyValue
	n := 0
	for line := range strings.Lines(content) {
		n++
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := envEntry.FindStringSubmatch(line); m != nil {
			out = append(out, keyValue{n, m[1], unquote(m[2])})
		}
	}
	return out
}

// jsonPairs walks a JSON document and returns every scalar under a key,
// with the JSON path as its line.
func jsonPairs(content []byte) ([]keyValue, error) {
	var doc any
	if err := json.Unmarshal(content, &doc); err != nil {
		return nil, err
	}
	var out []keyValue
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				walk(k, child)
			}
		case []any:
			for _, child := range v {
				walk(key, child)
			}
		case string:
			out = append(out, keyValue{0, key, v})
		case float64:
			out = append(out, keyValue{0, key, strconv.FormatFloat(v, 'f', -1, 64)})
		}
	}
	walk("", doc)
	return out, nil
}

// configViolations checks one committed configuration file.
func configViolations(name string, content []byte) []string {
	var pairs []keyValue
	switch {
	case strings.HasSuffix(name, ".json"):
		var err error
		if pairs, err = jsonPairs(content); err != nil {
			return []string{fmt.Sprintf("%s: %v", name, err)}
		}
	case strings.HasSuffix(name, ".env"):
		pairs = envPairs(string(content))
	default:
		pairs = yamlPairs(string(content))
	}
	var out []string
	for _, p := range pairs {
		var what string
		if m := urlPassword.FindStringSubmatch(p.value); m != nil && !placeholderOK(m[1]) {
			what = "the password in the URL of " + p.key
		} else if isSecretKey(p.key) && !placeholderOK(p.value) {
			what = p.key
		} else {
			continue
		}
		where := name
		if p.line > 0 {
			where = fmt.Sprintf("%s:%d", name, p.line)
		}
		out = append(out, fmt.Sprintf("%s: %s is not a placeholder: committed configuration may hold "+
			`only values containing "placeholder", "local", "example" or "test", or references such as `+
			"${{ secrets.NAME }} or ${VAR}", where, what))
	}
	return out
}

// globFiles expands the committedConfig globs ("**" is any depth).
func globFiles(root string, patterns []string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch rel {
			case ".git", ".data", "bin":
				return filepath.SkipDir
			}
			return nil
		}
		for _, pat := range patterns {
			if globMatch(pat, rel) {
				files = append(files, rel)
				break
			}
		}
		return nil
	})
	return files, err
}

func globMatch(pattern, name string) bool {
	ps, ns := strings.Split(pattern, "/"), strings.Split(name, "/")
	var match func(ps, ns []string) bool
	match = func(ps, ns []string) bool {
		if len(ps) == 0 {
			return len(ns) == 0
		}
		if ps[0] == "**" {
			for i := 0; i <= len(ns); i++ {
				if match(ps[1:], ns[i:]) {
					return true
				}
			}
			return false
		}
		if len(ns) == 0 {
			return false
		}
		ok, err := path.Match(ps[0], ns[0])
		return err == nil && ok && match(ps[1:], ns[1:])
	}
	return match(ps, ns)
}

func TestCommittedConfigHoldsPlaceholdersOnly(t *testing.T) {
	root, _ := moduleRoot(t)
	files, err := globFiles(root, committedConfig)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Log("no committed configuration files yet")
	}
	for _, rel := range files {
		content, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
		if err != nil {
			t.Error(err)
			continue
		}
		for _, msg := range configViolations(rel, content) {
			t.Error(msg)
		}
	}
	t.Logf("checked %d configuration files: %s", len(files), strings.Join(files, ", "))
}

func TestPlaceholderCheck(t *testing.T) {
	compose := `services:
  db:
    environment:
      POSTGRES_PASSWORD: local-placeholder-postgres-password
      POSTGRES_USER: saas_api
  api:
    environment:
      - SAAS_API_JWT_SECRET=${SAAS_API_JWT_SECRET:-local-placeholder-jwt-secret}
      - SAAS_API_ACCESS_TOKEN_TTL_SECONDS=900
      - "GF_SECURITY_ADMIN_PASSWORD=hunter2hunter2"
  ci:
    env:
      DATABASE_URL: postgres://saas_api:saas_api@db:5432/saas_api
      TEST_URL: postgres://postgres:local-placeholder@127.0.0.1:5432/postgres
      PGPASSWORD: ${{ secrets.PGPASSWORD }}
      api_key: "Sup3rS3cret" # a real one
      key_prefix: sapi_abc
    steps:
      - run: |
          echo build
`
	got := configViolations("docker-compose.yml", []byte(compose))
	if len(got) != 3 || !strings.Contains(got[0], ":10: GF_SECURITY_ADMIN_PASSWORD") ||
		!strings.Contains(got[1], ":13: the password in the URL of DATABASE_URL") || !strings.Contains(got[2], ":16: api_key") {
		t.Errorf("yaml: got %q", got)
	}
	env := "# comment\nSAAS_API_JWT_SECRET=local-placeholder-jwt-secret-not-for-production\n" +
		"SAAS_API_PASSWORD_MIN_LENGTH=12\nexport SAAS_API_JWT_SECRET=abc123abc123\n"
	if got := configViolations("example.env", []byte(env)); len(got) != 1 || !strings.Contains(got[0], "example.env:4:") {
		t.Errorf("env: got %q", got)
	}
	dash := `{"panels":[{"datasource":{"uid":"prometheus"}}],"secureJsonData":{"basicAuthPassword":"s3cr3t"},"token":"example-token"}`
	if got := configViolations("observability/grafana/dashboards/x.json", []byte(dash)); len(got) != 1 || !strings.Contains(got[0], "basicAuthPassword") {
		t.Errorf("json: got %q", got)
	}
	for pat, name := range map[string]string{
		"observability/**/*.yml":  "observability/prometheus/prometheus.yml",
		"observability/**/*.json": "observability/grafana/dashboards/a.json",
		".github/workflows/*.yml": ".github/workflows/ci.yml",
	} {
		if !globMatch(pat, name) {
			t.Errorf("%s does not match %s", pat, name)
		}
	}
	if globMatch(".github/workflows/*.yml", ".github/workflows/sub/ci.yml") || globMatch("example.env", "x/example.env") {
		t.Error("glob matched too much")
	}
}

// ---------------------------------------------------------------------------
// c. Secret fields in response bodies

// secretFieldNames are the contract's secret names (A.8), normalised.
var secretFieldNames = []string{"authorization", "bearertoken", "keyhash", "password", "passwordhash",
	"rawkey", "rawpassword", "refreshtoken", "secret", "token", "accesstoken"}

func normalise(name string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return unicode.ToLower(r)
		}
		return -1
	}, name)
}

// structKey names a struct type of package http: the file, the function
// it is declared in ("" at package level) and the type's name.
type structKey struct {
	file, fn, typ string
}

// desc describes the type within its file.
func (k structKey) desc() string {
	if k.fn == "" {
		return "type " + k.typ
	}
	return "type " + k.typ + " in " + k.fn
}

func (k structKey) String() string { return k.file + ": " + k.desc() }

// allowedSecretFields are the only secrets a response may carry, each in
// exactly one type.
var allowedSecretFields = map[structKey]string{
	// A.7: the raw key is shown once, in the response to its creation.
	{"apikeys.go", "renderAPIKey", "live"}: "raw_key",
	// A.3: handing out the token is the purpose of login.
	{"users.go", "handleLogin", "response"}: "access_token",
}

// isRequestType reports whether a type is a request body: the handlers
// name them request (or fooRequest).
func isRequestType(name string) bool {
	return name == "request" || strings.HasSuffix(name, "Request")
}

type jsonField struct {
	key  structKey
	name string // the JSON name as written
	pos  token.Position
}

// responseFields returns the JSON fields of every struct type in the
// given Go files that has json tags and is not a request body, together
// with every struct type seen.
func responseFields(fset *token.FileSet, files map[string]*ast.File) (fields []jsonField, types []structKey) {
	for name, f := range files {
		var fn string
		var visit func(n ast.Node) bool
		visit = func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				fn = n.Name.Name
				if n.Body != nil {
					ast.Inspect(n.Body, visit)
				}
				fn = ""
				return false
			case *ast.TypeSpec:
				st, ok := n.Type.(*ast.StructType)
				if !ok {
					return true
				}
				key := structKey{name, fn, n.Name.Name}
				types = append(types, key)
				if isRequestType(n.Name.Name) || !hasJSONTags(st) {
					return false
				}
				fields = append(fields, structFields(fset, key, st)...)
				return false
			}
			return true
		}
		ast.Inspect(f, visit)
	}
	return fields, types
}

func hasJSONTags(st *ast.StructType) bool {
	found := false
	ast.Inspect(st, func(n ast.Node) bool {
		if f, ok := n.(*ast.Field); ok && f.Tag != nil {
			if _, ok := jsonTag(f.Tag); ok {
				found = true
			}
		}
		return !found
	})
	return found
}

func jsonTag(lit *ast.BasicLit) (string, bool) {
	tag, err := strconv.Unquote(lit.Value)
	if err != nil {
		return "", false
	}
	return reflect.StructTag(tag).Lookup("json")
}

// structFields lists the JSON names of a struct's fields, descending into
// anonymous struct field types. An exported field without a json tag is
// encoded under its Go name, so that name counts too.
func structFields(fset *token.FileSet, key structKey, st *ast.StructType) []jsonField {
	var out []jsonField
	for _, f := range st.Fields.List {
		if inner, ok := f.Type.(*ast.StructType); ok {
			out = append(out, structFields(fset, key, inner)...)
		}
		var tagName string
		var tagged bool
		if f.Tag != nil {
			var tag string
			if tag, tagged = jsonTag(f.Tag); tagged {
				tagName, _, _ = strings.Cut(tag, ",")
				if tagName == "-" {
					continue
				}
			}
		}
		for _, n := range f.Names {
			name := tagName
			if name == "" {
				if !n.IsExported() {
					continue
				}
				name = n.Name
			}
			out = append(out, jsonField{key, name, fset.Position(n.Pos())})
		}
	}
	return out
}

func secretFieldViolations(dir string, fields []jsonField, allowed map[structKey]string) (violations []string, used map[structKey]bool) {
	used = map[structKey]bool{}
	for _, f := range fields {
		if !slices.Contains(secretFieldNames, normalise(f.name)) {
			continue
		}
		if allowed[f.key] == f.name {
			used[f.key] = true
			continue
		}
		violations = append(violations, fmt.Sprintf("%s:%d: %s has the secret JSON field %q: responses and event payloads never "+
			"carry secrets (contract A.8, ADR 0003); only raw_key in the key creation response and access_token in the login response may",
			path.Join(dir, f.key.file), f.pos.Line, f.key.desc(), f.name))
	}
	return violations, used
}

func parseDir(t *testing.T, dir string) (*token.FileSet, map[string]*ast.File) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	return fset, files
}

func TestResponsesCarryNoSecretFields(t *testing.T) {
	root, _ := moduleRoot(t)
	fset, files := parseDir(t, filepath.Join(root, "http"))
	fields, types := responseFields(fset, files)
	if len(fields) == 0 {
		t.Fatal("no response fields found in http/*.go")
	}
	violations, used := secretFieldViolations("http", fields, allowedSecretFields)
	for _, v := range violations {
		t.Error(v)
	}
	// The allow-list must stay exact: an entry whose type or field has gone
	// would silently allow a secret back in under that name.
	for key, field := range allowedSecretFields {
		if !slices.Contains(types, key) {
			t.Errorf("allowedSecretFields names %s, which no longer exists: update the allow-list", key)
		} else if !used[key] {
			t.Errorf("allowedSecretFields allows %q in %s, which no longer has it: remove the entry", field, key)
		}
	}
	t.Logf("checked %d JSON fields of %d struct types", len(fields), len(types))
}

// TestEventPayloadsCarryNoSecretFields applies the same scan, with no
// exception, to the structs of the root package: the event payloads become
// audit metadata, which must never hold a secret (ADR 0003, contract A.8).
func TestEventPayloadsCarryNoSecretFields(t *testing.T) {
	root, _ := moduleRoot(t)
	fset, files := parseDir(t, root)
	fields, types := responseFields(fset, files)
	if len(fields) == 0 {
		t.Fatal("no JSON fields found in the root package")
	}
	violations, _ := secretFieldViolations(".", fields, nil)
	for _, v := range violations {
		t.Error(v)
	}
	t.Logf("checked %d JSON fields of %d struct types", len(fields), len(types))
}

func TestSecretFieldScanner(t *testing.T) {
	src := `package http

type leaky struct {
	ID   string ` + "`json:\"id\"`" + `
	Hash string ` + "`json:\"Key-Hash\"`" + `
}

type untagged struct {
	Name     string ` + "`json:\"name\"`" + `
	Password string
	Ignored  string ` + "`json:\"-\"`" + `
	secret   string
}

func handleLogin() {
	type request struct {
		Password string ` + "`json:\"password\"`" + `
	}
	type response struct {
		AccessToken string ` + "`json:\"access_token\"`" + `
		Nested struct {
			Refresh string ` + "`json:\"refresh_token\"`" + `
		} ` + "`json:\"nested\"`" + `
	}
}

func handleOther() {
	type response struct {
		AccessToken string ` + "`json:\"access_token\"`" + `
	}
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "users.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	fields, _ := responseFields(fset, map[string]*ast.File{"users.go": f})
	violations, used := secretFieldViolations("http", fields, allowedSecretFields)
	want := []string{`type leaky has the secret JSON field "Key-Hash"`, `type untagged has the secret JSON field "Password"`,
		`type response in handleLogin has the secret JSON field "refresh_token"`,
		`type response in handleOther has the secret JSON field "access_token"`}
	if len(violations) != len(want) {
		t.Fatalf("got %d violations, want %d:\n%s", len(violations), len(want), strings.Join(violations, "\n"))
	}
	for _, w := range want {
		if !slices.ContainsFunc(violations, func(v string) bool { return strings.Contains(v, w) }) {
			t.Errorf("missing violation %q in\n%s", w, strings.Join(violations, "\n"))
		}
	}
	if !used[structKey{"users.go", "handleLogin", "response"}] {
		t.Error("the allowed access_token of the login response was not recognised")
	}
}
