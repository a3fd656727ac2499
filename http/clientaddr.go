package http

import (
	"net/netip"
	"strings"
)

// clientAddress returns the address of the client that sent r: the peer,
// unless the peer is one of the trusted proxies, in which case the
// right-most address of X-Forwarded-For that is not a trusted proxy (every
// proxy appends the address it received the request from, so entries left
// of the first untrusted one may be made up by the client). A missing or
// malformed header leaves the peer.
func clientAddress(remoteAddr string, forwardedFor []string, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap()
	if !isTrusted(addr, trusted) {
		return addr
	}
	hops := strings.Split(strings.Join(forwardedFor, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr
		}
		addr = hop.Unmap()
		if !isTrusted(addr, trusted) {
			return addr
		}
	}
	return addr
}

func isTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// addressKey is the throttling key of a client address. An IPv6 client
// usually holds a whole /64, so its addresses share one key; an unknown
// address (no peer, as in some test transports) has a key of its own.
func addressKey(addr netip.Addr) string {
	switch {
	case !addr.IsValid():
		return "unknown"
	case addr.Is6():
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}
