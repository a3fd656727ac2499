package http

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/projections"
	"golang.org/x/mod/sumdb/tlog"
)

// The verifiable ledger (contract B.6, docs/audit.md): the verifier key,
// signed checkpoints of a ledger's Merkle tree, and inclusion and
// consistency proofs against them.

// msgLedgerIntegrity is the detail of the 500 answered when a ledger's
// stored tree does not extend the last checkpoint the service signed.
const msgLedgerIntegrity = "ledger integrity check failed"

func (s *Server) handleVerifierKey() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeText(w, []byte(s.deps.Ledger.VerifierKey()+"\n"))
	}
}

// authorizeAudit authorizes the request for audit:read in the
// organisation of its path, answering a refusal itself.
func (s *Server) authorizeAudit(w http.ResponseWriter, r *http.Request) (saasapi.Access, bool) {
	return s.gated(w, r, saasapi.PermReadAudit, func(*pgx.Batch, *projections.Gate) error { return nil })
}

// writeText answers 200 with a text/plain body.
func writeText(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (s *Server) handleAuditCheckpoint() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.authorizeAudit(w, r)
		if !ok {
			return
		}
		signed, err := s.deps.Ledger.AuditCheckpoint(r.Context(), s.deps.Pool, a)
		s.replyCheckpoint(w, r, signed, err)
	}
}

func (s *Server) handleMyAuditCheckpoint() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		signed, err := s.deps.Ledger.SignCheckpoint(r.Context(), s.deps.Pool, principalOf(r).UserID)
		s.replyCheckpoint(w, r, signed, err)
	}
}

// replyCheckpoint answers a signed checkpoint, or the refusal to sign one:
// a ledger whose stored tree does not extend its last signed checkpoint was
// changed behind the service's back, which is logged as an error and
// counted, so that the service is the first to notice.
func (s *Server) replyCheckpoint(w http.ResponseWriter, r *http.Request, signed []byte, err error) {
	var ie *eventstore.IntegrityError
	switch {
	case errors.As(err, &ie):
		s.deps.Metrics.LedgerIntegrityFailure()
		s.deps.Logger.ErrorContext(r.Context(), "ledger integrity check failed",
			slog.String("request_id", requestIDOf(r.Context())), slog.String("ledger_id", string(ie.LedgerID)),
			slog.String("reason", ie.Reason))
		writeProblem(w, r, http.StatusInternalServerError, msgLedgerIntegrity, nil)
	case err != nil:
		s.writeError(w, r, err)
	default:
		writeText(w, signed)
	}
}

// treeSizeParam reads a required tree size or sequence: an integer >= 1.
// Whether it lies within the tree is for the store to say.
func treeSizeParam(r *http.Request, name string, fields *[]saasapi.FieldError) int64 {
	n, err := strconv.ParseInt(r.URL.Query().Get(name), 10, 64)
	if err != nil || n < 1 {
		*fields = append(*fields, saasapi.FieldError{Field: name, Message: name + " must be an integer of at least 1"})
	}
	return n
}

// proofParams reads two required sizes; a malformed one is 422.
func proofParams(r *http.Request, lo, hi string) (int64, int64, error) {
	var fields []saasapi.FieldError
	a, b := treeSizeParam(r, lo, &fields), treeSizeParam(r, hi, &fields)
	if len(fields) > 0 {
		return 0, 0, saasapi.Invalid(saasapi.MsgValidation, fields...)
	}
	return a, b, nil
}

// proofError turns sizes the tree cannot answer into a 422.
func proofError(err error) error {
	var te *eventstore.TreeSizeError
	if errors.As(err, &te) {
		return saasapi.Invalid(saasapi.MsgValidation, saasapi.FieldError{Field: te.Field, Message: te.Message})
	}
	return err
}

// proofHashes renders a proof's hashes in base64.
func proofHashes(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i := range hs {
		out[i] = base64.StdEncoding.EncodeToString(hs[i][:])
	}
	return out
}

func (s *Server) handleInclusionProof() http.HandlerFunc {
	type response struct {
		Sequence  int64    `json:"sequence"`
		LeafIndex int64    `json:"leaf_index"`
		TreeSize  int64    `json:"tree_size"`
		Hashes    []string `json:"hashes"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.authorizeAudit(w, r)
		if !ok {
			return
		}
		seq, size, err := proofParams(r, "sequence", "tree_size")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		p, err := eventstore.AuditInclusionProof(r.Context(), s.deps.Pool, a, seq, size)
		s.reply(w, r, proofError(err), http.StatusOK, 0,
			response{Sequence: seq, LeafIndex: seq - 1, TreeSize: size, Hashes: proofHashes(p)})
	}
}

func (s *Server) handleConsistencyProof() http.HandlerFunc {
	type response struct {
		From   int64    `json:"from"`
		To     int64    `json:"to"`
		Hashes []string `json:"hashes"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.authorizeAudit(w, r)
		if !ok {
			return
		}
		from, to, err := proofParams(r, "from", "to")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		p, err := eventstore.AuditConsistencyProof(r.Context(), s.deps.Pool, a, from, to)
		s.reply(w, r, proofError(err), http.StatusOK, 0, response{From: from, To: to, Hashes: proofHashes(p)})
	}
}

// ephemeralLedgerSigner returns a signer with a key of its own, named after
// the application, for servers built without one.
func ephemeralLedgerSigner(appName string) *eventstore.LedgerSigner {
	origin := eventstore.DefaultOrigin(appName)
	key, err := eventstore.GenerateSigningKey(origin)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	s, err := eventstore.NewLedgerSigner(key, origin)
	if err != nil {
		panic(err)
	}
	return s
}
