package dbpool

import (
	"context"
	"testing"
)

// The pool connects lazily, so its size can be checked without a server.
func TestOpenSizesThePool(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, url string
		want      int32
	}{
		{"default for the machine", "postgres://app@127.0.0.1:1/saasapi", DefaultMaxConns()},
		{"the URL's pool_max_conns", "postgres://app@127.0.0.1:1/saasapi?sslmode=disable&pool_max_conns=3", 3},
		{"key=value pairs", "host=127.0.0.1 port=1 user=app pool_max_conns=5", 5},
		{"key=value pairs without it", "host=127.0.0.1 port=1 user=app", DefaultMaxConns()},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pool, err := Open(context.Background(), c.url)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			if got := pool.Config().MaxConns; got != c.want {
				t.Errorf("MaxConns of %q = %d, want %d", c.url, got, c.want)
			}
		})
	}
}
