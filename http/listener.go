package http

import (
	"bytes"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"

	"github.com/saasapi/saasapi"
)

// Listener wraps l so that the few answers net/http writes by itself,
// before any handler runs, are problem details like every other error.
// net/http refuses a request it cannot parse (a target such as
// /orgs/%zz, a header with a control character, oversized headers) with a
// plain-text reply and closes the connection; nothing in http.Server lets a
// handler answer instead. Serve the API on this listener, wrapped around
// the plain TCP listener (TLS, if any, is terminated in front of the
// service: net/http must see a *tls.Conn itself to speak TLS).
func Listener(l net.Listener) net.Listener { return &problemListener{Listener: l} }

type problemListener struct{ net.Listener }

func (l *problemListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &problemConn{Conn: c, fresh: true}, nil
}

// serverReply matches the whole of such a reply: net/http writes it in one
// Write, straight to the connection, and in no other response can
// Content-Type follow the status line directly (handlers' headers, such as
// Cache-Control, come first) or be followed by Connection.
var serverReply = regexp.MustCompile(`^HTTP/1\.1 ([45][0-9]{2}) [^\r\n]*\r\n` +
	`Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n[^\r\n]*$`)

// problemConn remembers the start of the first read after each response,
// where the request line of the next request is.
type problemConn struct {
	net.Conn
	mu    sync.Mutex
	fresh bool
	head  [512]byte
	n     int
}

func (c *problemConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	if c.fresh && n > 0 {
		c.n, c.fresh = copy(c.head[:], b[:n]), false
	}
	c.mu.Unlock()
	return n, err
}

func (c *problemConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.fresh = true
	var m [][]byte
	if len(b) <= 256 && bytes.HasPrefix(b, []byte("HTTP/1.1 ")) {
		m = serverReply.FindSubmatch(b)
	}
	if m == nil {
		c.mu.Unlock()
		return c.Conn.Write(b)
	}
	status, _ := strconv.Atoi(string(m[1]))
	reply := problemReply(status, c.head[:c.n])
	c.mu.Unlock()
	if _, err := c.Conn.Write(reply); err != nil {
		return 0, err
	}
	return len(b), nil
}

// CloseWrite lets net/http half-close the connection after such a reply,
// as it does on a bare TCP connection.
func (c *problemConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// problemReply is the problem details answer for a request net/http refused
// with status, whose first bytes were head. A target that is not a URI
// cannot match any route: 404, as for any unknown path. Anything else
// keeps net/http's status.
func problemReply(status int, head []byte) []byte {
	detail := "request could not be parsed"
	if status == http.StatusBadRequest && !targetParses(head) {
		status, detail = http.StatusNotFound, "not found"
	}
	if status == http.StatusRequestHeaderFieldsTooLarge {
		detail = "request headers are too large"
	}
	requestID := saasapi.NewID().String()
	body, _ := marshalBody(problem{Type: "about:blank", Title: http.StatusText(status), Status: status,
		Detail: detail, RequestID: requestID})
	var p problemBuffer
	p.line("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status))
	p.line("Cache-Control: no-store")
	p.line("Connection: close")
	p.line("Content-Length: " + strconv.Itoa(len(body)))
	p.line("Content-Type: application/problem+json")
	p.line("X-Content-Type-Options: nosniff")
	p.line("X-Request-ID: " + requestID)
	p.line("")
	p.Write(body)
	return p.Bytes()
}

type problemBuffer struct{ bytes.Buffer }

func (p *problemBuffer) line(s string) { p.WriteString(s + "\r\n") }

// targetParses reports whether the request line at the start of head has a
// target net/http can parse; false only when it surely has not.
func targetParses(head []byte) bool {
	line, _, ok := bytes.Cut(head, []byte("\n"))
	if !ok {
		return true // the line is longer than what was kept: unknown
	}
	fields := bytes.Split(bytes.TrimSuffix(line, []byte("\r")), []byte(" "))
	if len(fields) != 3 || !bytes.HasPrefix(fields[2], []byte("HTTP/")) {
		return true
	}
	_, err := url.ParseRequestURI(string(fields[1]))
	return err == nil
}
