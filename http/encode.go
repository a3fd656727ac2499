package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/saasapi/saasapi"
)

// maxBodyBytes is the largest request body accepted (413 beyond).
const maxBodyBytes = 1 << 20

// encode writes v as JSON with the given status.
func encode(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	encodeWithType(w, status, v)
}

// encodeBuffers are the buffers responses are encoded into: a response is
// one Write of a known length (Content-Length, not chunked), and its
// buffer serves the next.
var encodeBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer is the largest buffer kept for reuse; a larger one (an
// export page) goes to the garbage collector.
const maxPooledBuffer = 64 << 10

// encodeWithType writes v as json.Marshal does, followed by a newline.
func encodeWithType(w http.ResponseWriter, status int, v any) {
	buf := encodeBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledBuffer {
			buf.Reset()
			encodeBuffers.Put(buf)
		}
	}()
	buf.Reset()
	// Encode writes what Marshal returns (HTML escaped the same way) and
	// the newline.
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		buf.Reset()
		buf.WriteString(`{"detail":"internal server error"}` + "\n")
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// decodeError is a body that could not be decoded; it carries the status
// to answer with (413, 415 or 422).
type decodeError struct {
	status int
	detail string
	fields []saasapi.FieldError
}

func (e *decodeError) Error() string { return e.detail }

func invalidBody(field, message string) *decodeError {
	return &decodeError{status: http.StatusUnprocessableEntity, detail: saasapi.MsgValidation,
		fields: []saasapi.FieldError{{Field: field, Message: message}}}
}

// decode reads a JSON object into dst (a pointer to a struct) strictly:
// Go matches object keys to fields case-insensitively, which would let
// {"ROLE": ...} through, so every key must equal a field's JSON name
// exactly, appear once, and required keys must be present; and every
// string in a value must be text (jsonText).
func decode(r *http.Request, dst any, required ...string) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, &decodeError{status: http.StatusUnsupportedMediaType, detail: "request body must be application/json"}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &decodeError{status: http.StatusRequestEntityTooLarge, detail: "request body is too large"}
		}
		return nil, invalidBody("body", "request body could not be read")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return nil, invalidBody("body", "request body must be a JSON object")
	}
	if err := checkKeys(body, reflect.TypeOf(dst).Elem(), required); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, invalidBody(typeErr.Field, "value has the wrong type")
		}
		return nil, invalidBody("body", "request body is not valid JSON")
	}
	return body, nil
}

var fieldNames sync.Map // reflect.Type -> map[string]bool

// jsonFields maps the JSON names of t's fields to whether the field
// accepts null. A pointer field tagged `null:"no"` may be omitted (nil) but
// not sent as null: it has a default, not an "unset" value.
func jsonFields(t reflect.Type) map[string]bool {
	if v, ok := fieldNames.Load(t); ok {
		return v.(map[string]bool)
	}
	names := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names[name] = f.Tag.Get("null") != "no"
	}
	fieldNames.Store(t, names)
	return names
}

// checkKeys walks the top-level keys of the object in body.
func checkKeys(body []byte, t reflect.Type, required []string) error {
	known := jsonFields(t)
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // {
		return invalidBody("body", "request body must be a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalidBody("body", "request body is not valid JSON")
		}
		key, _ := tok.(string)
		nullable, ok := known[key]
		if !ok {
			return invalidBody(fieldName(key), "unknown field")
		}
		if seen[key] {
			return invalidBody(key, "duplicate field")
		}
		seen[key] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return invalidBody(key, "value is not valid JSON")
		}
		if !jsonText(value) {
			return invalidBody(key, textMessage)
		}
		if !nullable && string(value) == "null" {
			return invalidBody(key, key+" must not be null")
		}
	}
	for _, k := range required {
		if !seen[k] {
			return invalidBody(k, "field required")
		}
	}
	return nil
}

// decodeOrFail decodes and answers the error itself; it reports success.
func (s *Server) decodeOrFail(w http.ResponseWriter, r *http.Request, dst any, required ...string) bool {
	_, ok := s.decodeBody(w, r, dst, required...)
	return ok
}

// decodeBody is decodeOrFail that also returns the raw body, for handlers
// that fingerprint it (idempotency).
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, dst any, required ...string) ([]byte, bool) {
	body, err := decode(r, dst, required...)
	if err == nil {
		return body, true
	}
	var de *decodeError
	if errors.As(err, &de) {
		writeProblem(w, r, de.status, de.detail, de.fields)
		return nil, false
	}
	s.writeError(w, r, err)
	return nil, false
}

// Nullable is a JSON field that may be absent, null, or a value; it lets a
// PATCH tell "leave unchanged" from "clear".
type Nullable[T any] struct {
	Set   bool
	Null  bool
	Value T
}

// UnmarshalJSON records presence, null, and the value.
func (n *Nullable[T]) UnmarshalJSON(b []byte) error {
	n.Set = true
	if string(b) == "null" {
		n.Null = true
		return nil
	}
	return json.Unmarshal(b, &n.Value)
}
