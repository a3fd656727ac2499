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
	"sync/atomic"
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
func runServe(ctx context.Context, env environment, stdout io.Writer) error {
	cfg, err := loadConfig(env.get, ":8000")
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
	warnUnknownSettings(env, logWarner(logger))
	return serve(ctx, cfg, cfg.DatabaseURL, logger, nil)
}

// runDev starts the private cluster, migrates it and serves, with the API
// documentation on unless SAAS_API_DOCS_ENABLED says otherwise.
func runDev(ctx context.Context, env environment, stdout, _ io.Writer) (err error) {
	cfg, err := loadConfig(env.get, "127.0.0.1:8000")
	if err != nil {
		return err
	}
	if env.get(envPrefix+"DOCS_ENABLED") == "" {
		cfg.DocsEnabled = true // dev is for exploring; serve keeps the default, off
	}
	logger, err := observability.NewLogger(stdout, cfg.LogLevel)
	if err != nil {
		return err
	}
	warnUnknownSettings(env, logWarner(logger))
	dir, err := filepath.Abs(cfg.DevDir)
	if err != nil {
		return err
	}
	// Fail before anything starts when the port is taken, rather than
	// after a cluster was initialised for nothing; when another dev has the
	// data directory, which is the likelier story, say that instead.
	if err := checkListen(cfg.HTTPAddr); err != nil {
		if inUse := devDirInUse(pgcluster.InUse(dir), dir); inUse != nil {
			return inUse
		}
		return err
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{
		Dir: dir, Relocate: true, Exclusive: true,
		Logf: func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) },
	})
	if inUse := devDirInUse(err, dir); inUse != nil {
		return inUse
	}
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
		if cluster.Reused() {
			logger.Info("local PostgreSQL left running (it was running before dev started)", slog.String("dir", cluster.Dir()))
			return
		}
		logger.Info("local PostgreSQL stopped", slog.String("dir", cluster.Dir()))
	}()
	url := cluster.URL(pgcluster.AppDatabase)
	attrs := []any{slog.String("dir", cluster.Dir())}
	if from := cluster.Relocated(); from != "" {
		attrs = append(attrs, slog.String("relocated_from", from))
	}
	logger.Info("local PostgreSQL running in "+cluster.Dir(), attrs...)
	if cfg.LedgerSigningKey == "" {
		if cfg.LedgerSigningKey, err = devSigningKey(cluster.Dir(), cfg.ledgerOrigin()); err != nil {
			return err
		}
		logger.Info("ledger checkpoints signed with the dev key", slog.String("file", filepath.Join(cluster.Dir(), devKeyFile)))
	}
	if cfg.DataKey == "" {
		if cfg.DataKey, err = devDataKey(cluster.Dir()); err != nil {
			return err
		}
		logger.Info("personal data sealed under the dev data key", slog.String("file", filepath.Join(cluster.Dir(), devDataKeyFile)))
	}
	version, err := migrate(ctx, url)
	if err != nil {
		return err
	}
	logger.Info("schema migrated", slog.Int("version", int(version)))
	return serve(ctx, cfg, url, logger, nil, func(addr string) { announce(logger, addr, cfg.DocsEnabled, url) })
}

// devDirInUse rewords a *pgcluster.InUseError for the data directory dir
// as the person running dev sees it; any other error gives nil.
func devDirInUse(err error, dir string) error {
	var inUse *pgcluster.InUseError
	if !errors.As(err, &inUse) {
		return nil
	}
	where := dir
	if inUse.Dir != dir {
		where += " (its cluster is in " + inUse.Dir + ")"
	}
	return fmt.Errorf("the data directory %s is in use by %s: stop that first, "+
		"or set SAAS_API_DEV_DIR to another directory", where, inUse.Holder())
}

// announce logs, once, the URLs a person opens: the API, its docs and
// metrics, and the database.
func announce(logger *slog.Logger, addr string, docs bool, databaseURL string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	base := "http://" + net.JoinHostPort(host, port)
	attrs := []any{slog.String("api", base)}
	msg := "open " + base
	if docs {
		attrs = append(attrs, slog.String("docs", base+"/docs"), slog.String("redoc", base+"/redoc"),
			slog.String("openapi", base+"/openapi.json"))
		msg += " (docs: " + base + "/docs)"
	}
	attrs = append(attrs, slog.String("metrics", base+"/metrics"), slog.String("database_url", databaseURL))
	logger.Info(msg+", metrics: "+base+"/metrics, database: "+databaseURL, attrs...)
}

func checkListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln.Close()
}

// runMigrate applies the migrations to SAAS_API_DATABASE_URL.
func runMigrate(ctx context.Context, env environment, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(env.get, ":8000")
	if err != nil {
		return err
	}
	warnUnknownSettings(env, stderrWarner(stderr))
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
// closes. ready, if not nil, receives the bound address (tests use port 0);
// so do the listening functions (dev's announce).
func serve(ctx context.Context, cfg Config, databaseURL string, logger *slog.Logger, ready chan<- string, listening ...func(addr string)) error {
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
	keys, err := dataKeyring(cfg, logger)
	if err != nil {
		return err
	}
	proxies, err := parseProxies(cfg.TrustedProxies)
	if err != nil {
		return err
	}
	pool, err := dbpool.Open(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()

	metrics := observability.NewMetrics()
	metrics.RegisterPool(poolStats(pool))
	// A wrong data key stops the start-up; a database not migrated yet is
	// checked again by readiness, which stays false until the key matches.
	if err := commands.CheckDataKey(ctx, pool, keys); errors.Is(err, saasapi.ErrWrongDataKey) {
		return err
	}
	tokens := auth.NewTokenIssuer([]byte(cfg.JWTSecret), cfg.JWTIssuer, cfg.AccessTokenTTL)
	svc := commands.New(pool, commands.Config{
		Keys:               keys,
		Hasher:             auth.NewHasher(auth.DefaultParams, 0),
		Tokens:             tokens,
		PasswordMinLength:  cfg.PasswordMinLength,
		OnCommit:           metrics.CountEvents,
		LoginFailureWindow: cfg.LoginFailureWindow,
		WriteGroups:        cfg.WriteGroups,
		OnBackgroundError: func(err error) {
			logger.Error("background write failed", slog.String("error", err.Error()))
		},
	})
	// Failed sign-ins still being coalesced are recorded, and background
	// writes finish, before the pool closes.
	defer svc.Close()
	handler := apihttp.NewServer(apihttp.Deps{
		Info:        apihttp.Info{AppName: cfg.AppName, Version: cfg.AppVersion, Environment: cfg.Environment},
		Commands:    svc,
		Pool:        pool,
		Tokens:      tokens,
		Metrics:     metrics,
		Logger:      logger,
		DocsEnabled: cfg.DocsEnabled,
		Ledger:      ledger,
		Ready:       readiness(pool, keys),
		Throttle: &apihttp.Throttle{
			LoginAccountFailures: cfg.LoginAccountRate,
			LoginAddress:         cfg.LoginAddressRate,
			RegisterAddress:      cfg.RegisterAddressRate,
		},
		TrustedProxies: proxies,
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
	for _, f := range listening {
		f(ln.Addr().String())
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(apihttp.Listener(ln)) }()
	if cfg.PprofAddr != "" {
		pprofCtx, stopPprof := context.WithCancel(ctx)
		defer stopPprof()
		go func() {
			if err := servePprof(pprofCtx, cfg.PprofAddr, logger); err != nil {
				errc <- err
			}
		}()
	}
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
func readiness(pool *pgxpool.Pool, keys *saasapi.DataKeyring) func(context.Context) error {
	var keyChecked atomic.Bool
	return func(ctx context.Context) error {
		v, err := migrations.CurrentVersion(ctx, pool)
		if err != nil {
			return err
		}
		if v < migrations.Latest() {
			return fmt.Errorf("schema version %d is behind %d", v, migrations.Latest())
		}
		if !keyChecked.Load() {
			if err := commands.CheckDataKey(ctx, pool, keys); err != nil {
				return err
			}
			keyChecked.Store(true)
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
