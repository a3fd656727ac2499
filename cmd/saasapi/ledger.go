package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The verification commands that need no trust in the database
// (docs/audit.md): audit verify --pin and --checkpoint, audit verify-export
// (no database at all), audit monitor (a witness that keeps the last
// checkpoint it saw) and audit keygen. Exit status: 0 verified, 1 an
// integrity failure (or an error), 2 a usage error.

const verifyExportUsage = `Usage: saasapi audit verify-export --checkpoint FILE --key VERIFIER_KEY [--file EXPORT]

Recompute every chain hash and the Merkle root from an NDJSON export of an
organisation's audit log (GET /orgs/{id}/audit-events/export; standard input
when --file is not given) and check them against a signed checkpoint. It
needs no database and reads no SAAS_API_* configuration. --key is the
verifier key (GET /ledger/verifier-key), or a file holding it.
`

const monitorUsage = `Usage: saasapi audit monitor --url BASE_URL --org ID --token-file F --state DIR [--key VERIFIER_KEY]

Fetch the organisation's current checkpoint, verify its signature against the
pinned verifier key, and check a consistency proof from the last checkpoint
seen (kept in DIR) before keeping the new one: a rewritten or rewound ledger
fails. The first run pins --key (a key string or a file) in DIR; later runs
use the pinned key, and a different --key fails. The token file holds an
access token of an owner or admin.
`

const keygenUsage = `Usage: saasapi audit keygen [--name NAME]

Generate an Ed25519 note key pair for signing ledger checkpoints: the signer
key (for SAAS_API_LEDGER_SIGNING_KEY; keep it secret and out of the database)
on standard output, the verifier key to publish on standard error. NAME
defaults to the ledger origin.
`

// usageFail reports a usage problem found after parsing.
func usageFail(stderr io.Writer, command, msg, usage string) error {
	fmt.Fprintf(stderr, "%s: %s\n\n%s", command, msg, usage)
	return errUsage
}

// readVerifierKey takes a verifier key, or the name of a file holding one.
func readVerifierKey(v string) string {
	if strings.Count(v, "+") >= 2 && !strings.ContainsAny(v, "/\\") {
		return v
	}
	if b, err := os.ReadFile(v); err == nil {
		return strings.TrimSpace(string(b))
	}
	return v
}

// ledgerOfOrigin returns the ledger a checkpoint origin names: the ID after
// its final /orgs/ or /users/.
func ledgerOfOrigin(origin string) (saasapi.ID, error) {
	i := strings.LastIndex(origin, "/")
	kind := origin[:max(i, 0)]
	if i < 0 || (!strings.HasSuffix(kind, "/orgs") && !strings.HasSuffix(kind, "/users")) {
		return "", fmt.Errorf("checkpoint origin %q does not end in /orgs/<id> or /users/<id>", origin)
	}
	id, err := saasapi.ParseID(origin[i+1:])
	if err != nil {
		return "", fmt.Errorf("checkpoint origin %q does not end in a ledger ID", origin)
	}
	return id, nil
}

// openCheckpointFile reads and verifies a signed checkpoint file.
func openCheckpointFile(path, key string) (eventstore.Checkpoint, saasapi.ID, error) {
	msg, err := os.ReadFile(path)
	if err != nil {
		return eventstore.Checkpoint{}, "", err
	}
	cp, err := eventstore.OpenCheckpoint(msg, readVerifierKey(key))
	if err != nil {
		return eventstore.Checkpoint{}, "", &integrityError{fmt.Sprintf("checkpoint %s: %v", path, err)}
	}
	ledger, err := ledgerOfOrigin(cp.Origin)
	if err != nil {
		return eventstore.Checkpoint{}, "", &integrityError{err.Error()}
	}
	return cp, ledger, nil
}

// evidence is what audit verify checks a ledger against besides itself.
type evidence struct {
	pin        pinFlag
	checkpoint string
	key        string
}

// resolve checks the evidence flags and reads the checkpoint; the ledger is
// --org or, with a checkpoint, the one its origin names.
func (ev evidence) resolve(orgID saasapi.ID, stderr io.Writer) (*eventstore.Checkpoint, saasapi.ID, error) {
	const name = "saasapi audit verify"
	switch {
	case (ev.checkpoint == "") != (ev.key == ""):
		return nil, "", usageFail(stderr, name, "--checkpoint and --key go together", auditVerifyUsage)
	case ev.checkpoint != "":
		c, ledger, err := openCheckpointFile(ev.checkpoint, ev.key)
		if err != nil {
			return nil, "", err
		}
		if orgID != "" && orgID != ledger {
			return nil, "", usageFail(stderr, name, fmt.Sprintf("the checkpoint is for ledger %s, not --org %s", ledger, orgID), auditVerifyUsage)
		}
		return &c, ledger, nil
	case ev.pin.set && orgID == "":
		return nil, "", usageFail(stderr, name, "--pin needs --org (or --checkpoint) to name the ledger", auditVerifyUsage)
	}
	return nil, orgID, nil
}

// integrityError is a verification that failed for a reason other than a
// broken chain (a signature, a root, a proof).
type integrityError struct{ msg string }

func (e *integrityError) Error() string { return e.msg }

// pinFlag is --pin SEQUENCE:HASH.
type pinFlag struct {
	seq  int64
	hash []byte
	set  bool
}

func (p *pinFlag) String() string { return "" }

func (p *pinFlag) Set(v string) error {
	s, h, ok := strings.Cut(v, ":")
	seq, err := strconv.ParseInt(s, 10, 64)
	if !ok || err != nil || seq < 1 {
		return errors.New("want SEQUENCE:HASH, with SEQUENCE >= 1")
	}
	hash, err := hex.DecodeString(h)
	if err != nil || len(hash) != eventstore.HashSize {
		return errors.New("want SEQUENCE:HASH, with HASH 64 hexadecimal digits")
	}
	*p = pinFlag{seq: seq, hash: hash, set: true}
	return nil
}

// verifyEvidence checks a ledger against what an auditor holds outside the
// database: a pinned event hash, or a signed checkpoint whose root it
// recomputes from the events.
func verifyEvidence(ctx context.Context, q eventstore.Querier, ledger saasapi.ID, pin pinFlag,
	cp *eventstore.Checkpoint, stdout io.Writer,
) error {
	size := int64(-1)
	if cp != nil {
		size = cp.Size
	}
	n, root, err := eventstore.VerifyLedgerAt(ctx, q, ledger, size)
	if errors.Is(err, eventstore.ErrLedgerNotFound) {
		return fmt.Errorf("audit verify: there is no ledger %s", ledger)
	}
	if err != nil {
		return chainFailure(err)
	}
	if pin.set {
		if pin.seq > n {
			return &eventstore.ChainError{LedgerID: ledger, Sequence: n + 1,
				Reason: fmt.Sprintf("event is missing: the pinned sequence %d lies beyond the last event %d", pin.seq, n)}
		}
		evs, err := eventstore.ReadLedger(ctx, q, ledger, pin.seq-1, 1)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		if len(evs) != 1 || !bytes.Equal(evs[0].Hash, pin.hash) {
			return &eventstore.ChainError{LedgerID: ledger, Sequence: pin.seq,
				Reason: "the event's hash is not the pinned hash: events up to this sequence were changed"}
		}
		fmt.Fprintf(stdout, "ledger %s: event %d has the pinned hash\n", ledger, pin.seq)
	}
	if cp != nil {
		if root != cp.Root {
			reason := fmt.Sprintf("the root of the first %d events, recomputed from them, is not the signed checkpoint's root", cp.Size)
			if r, err := eventstore.LastReseal(ctx, q, ledger); err == nil && r != nil && r.FirstSequence <= cp.Size {
				reason += fmt.Sprintf(" (the ledger's events from sequence %d on were resealed, which changed their hashes: "+
					"a checkpoint signed before then cannot match; ledger_reseals records the old root %x of size %d)",
					r.FirstSequence, r.OldRoot[:], r.TreeSize)
			}
			return &eventstore.ChainError{LedgerID: ledger, Sequence: cp.Size, Reason: reason}
		}
		fmt.Fprintf(stdout, "ledger %s: the first %d events match the signed checkpoint\n", ledger, cp.Size)
	}
	fmt.Fprintf(stdout, "verified 1 ledger, %d events\n", n)
	return nil
}

// exportLine is the part of an export line the hash covers, with the chain.
type exportLine struct {
	ID             saasapi.ID      `json:"id"`
	OrganisationID saasapi.ID      `json:"organisation_id"`
	Sequence       int64           `json:"sequence"`
	Action         string          `json:"action"`
	TargetType     string          `json:"target_type"`
	TargetID       saasapi.ID      `json:"target_id"`
	ActorUserID    saasapi.ID      `json:"actor_user_id"`
	ActorAPIKeyID  saasapi.ID      `json:"actor_api_key_id"`
	RequestID      string          `json:"request_id"`
	Metadata       json.RawMessage `json:"metadata"`
	CreatedAt      time.Time       `json:"created_at"`
	PrevHash       string          `json:"prev_hash"`
	Hash           string          `json:"hash"`
	LedgerType     string          `json:"ledger_type"`
	StreamVersion  int64           `json:"stream_version"`
	SchemaVersion  int             `json:"schema_version"`
	ActorType      string          `json:"actor_type"`
}

func (l exportLine) event() (saasapi.Event, error) {
	prev, err1 := hex.DecodeString(l.PrevHash)
	hash, err2 := hex.DecodeString(l.Hash)
	if err1 != nil || err2 != nil || len(prev) != eventstore.HashSize || len(hash) != eventstore.HashSize {
		return saasapi.Event{}, errors.New("prev_hash or hash is not 64 hexadecimal digits")
	}
	return saasapi.Event{ID: l.ID, LedgerID: l.OrganisationID, LedgerType: l.LedgerType, Sequence: l.Sequence,
		StreamType: l.TargetType, StreamID: l.TargetID, StreamVersion: l.StreamVersion, Type: l.Action,
		SchemaVersion: l.SchemaVersion,
		Actor:         saasapi.Actor{Type: saasapi.PrincipalType(l.ActorType), UserID: l.ActorUserID, APIKeyID: l.ActorAPIKeyID},
		RequestID:     l.RequestID, OccurredAt: l.CreatedAt.UTC(), Payload: l.Metadata, PrevHash: prev, Hash: hash}, nil
}

// verifyExport checks an export against a checkpoint of its ledger: every
// line chains to the one before, every hash is recomputed, the lines start
// at sequence 1, and the root of the first cp.Size events is cp.Root.
func verifyExport(r io.Reader, cp eventstore.Checkpoint, ledger saasapi.ID, stdout io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	var tree eventstore.LeafRoot
	prev := eventstore.ZeroHash
	var n int64
	fail := func(seq int64, format string, args ...any) error {
		return &eventstore.ChainError{LedgerID: ledger, Sequence: seq, Reason: fmt.Sprintf(format, args...)}
	}
	checkRoot := func() error {
		root, err := tree.Root()
		if err != nil {
			return err
		}
		if root != cp.Root {
			return fail(cp.Size, "the root of the first %d events of the export is not the signed checkpoint's root", cp.Size)
		}
		return nil
	}
	if cp.Size == 0 {
		if err := checkRoot(); err != nil {
			return err
		}
	}
	for sc.Scan() {
		want := n + 1
		var l exportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fail(want, "line %d is not an export line: %v", want, err)
		}
		e, err := l.event()
		if err != nil {
			return fail(want, "line %d: %v", want, err)
		}
		switch {
		case e.LedgerID != ledger:
			return fail(want, "line %d belongs to ledger %q, not the checkpoint's", want, e.LedgerID)
		case e.Sequence != want:
			return fail(want, "line %d has sequence %d: an event is missing, reordered or extra", want, e.Sequence)
		case !bytes.Equal(e.PrevHash, prev):
			return fail(want, "prev_hash does not equal the hash of the line before")
		case !bytes.Equal(e.Hash, eventstore.Hash(e.PrevHash, eventstore.Canonical(e))):
			return fail(want, "hash does not match the hash recomputed from the line")
		}
		if err := tree.Add(e.Hash); err != nil {
			return err
		}
		prev, n = e.Hash, want
		if n == cp.Size {
			if err := checkRoot(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the export: %w", err)
	}
	if n < cp.Size {
		return fail(n+1, "event is missing: the export ends at sequence %d, the checkpoint covers %d events", n, cp.Size)
	}
	fmt.Fprintf(stdout, "ledger %s: %d events verified against the signed checkpoint of size %d\n", ledger, cp.Size, cp.Size)
	if n > cp.Size {
		fmt.Fprintf(stdout, "ledger %s: %d later events are chained to them but not covered by the checkpoint\n", ledger, n-cp.Size)
	}
	return nil
}

// verifyExportFlags defines the flags of `saasapi audit verify-export`.
func verifyExportFlags(fs *flag.FlagSet) action {
	checkpoint := fs.String("checkpoint", "", "the signed checkpoint `file`")
	key := fs.String("key", "", "the verifier key, or a file holding it")
	file := fs.String("file", "", "the NDJSON export (default: standard input)")
	return func(_ context.Context, _ environment, stdout, stderr io.Writer) error {
		return runVerifyExport(*checkpoint, *key, *file, os.Stdin, stdout, stderr)
	}
}

// runVerifyExport runs `saasapi audit verify-export`. It reads no
// configuration at all.
func runVerifyExport(checkpoint, key, file string, stdin io.Reader, stdout, stderr io.Writer) error {
	if checkpoint == "" || key == "" {
		return usageFail(stderr, "saasapi audit verify-export", "--checkpoint and --key are required", verifyExportUsage)
	}
	cp, ledger, err := openCheckpointFile(checkpoint, key)
	if err != nil {
		return err
	}
	in := stdin
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		in = f
	}
	return verifyExport(in, cp, ledger, stdout)
}

// keygenFlags defines the flags of `saasapi audit keygen`.
func keygenFlags(fs *flag.FlagSet) action {
	name := fs.String("name", "", "the key's name (default: the ledger origin)")
	return func(_ context.Context, env environment, stdout, stderr io.Writer) error {
		return runKeygen(*name, env, stdout, stderr)
	}
}

// runKeygen runs `saasapi audit keygen`.
func runKeygen(name string, env environment, stdout, stderr io.Writer) error {
	if name == "" {
		cfg, err := loadConfig(env.get, ":8000")
		if err != nil {
			return err
		}
		name = cfg.ledgerOrigin()
	}
	skey, err := eventstore.GenerateSigningKey(name)
	if err != nil {
		return err
	}
	s, err := eventstore.NewLedgerSigner(skey, name)
	if err != nil {
		return fmt.Errorf("audit keygen: --name %w", err)
	}
	fmt.Fprintln(stdout, skey)
	fmt.Fprintln(stderr, "verifier key:", s.VerifierKey())
	return nil
}

// monitorState is what the monitor keeps in its state directory.
type monitorState struct {
	dir string
	org saasapi.ID
}

func (s monitorState) keyPath() string { return filepath.Join(s.dir, "verifier-key") }
func (s monitorState) checkpointPath() string {
	return filepath.Join(s.dir, "checkpoint-"+string(s.org))
}

// writeAtomic replaces path with data, so that a crash never leaves half a
// checkpoint.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// monitorClient fetches from the service with the monitor's token.
type monitorClient struct {
	base  string
	token string
	http  *http.Client
}

func (c monitorClient) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// monitorFlags defines the flags of `saasapi audit monitor`.
func monitorFlags(fs *flag.FlagSet) action {
	var m monitorArgs
	fs.StringVar(&m.base, "url", "", "the service's base URL")
	fs.StringVar(&m.org, "org", "", "the organisation ID")
	fs.StringVar(&m.tokenFile, "token-file", "", "a file holding an access token of an owner or admin")
	fs.StringVar(&m.stateDir, "state", "", "the `directory` keeping the pinned key and the last checkpoint")
	fs.StringVar(&m.key, "key", "", "the verifier key to pin on the first run, or a file holding it")
	return func(ctx context.Context, _ environment, stdout, stderr io.Writer) error {
		return runMonitor(ctx, m, stdout, stderr)
	}
}

// monitorArgs are the flags of `saasapi audit monitor`.
type monitorArgs struct{ base, org, tokenFile, stateDir, key string }

// runMonitor runs `saasapi audit monitor`.
func runMonitor(ctx context.Context, m monitorArgs, stdout, stderr io.Writer) error {
	const name = "saasapi audit monitor"
	base, org, tokenFile, stateDir, key := &m.base, &m.org, &m.tokenFile, &m.stateDir, &m.key
	if *base == "" || *org == "" || *tokenFile == "" || *stateDir == "" {
		return usageFail(stderr, name, "--url, --org, --token-file and --state are required", monitorUsage)
	}
	orgID, err := saasapi.ParseID(*org)
	if err != nil {
		return usageFail(stderr, name, fmt.Sprintf("--org %q is not an organisation ID", *org), monitorUsage)
	}
	if u, err := url.Parse(*base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageFail(stderr, name, fmt.Sprintf("--url %q is not an http(s) URL", *base), monitorUsage)
	}
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		return err
	}
	st := monitorState{dir: *stateDir, org: orgID}
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return err
	}
	vkey, err := pinnedKey(st, *key)
	if err != nil {
		return err
	}
	c := monitorClient{base: strings.TrimRight(*base, "/"), token: strings.TrimSpace(string(token)),
		http: &http.Client{Timeout: 30 * time.Second}}
	return monitorOnce(ctx, c, st, vkey, stdout)
}

// pinnedKey returns the verifier key pinned in the state directory, pinning
// flagKey on the first run.
func pinnedKey(st monitorState, flagKey string) (string, error) {
	if flagKey != "" {
		flagKey = readVerifierKey(flagKey)
	}
	b, err := os.ReadFile(st.keyPath())
	switch {
	case err == nil:
		pinned := strings.TrimSpace(string(b))
		if flagKey != "" && flagKey != pinned {
			return "", &integrityError{fmt.Sprintf("--key differs from the verifier key pinned in %s", st.keyPath())}
		}
		return pinned, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", err
	case flagKey == "":
		return "", fmt.Errorf("no verifier key is pinned in %s yet: pass --key on the first run", st.dir)
	}
	if _, err := note.NewVerifier(flagKey); err != nil {
		return "", fmt.Errorf("--key is not a note verifier key: %w", err)
	}
	return flagKey, writeAtomic(st.keyPath(), []byte(flagKey+"\n"))
}

// monitorOnce fetches the current checkpoint and checks that it extends the
// one kept in the state directory, then keeps it.
func monitorOnce(ctx context.Context, c monitorClient, st monitorState, vkey string, stdout io.Writer) error {
	path := "/orgs/" + string(st.org) + "/audit-events"
	msg, err := c.get(ctx, path+"/checkpoint")
	if err != nil {
		return err
	}
	cur, err := eventstore.OpenCheckpoint(msg, vkey)
	if err != nil {
		return &integrityError{fmt.Sprintf("ledger %s: the service's checkpoint does not verify with the pinned key: %v", st.org, err)}
	}
	if ledger, err := ledgerOfOrigin(cur.Origin); err != nil || ledger != st.org {
		return &integrityError{fmt.Sprintf("ledger %s: the service sent a checkpoint for %q", st.org, cur.Origin)}
	}
	fail := func(seq int64, format string, args ...any) error {
		return &eventstore.ChainError{LedgerID: st.org, Sequence: seq, Reason: fmt.Sprintf(format, args...)}
	}
	old, err := os.ReadFile(st.checkpointPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
		fmt.Fprintf(stdout, "ledger %s: first checkpoint, size %d, kept\n", st.org, cur.Size)
		return writeAtomic(st.checkpointPath(), msg)
	case err != nil:
		return err
	}
	prev, err := eventstore.OpenCheckpoint(old, vkey)
	if err != nil {
		return &integrityError{fmt.Sprintf("ledger %s: the kept checkpoint %s does not verify: %v", st.org, st.checkpointPath(), err)}
	}
	switch {
	case cur.Size < prev.Size:
		return fail(cur.Size+1, "rewound: the service's checkpoint has %d events, the kept one %d", cur.Size, prev.Size)
	case cur.Size == prev.Size && cur.Root != prev.Root:
		return fail(cur.Size, "fork: the service's checkpoint of size %d has another root than the kept one", cur.Size)
	case cur.Size > prev.Size && prev.Size > 0:
		body, err := c.get(ctx, fmt.Sprintf("%s/proof/consistency?from=%d&to=%d", path, prev.Size, cur.Size))
		if err != nil {
			return err
		}
		var p struct{ Hashes []tlog.Hash } // tlog.Hash decodes the base64 strings
		if err := json.Unmarshal(body, &p); err != nil {
			return fmt.Errorf("consistency proof: %w", err)
		}
		if err := tlog.CheckTree(p.Hashes, cur.Size, cur.Root, prev.Size, prev.Root); err != nil {
			return fail(prev.Size, "fork: the checkpoint of size %d does not extend the kept one of size %d", cur.Size, prev.Size)
		}
	}
	fmt.Fprintf(stdout, "ledger %s: checkpoint of size %d extends the kept one of size %d, kept\n", st.org, cur.Size, prev.Size)
	return writeAtomic(st.checkpointPath(), msg)
}
