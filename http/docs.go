package http

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"gopkg.in/yaml.v3"
)

// The API's OpenAPI document, and the Swagger UI and ReDoc pages that render
// it. Everything is embedded, so the pages work without internet access
// (docs/README.md says where the assets come from).
var (
	//go:embed openapi.yaml
	openAPIYAML []byte

	//go:embed docs/swagger.html docs/redoc.html docs/assets
	docsFiles embed.FS
)

// docsCSP lets the documentation pages load from this service only (it
// also blocks the logo ReDoc would fetch from its CDN; the page hides it).
// The bundles set inline styles, and ReDoc starts its search worker from a
// blob. Both pages were checked in headless Chromium under this policy
// without a violation other than that logo.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; " +
	"child-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// OpenAPI returns the API's OpenAPI 3.1 document as JSON, as
// /openapi.json serves it (with info.version as written in the source).
func OpenAPI() ([]byte, error) { return openAPIJSON("") }

// openAPIJSON converts the embedded YAML document to JSON, keeping the order
// of its keys; a non-empty version replaces info.version.
func openAPIJSON(version string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(openAPIYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	if version != "" {
		if v := mappingValue(mappingValue(doc.Content[0], "info"), "version"); v != nil {
			v.Kind, v.Tag, v.Style, v.Value = yaml.ScalarNode, "!!str", 0, version
		}
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return buf.Bytes(), nil
}

// mappingValue returns the value of key in the mapping node m, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// writeJSON writes the YAML node n as JSON. Unlike decoding into a map, it
// keeps the document's key order, so the rendered docs follow the source.
func writeJSON(buf *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return errors.New("want exactly one YAML document")
		}
		return writeJSON(buf, n.Content[0])
	case yaml.AliasNode:
		return writeJSON(buf, n.Alias)
	case yaml.MappingNode:
		buf.WriteByte('{')
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
				return fmt.Errorf("line %d: keys must be plain scalars", k.Line)
			}
			if seen[k.Value] {
				return fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			seen[k.Value] = true
			if i > 0 {
				buf.WriteByte(',')
			}
			key, _ := json.Marshal(k.Value)
			buf.Write(key)
			buf.WriteByte(':')
			if err := writeJSON(buf, n.Content[i+1]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, item := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, item); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	case yaml.ScalarNode:
		var v any
		switch n.ShortTag() {
		case "!!str", "!!timestamp":
			v = n.Value
		case "!!null":
			buf.WriteString("null")
			return nil
		case "!!bool", "!!int", "!!float":
			if err := n.Decode(&v); err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
		default:
			return fmt.Errorf("line %d: unsupported YAML tag %s", n.Line, n.ShortTag())
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		buf.Write(b)
		return nil
	}
	return fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

// staticFile is a file served by the docs routes, with a strong ETag of
// its content so that browsers revalidate instead of downloading it again.
type staticFile struct {
	name        string
	contentType string
	body        []byte
	etag        string
}

func newStaticFile(name, contentType string, body []byte) staticFile {
	sum := sha256.Sum256(body)
	return staticFile{name: name, contentType: contentType, body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// serve answers GET (and conditional GET) of the file. Unlike the API's
// responses these may be cached, but must be revalidated.
func (f staticFile) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache")
	if strings.HasPrefix(f.contentType, "text/html") {
		h.Set("Content-Security-Policy", docsCSP)
	}
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}

// assetTypes are the media types of the files under docs/assets.
var assetTypes = map[string]string{
	".js":      "text/javascript; charset=utf-8",
	".css":     "text/css; charset=utf-8",
	".txt":     "text/plain; charset=utf-8",
	".LICENSE": "text/plain; charset=utf-8",
	".NOTICE":  "text/plain; charset=utf-8",
}

// docsSite is everything the docs routes serve, read and converted once
// when the server is built.
type docsSite struct {
	openAPI, swagger, redoc staticFile
	assets                  map[string]staticFile
}

func newDocsSite(version string) (*docsSite, error) {
	doc, err := openAPIJSON(version)
	if err != nil {
		return nil, err
	}
	site := &docsSite{openAPI: newStaticFile("openapi.json", "application/json", doc), assets: map[string]staticFile{}}
	page := func(name string) (staticFile, error) {
		b, err := docsFiles.ReadFile("docs/" + name)
		return newStaticFile(name, "text/html; charset=utf-8", b), err
	}
	if site.swagger, err = page("swagger.html"); err != nil {
		return nil, err
	}
	if site.redoc, err = page("redoc.html"); err != nil {
		return nil, err
	}
	entries, err := fs.ReadDir(docsFiles, "docs/assets")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		ct, ok := assetTypes[path.Ext(e.Name())]
		if !ok || e.IsDir() {
			return nil, fmt.Errorf("docs/assets/%s: no media type for this file", e.Name())
		}
		b, err := docsFiles.ReadFile("docs/assets/" + e.Name())
		if err != nil {
			return nil, err
		}
		site.assets[e.Name()] = newStaticFile(e.Name(), ct, b)
	}
	return site, nil
}

// docsRoutes serves /openapi.json, /docs (Swagger UI), /redoc (ReDoc) and
// their assets under /docs/assets/.
func (s *Server) docsRoutes(r chi.Router) {
	site, err := newDocsSite(s.deps.Info.Version)
	if err != nil {
		// The embedded files are checked by the tests; should they still be
		// broken, the API itself must keep working.
		s.deps.Logger.Error("API documentation unavailable", slog.String("error", err.Error()))
		broken := func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, r, http.StatusInternalServerError, "internal server error", nil)
		}
		r.Get("/openapi.json", broken)
		r.Get("/docs", broken)
		r.Get("/redoc", broken)
		r.Get("/docs/assets/*", broken)
		return
	}
	r.Get("/openapi.json", site.openAPI.serve)
	r.Get("/docs", site.swagger.serve)
	r.Get("/redoc", site.redoc.serve)
	r.Get("/docs/assets/*", func(w http.ResponseWriter, r *http.Request) {
		f, ok := site.assets[chi.URLParam(r, "*")]
		if !ok {
			writeProblem(w, r, http.StatusNotFound, "not found", nil)
			return
		}
		f.serve(w, r)
	})
}
