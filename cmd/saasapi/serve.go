package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/auth"
	"github.com/saasapi/saasapi/commands"
	apihttp "github.com/saasapi/saasapi/http"
	"github.com/saasapi/saasapi/internal/dbpool"
	"github.com/saasapi/saasapi/internal/pgcluster"
	"github.com/saasapi/saasapi/migrations"
	"github.com/saasapi/saasapi/observability"
)

// shutdownTimeout bounds how long in-flight requests may take to finish
// once a stop was asked for.
const shutdownTimeout = 15 * time.Second

// runServe serves the API against SAAS_API_DATABASE_URL.
func runServe(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv, ":8000")
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return errors.New("SAAS_API_DATABASE_URL is required for serve (or use `saasapi dev` for a local database)")
	}
	logger, err := observability.NewLogger(stdout, cfg.LogLevel)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, cfg.DatabaseURL, logger, nil)
}

// runDev starts the private cluster, migrates it and serves.
func runDev(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	cfg, err := loadConfig(getenv, "127.0.0.1:8000")
	if err != nil {
		return err
	}
	logger, err := observability.NewLogger(stdout, cfg.LogLevel)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(cfg.DevDir)
	if err != nil {
		return err
	}
	// Fail before anything starts when the port is taken, rather than
	// after a cluster was initialised for nothing.
	if err := checkListen(cfg.HTTPAddr); err != nil {
		return err
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{Dir: dir, Logf: func(format string, args ...any) {
		logger.Info(fmt.Sprintf(format, args...))
	}})
	if err != nil {
		return fmt.Errorf("start local PostgreSQL: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if stopErr := cluster.Stop(stopCtx); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop local PostgreSQL: %w", stopErr))
			return
		}
		logger.Info("local PostgreSQL stopped", slog.String("dir", dir))
	}()
	url := cluster.URL(pgcluster.AppDatabase)
	logger.Info("local PostgreSQL running", slog.String("database_url", url), slog.String("dir", dir))
	if cfg.LedgerSigningKey == "" {
		if cfg.LedgerSigningKey, err = devSigningKey(dir, cfg.ledgerOrigin()); err != nil {
			return err
		}
		logger.Info("ledger checkpoints signed with the dev key", slog.String("file", filepath.Join(dir, devKeyFile)))
	}
	version, err := migrate(ctx, url)
	if err != nil {
		return err
	}
	logger.Info("schema migrated", slog.Int("version", int(version)))
	return serve(ctx, cfg, url, logger, nil)
}

func checkListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln.Close()
}

// runMigrate applies the migrations to SAAS_API_DATABASE_URL.
func runMigrate(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv, ":8000")
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return errors.New("SAAS_API_DATABASE_URL is required for migrate")
	}
	version, err := migrate(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "schema version %d (latest %d)\n", version, migrations.Latest())
	return nil
}

func migrate(ctx context.Context, url string) (int32, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("connect for migration: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	return migrations.Migrate(ctx, conn)
}

// serve runs the HTTP server until ctx is cancelled, then shuts down
// gracefully: the listener closes, in-flight requests finish, the pool
// closes. ready, if not nil, receives the bound address (tests use port 0).
func serve(ctx context.Context, cfg Config, databaseURL string, logger *slog.Logger, ready chan<- string) error {
	if err := cfg.checkSecret(); err != nil {
		return err
	}
	ledger, err := cfg.ledgerSigner(logger)
	if err != nil {
		return err
	}
	ledger.OnOtherKey = func(id saasapi.ID) {
		logger.Warn("the last checkpoint signed for a ledger carries no signature of the current key (a key rotation, "+
			"or a row written by someone else); it cannot be checked, and a new one is signed", slog.String("ledger_id", string(id)))
	}
	pool, err := dbpool.Open(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()

	metrics := observability.NewMetrics()
	metrics.RegisterPool(poolStats(pool))
	tokens := auth.NewTokenIssuer([]byte(cfg.JWTSecret), cfg.JWTIssuer, cfg.AccessTokenTTL)
	svc := commands.New(pool, commands.Config{
		Hasher:            auth.NewHasher(auth.DefaultParams, 0),
		Tokens:            tokens,
		PasswordMinLength: cfg.PasswordMinLength,
		OnCommit:          metrics.CountEvents,
		OnBackgroundError: func(err error) {
			logger.Error("background write failed", slog.String("error", err.Error()))
		},
	})
	// Background writes (failed sign-ins) finish before the pool closes.
	defer svc.Wait()
	handler := apihttp.NewServer(apihttp.Deps{
		Info:        apihttp.Info{AppName: cfg.AppName, Version: cfg.AppVersion, Environment: cfg.Environment},
		Commands:    svc,
		Pool:        pool,
		Tokens:      tokens,
		Metrics:     metrics,
		Logger:      logger,
		DocsEnabled: cfg.DocsEnabled,
		Ledger:      ledger,
		Ready:       readiness(pool),
	})
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	logger.Info("serving", slog.String("addr", ln.Addr().String()), slog.String("environment", cfg.Environment),
		slog.String("version", cfg.AppVersion))
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	// The pruner stops with the server, whichever way the server stops.
	pruneCtx, stopPruning := context.WithCancel(ctx)
	pruneDone := make(chan struct{})
	go func() {
		defer close(pruneDone)
		pruneIdempotency(pruneCtx, svc, logger, pruneInterval)
	}()
	defer func() {
		stopPruning()
		<-pruneDone
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	// The parent context is already cancelled; shutting down needs a
	// fresh one so that in-flight requests get their time.
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// pruneInterval is how often expired idempotency records are deleted.
const pruneInterval = 10 * time.Minute

// pruneIdempotency deletes expired idempotency records now and then every
// interval until ctx ends. Every replica does this; the deletes are
// idempotent and batched, so they do not get in each other's way.
func pruneIdempotency(ctx context.Context, svc *commands.Service, logger *slog.Logger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := svc.PruneIdempotency(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Warn("pruning idempotency records failed", slog.String("error", err.Error()))
		case n > 0:
			logger.Info("pruned expired idempotency records", slog.Int64("deleted", n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readiness reports ready when PostgreSQL answers as the application role
// and the schema is at least as new as this binary's migrations.
func readiness(pool *pgxpool.Pool) func(context.Context) error {
	return func(ctx context.Context) error {
		v, err := migrations.CurrentVersion(ctx, pool)
		if err != nil {
			return err
		}
		if v < migrations.Latest() {
			return fmt.Errorf("schema version %d is behind %d", v, migrations.Latest())
		}
		return nil
	}
}

func poolStats(pool *pgxpool.Pool) func() observability.PoolStat {
	return func() observability.PoolStat {
		s := pool.Stat()
		return observability.PoolStat{
			TotalConns: s.TotalConns(), IdleConns: s.IdleConns(), AcquiredConns: s.AcquiredConns(),
			MaxConns: s.MaxConns(), AcquireCount: s.AcquireCount(), EmptyAcquireCount: s.EmptyAcquireCount(),
			AcquireDuration: s.AcquireDuration(),
		}
	}
}
