package eventstore

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoints are C2SP tlog-checkpoint notes (docs/audit.md): a signed note
// (golang.org/x/mod/sumdb/note, Ed25519) whose text is the ledger's origin,
// its tree size in decimal and its root hash in base64, one per line. The
// signing key never enters the database, so whoever can only write to the
// database cannot sign a checkpoint of a tree they rewrote.

// ErrLedgerIntegrity is what an IntegrityError is: the stored tree does not
// extend the last checkpoint the service signed for the ledger.
var ErrLedgerIntegrity = errors.New("ledger integrity check failed")

// IntegrityError says why a ledger's stored tree cannot be signed.
type IntegrityError struct {
	LedgerID saasapi.ID
	Reason   string
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("ledger %s: integrity check failed: %s", e.LedgerID, e.Reason)
}

// Is makes errors.Is(err, ErrLedgerIntegrity) true.
func (e *IntegrityError) Is(target error) bool { return target == ErrLedgerIntegrity }

// Checkpoint is the body of a checkpoint note.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// Text is the note text of c: the three lines of a C2SP tlog-checkpoint.
func (c Checkpoint) Text() string {
	return c.Origin + "\n" + strconv.FormatInt(c.Size, 10) + "\n" + base64.StdEncoding.EncodeToString(c.Root[:]) + "\n"
}

// ParseCheckpoint reads a checkpoint note's text. Extension lines after the
// root are allowed, as C2SP allows them, and ignored.
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) < 4 {
		return Checkpoint{}, errors.New("checkpoint has fewer than three lines")
	}
	origin := strings.TrimSuffix(lines[0], "\n")
	sizeText := strings.TrimSuffix(lines[1], "\n")
	rootText := strings.TrimSuffix(lines[2], "\n")
	size, err := strconv.ParseInt(sizeText, 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != sizeText {
		return Checkpoint{}, fmt.Errorf("checkpoint size %q is not a decimal number", sizeText)
	}
	root, err := base64.StdEncoding.Strict().DecodeString(rootText)
	if err != nil || len(root) != HashSize {
		return Checkpoint{}, fmt.Errorf("checkpoint root %q is not a base64 SHA-256 hash", rootText)
	}
	if origin == "" {
		return Checkpoint{}, errors.New("checkpoint has an empty origin")
	}
	c := Checkpoint{Origin: origin, Size: size}
	copy(c.Root[:], root)
	return c, nil
}

// OpenCheckpoint checks a signed checkpoint note against the verifier key
// and returns its body. A note not signed by that key, or signed over other
// text, is an error.
func OpenCheckpoint(msg []byte, verifierKey string) (Checkpoint, error) {
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("verifier key: %w", err)
	}
	return openCheckpoint(msg, v)
}

func openCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	return ParseCheckpoint(n.Text)
}

// LedgerSigner signs the checkpoints of every ledger with one note key.
type LedgerSigner struct {
	origin      string
	signer      note.Signer
	verifier    note.Verifier
	verifierKey string

	// OnOtherKey, if set, is called when a ledger's last signed checkpoint
	// carries no signature of this signer's key (its name or key hash
	// differs): after a key rotation, or a row an attacker signed with a key
	// of their own. Such a checkpoint cannot be checked, so it is treated
	// as absent, as a deleted row would be; serve logs a warning.
	OnOtherKey func(ledgerID saasapi.ID)
}

// GenerateSigningKey returns a new Ed25519 note signer key named name, for
// SAAS_API_LEDGER_SIGNING_KEY.
func GenerateSigningKey(name string) (string, error) {
	skey, _, err := note.GenerateKey(rand.Reader, name)
	return skey, err
}

// CheckOrigin reports whether origin can prefix checkpoint origins: one line
// of printable text without spaces or "+" (it also names generated keys).
func CheckOrigin(origin string) error {
	if origin == "" {
		return errors.New("is empty")
	}
	if strings.ContainsFunc(origin, badOriginRune) {
		return fmt.Errorf("%q holds a space, a control character, a '+' or invalid UTF-8", origin)
	}
	return nil
}

// badOriginRune reports whether r may not appear in an origin (nor, since
// the origin names generated keys, in a note key name).
func badOriginRune(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || r == '+' || r == utf8.RuneError
}

// DefaultOrigin derives the origin prefix from the application's name:
// lower case, with every character CheckOrigin refuses turned into "-".
func DefaultOrigin(appName string) string {
	out := strings.Map(func(r rune) rune {
		if badOriginRune(r) {
			return '-'
		}
		return unicode.ToLower(r)
	}, appName)
	if out == "" {
		return "saasapi"
	}
	return out
}

// NewLedgerSigner parses a note signer key and derives its verifier key.
// origin prefixes every ledger's origin: origin/orgs/<id>, origin/users/<id>.
func NewLedgerSigner(signerKey, origin string) (*LedgerSigner, error) {
	if err := CheckOrigin(origin); err != nil {
		return nil, fmt.Errorf("ledger origin %w", err)
	}
	s, err := note.NewSigner(signerKey)
	if err != nil {
		return nil, fmt.Errorf("not a note signer key: %w", err)
	}
	// NewSigner checked the key's form and its hash; the public key is
	// derived from the seed it holds.
	_, rest, _ := strings.Cut(strings.TrimPrefix(signerKey, "PRIVATE+KEY+"), "+")
	_, b64, _ := strings.Cut(rest, "+")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		return nil, errors.New("not an Ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return &LedgerSigner{origin: origin, signer: s, verifier: v, verifierKey: vkey}, nil
}

// VerifierKey is the note verifier key that checks this signer's
// checkpoints.
func (s *LedgerSigner) VerifierKey() string { return s.verifierKey }

// Origin is the checkpoint origin of a ledger.
func (s *LedgerSigner) Origin(ledgerType string, ledgerID saasapi.ID) string {
	if ledgerType == saasapi.LedgerUser {
		return s.origin + "/users/" + string(ledgerID)
	}
	return s.origin + "/orgs/" + string(ledgerID)
}

// Sign returns the signed note of c.
func (s *LedgerSigner) Sign(c Checkpoint) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.Text()}, s.signer)
}

// SignCheckpoint returns a signed checkpoint of the ledger's current tree.
//
// First it checks the last checkpoint it signed for the ledger: its
// signature with this signer's key, and that the current tree extends it (a
// consistency proof from the stored tree hashes, checked against the stored
// tree's root). A database rewritten behind the service's back fails this,
// with an *IntegrityError (errors.Is ErrLedgerIntegrity), and nothing is
// signed. When the tree has not grown, the last checkpoint is returned as it
// is; otherwise the new one is signed and kept as the ledger's last.
func (s *LedgerSigner) SignCheckpoint(ctx context.Context, q Querier, ledgerID saasapi.ID) ([]byte, error) {
	var (
		cp      Checkpoint
		last    []byte
		lastCp  Checkpoint
		hasLast bool
	)
	err := snapshot(ctx, q, func(q Querier) error {
		head, err := ReadHead(ctx, q, ledgerID)
		if err != nil {
			return err
		}
		root, err := head.Tree.Root()
		if err != nil {
			return &IntegrityError{LedgerID: ledgerID, Reason: "the ledger row's tree is malformed: " + err.Error()}
		}
		cp = Checkpoint{Origin: s.Origin(head.LedgerType, ledgerID), Size: head.Tree.Size, Root: root}
		var text string
		err = q.QueryRow(ctx, `SELECT note FROM ledger_checkpoints WHERE ledger_id = $1`, ledgerID).Scan(&text)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read last checkpoint of ledger %s: %w", ledgerID, err)
		}
		last, hasLast = []byte(text), true
		lastCp, err = s.checkExtends(ctx, q, ledgerID, cp, last)
		var other *note.UnverifiedNoteError
		if errors.As(err, &other) {
			hasLast = false
			if s.OnOtherKey != nil {
				s.OnOtherKey(ledgerID)
			}
			return nil
		}
		if errors.Is(err, ErrLedgerIntegrity) {
			resealed, rerr := s.resealedAway(ctx, q, ledgerID, last)
			if rerr != nil || resealed {
				hasLast = false
				return rerr
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if hasLast && lastCp.Size == cp.Size {
		return last, nil
	}
	signed, err := s.Sign(cp)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint of ledger %s: %w", ledgerID, err)
	}
	// A concurrent request may have signed a larger tree meanwhile: the
	// larger one stays the last. A last checkpoint of another key is
	// replaced whatever its size.
	if _, err := q.Exec(ctx, `INSERT INTO ledger_checkpoints (ledger_id, tree_size, root_hash, note, signed_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (ledger_id) DO UPDATE SET tree_size = excluded.tree_size, root_hash = excluded.root_hash,
			note = excluded.note, signed_at = excluded.signed_at
		WHERE ledger_checkpoints.tree_size < excluded.tree_size OR $6`,
		ledgerID, cp.Size, cp.Root[:], string(signed), time.Now(), last != nil && !hasLast); err != nil {
		return nil, fmt.Errorf("keep checkpoint of ledger %s: %w", ledgerID, err)
	}
	return signed, nil
}

// AuditCheckpoint is SignCheckpoint for the authorized organisation's
// ledger.
func (s *LedgerSigner) AuditCheckpoint(ctx context.Context, q Querier, a saasapi.Access) ([]byte, error) {
	ledgerID, err := scopeOf(a)
	if err != nil {
		return nil, err
	}
	return s.SignCheckpoint(ctx, q, ledgerID)
}

// checkExtends checks that the tree cur extends the signed checkpoint last.
func (s *LedgerSigner) checkExtends(ctx context.Context, q Querier, ledgerID saasapi.ID, cur Checkpoint, last []byte) (Checkpoint, error) {
	fail := func(format string, args ...any) (Checkpoint, error) {
		return Checkpoint{}, &IntegrityError{LedgerID: ledgerID, Reason: fmt.Sprintf(format, args...)}
	}
	prev, err := openCheckpoint(last, s.verifier)
	var other *note.UnverifiedNoteError
	if errors.As(err, &other) {
		return Checkpoint{}, err
	}
	if err != nil {
		return fail("the last signed checkpoint does not verify with the signing key: %v", err)
	}
	if prev.Origin != cur.Origin {
		return fail("the last signed checkpoint is for %q, not %q", prev.Origin, cur.Origin)
	}
	if cur.Size < prev.Size {
		return fail("the tree has %d leaves, fewer than the %d of the last signed checkpoint", cur.Size, prev.Size)
	}
	if cur.Size == prev.Size {
		if cur.Root != prev.Root {
			return fail("the root of the tree of size %d differs from the last signed checkpoint's", cur.Size)
		}
		return prev, nil
	}
	if prev.Size == 0 {
		return prev, nil
	}
	p, err := tlog.ProveTree(cur.Size, prev.Size, storedHashReader(ctx, q, ledgerID))
	if err != nil {
		return fail("no consistency proof from size %d to %d: %v", prev.Size, cur.Size, err)
	}
	if err := tlog.CheckTree(p, cur.Size, cur.Root, prev.Size, prev.Root); err != nil {
		return fail("the tree of size %d is not consistent with the last signed checkpoint of size %d", cur.Size, prev.Size)
	}
	return prev, nil
}

// resealedAway reports whether the signed checkpoint last is of a tree that
// a recorded reseal replaced (reseal.go): its size and root are the old ones
// of a ledger_reseals row. The reseal drops such a checkpoint, but a signing
// that read the tree just before the reseal committed may store it again;
// it is then treated as absent. Only the schema owner writes ledger_reseals,
// so the application's credentials cannot forge such an excuse.
func (s *LedgerSigner) resealedAway(ctx context.Context, q Querier, ledgerID saasapi.ID, last []byte) (bool, error) {
	prev, err := openCheckpoint(last, s.verifier)
	if err != nil {
		return false, nil //nolint:nilerr // not ours to excuse: the integrity error stands
	}
	var found bool
	err = q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ledger_reseals
		WHERE ledger_id = $1 AND tree_size = $2 AND old_root_hash = $3)`, ledgerID, prev.Size, prev.Root[:]).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("read the reseals of ledger %s: %w", ledgerID, err)
	}
	return found, nil
}
