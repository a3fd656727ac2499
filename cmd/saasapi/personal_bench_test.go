package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/eventstore"
	"github.com/saasapi/saasapi/internal/dbpool"
	"github.com/saasapi/saasapi/internal/testdb"
	"github.com/saasapi/saasapi/projections"
)

// BenchmarkPersonalDataRebuild measures what opening the sealed personal
// fields costs a rebuild of the read tables, on a database of 2,000 people
// registered through the write pipeline: "opened" replays as
// `saasapi projections rebuild` does (each batch's people's keys loaded
// and unwrapped, their fields opened); "as-stored" replays the same events
// without opening them (the sealed text lands in the users table: only the
// difference between the two is of interest). docs/performance.md has the
// figures.
func BenchmarkPersonalDataRebuild(b *testing.B) {
	ctx := context.Background()
	db, register := registrations(b)
	const people = 10_000
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for register() < people {
			}
		})
	}
	wg.Wait()
	asStored := projections.Source{
		Positions: func(ctx context.Context, tx pgx.Tx, after int64, limit int) ([]saasapi.Event, error) {
			return eventstore.ReadAll(ctx, tx, after, limit)
		},
		Streams: func(ctx context.Context, tx pgx.Tx, after saasapi.Event, limit int) ([]saasapi.Event, error) {
			return eventstore.ReadStreams(ctx, tx, after, limit)
		},
	}
	for _, c := range []struct {
		name string
		read projections.Source
	}{{"as-stored", asStored}, {"opened", commands.OpenedEvents(testKeyring(b))}} {
		b.Run(c.name, func(b *testing.B) {
			var (
				events int64
				err    error
			)
			for b.Loop() {
				if events, err = projections.Rebuild(ctx, db.Pool, c.read, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(events), "events")
		})
	}
}

// BenchmarkRegister is one registration through the write pipeline,
// sealing included (the password hash uses the tests' cheap Argon2
// parameters, so the figure is the pipeline's): the scale against which
// the sealing of BenchmarkPersonalData is measured.
func BenchmarkRegister(b *testing.B) {
	_, register := registrations(b)
	for b.Loop() {
		register()
	}
}

// registrations returns a fresh database and a function that registers
// the next person through the write pipeline and returns how many it has
// registered.
func registrations(b *testing.B) (*testdb.DB, func() int64) {
	ctx := context.Background()
	db := testdb.New(b)
	app, err := dbpool.Open(ctx, db.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(app.Close)
	keys := testKeyring(b)
	svc := commands.New(app, commands.Config{Keys: keys, Hasher: auth.NewHasher(auth.TestParams, 0)})
	b.Cleanup(svc.Close)
	var n atomic.Int64
	return db, func() int64 {
		i := n.Add(1)
		if _, err := svc.Register(ctx, commands.Meta{RequestID: "bench"}, commands.RegisterInput{
			Email: fmt.Sprintf("person%d@example.com", i), Password: "correct horse battery", DisplayName: fmt.Sprintf("Person %d", i),
		}); err != nil {
			b.Fatal(err)
		}
		return i
	}
}

// BenchmarkSealLegacy is `saasapi users seal-legacy` over 1,000 ledgers of
// people registered in plain text, as versions before sealing did, each
// with the registration only: per operation, the whole run (lock, verify,
// seal, rechain, retree and record each ledger in its own transaction).
func BenchmarkSealLegacy(b *testing.B) {
	db := testdb.New(b)
	keys := testKeyring(b)
	const ledgers = 1000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range ledgers {
			registerLegacy(b, db.Pool, fmt.Sprintf("legacy%d.%d@example.com", i, j), "Legacy Person")
		}
		b.StartTimer()
		var out strings.Builder
		if err := sealLegacy(context.Background(), db.Pool, keys, 0, &out, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), fmt.Sprintf("sealed %d ledgers", ledgers)) {
			b.Fatalf("seal-legacy: %s", out.String())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*ledgers), "µs/ledger")
}
