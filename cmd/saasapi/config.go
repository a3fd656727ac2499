package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/saasapi/saasapi/observability"
)

// envPrefix is the prefix of every configuration variable; the original
// service's deployments already set them under this name.
const envPrefix = "SAAS_API_"

// placeholderJWTSecret is the original service's default signing secret. It
// stays the default so that `saasapi dev` works with no configuration, and
// checkSecret refuses it anywhere that is not a developer's machine or a test.
const placeholderJWTSecret = "local-placeholder-jwt-secret-not-for-production"

// minJWTSecretBytes is the shortest secret accepted outside local and test:
// HS256 keys shorter than the hash output (RFC 7518, section 3.2) weaken it.
const minJWTSecretBytes = 32

// asyncpgScheme is the SQLAlchemy driver scheme of the original service's
// DATABASE_URL. Accepting it lets an existing environment file work unchanged.
const asyncpgScheme = "postgresql+asyncpg://"

// maxTTLSeconds keeps ACCESS_TOKEN_TTL_SECONDS within what a time.Duration
// holds, so that a huge value is an error rather than a negative TTL.
const maxTTLSeconds = math.MaxInt64 / int64(time.Second)

// Config is the service's configuration, read from SAAS_API_* environment
// variables by loadConfig.
type Config struct {
	AppName           string        // APP_NAME, shown by /healthz
	AppVersion        string        // APP_VERSION, shown by /healthz
	Environment       string        // ENVIRONMENT, shown by /healthz; local and test relax checkSecret
	LogLevel          string        // LOG_LEVEL, a name observability.ParseLevel accepts
	DocsEnabled       bool          // DOCS_ENABLED: serve /docs, /redoc and /openapi.json
	DatabaseURL       string        // DATABASE_URL, empty when unset (dev starts its own cluster)
	JWTSecret         string        // JWT_SECRET, the HS256 signing key
	JWTIssuer         string        // JWT_ISSUER, the iss claim issued and required
	AccessTokenTTL    time.Duration // ACCESS_TOKEN_TTL_SECONDS
	PasswordMinLength int           // PASSWORD_MIN_LENGTH, in characters
	HTTPAddr          string        // HTTP_ADDR, the listen address
	DevDir            string        // DEV_DIR, where dev keeps its PostgreSQL cluster
	LedgerOrigin      string        // LEDGER_ORIGIN, the checkpoints' origin prefix; empty: derived from AppName
	LedgerSigningKey  string        // LEDGER_SIGNING_KEY, the note signer key of the checkpoints (ledgerkey.go)
}

// loadConfig reads the configuration through getenv (os.Getenv in main, a
// map in tests) and validates it. defaultAddr is the listen address when
// SAAS_API_HTTP_ADDR is unset: dev listens on loopback only, serve on every
// interface. An empty variable counts as unset, as os.Getenv cannot tell them
// apart. Every invalid variable is reported, each by its full name, so that an
// operator fixes them all in one go.
func loadConfig(getenv func(string) string, defaultAddr string) (Config, error) {
	get := func(name, def string) string {
		if v := getenv(envPrefix + name); v != "" {
			return v
		}
		return def
	}
	c := Config{
		AppName:          get("APP_NAME", "multi-tenant-saas-api"),
		AppVersion:       get("APP_VERSION", "0.1.0"),
		Environment:      get("ENVIRONMENT", "local"),
		LogLevel:         get("LOG_LEVEL", "INFO"),
		DatabaseURL:      rewriteAsyncpgURL(get("DATABASE_URL", "")),
		JWTSecret:        get("JWT_SECRET", placeholderJWTSecret),
		JWTIssuer:        get("JWT_ISSUER", "multi-tenant-saas-api-local"),
		HTTPAddr:         get("HTTP_ADDR", defaultAddr),
		DevDir:           get("DEV_DIR", ".data"),
		LedgerOrigin:     get("LEDGER_ORIGIN", ""),
		LedgerSigningKey: get("LEDGER_SIGNING_KEY", ""),
	}

	var errs []error
	if _, err := observability.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("%sLOG_LEVEL: %w", envPrefix, err))
	}
	docs, err := parseBool("DOCS_ENABLED", get("DOCS_ENABLED", "false"))
	errs = append(errs, err)
	c.DocsEnabled = docs
	ttl, err := parseInt("ACCESS_TOKEN_TTL_SECONDS", get("ACCESS_TOKEN_TTL_SECONDS", "900"), 1, maxTTLSeconds)
	errs = append(errs, err)
	c.AccessTokenTTL = time.Duration(ttl) * time.Second
	// The upper bound matches the password validation of the HTTP contract:
	// a minimum above the maximum would make registration impossible.
	minLen, err := parseInt("PASSWORD_MIN_LENGTH", get("PASSWORD_MIN_LENGTH", "12"), 1, 256)
	errs = append(errs, err)
	c.PasswordMinLength = int(minLen)
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("%sHTTP_ADDR: %q is not a host:port listen address: %w", envPrefix, c.HTTPAddr, err))
	}

	errs = append(errs, c.checkLedgerConfig())

	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// checkSecret refuses a guessable JWT secret (the placeholder, an empty one,
// or one shorter than 32 bytes) unless the environment is local or test: with
// a known secret anyone can mint access tokens for any user. It is separate
// from loadConfig so that commands that issue no tokens need not ask for one.
func (c Config) checkSecret() error {
	if len(c.JWTSecret) < minJWTSecretBytes {
		// HS256 needs a key of at least 256 bits in every environment.
		return fmt.Errorf("%sJWT_SECRET is shorter than %d bytes: set %sJWT_SECRET to a random secret of at least %d bytes",
			envPrefix, minJWTSecretBytes, envPrefix, minJWTSecretBytes)
	}
	if strings.EqualFold(c.Environment, "local") || strings.EqualFold(c.Environment, "test") {
		return nil
	}
	var problem string
	switch {
	case c.JWTSecret == "":
		problem = "is empty"
	case c.JWTSecret == placeholderJWTSecret:
		problem = "is the local placeholder"
	case len(c.JWTSecret) < minJWTSecretBytes:
		problem = fmt.Sprintf("is shorter than %d bytes", minJWTSecretBytes)
	default:
		return nil
	}
	return fmt.Errorf("%sJWT_SECRET %s, which is allowed only when %sENVIRONMENT is local or test (it is %q): set %sJWT_SECRET to a random secret of at least %d bytes",
		envPrefix, problem, envPrefix, c.Environment, envPrefix, minJWTSecretBytes)
}

// rewriteAsyncpgURL turns the original service's postgresql+asyncpg:// URL
// into the postgres:// URL pgx understands; any other value is returned as
// it is (pgx also takes keyword/value strings). Schemes are case-insensitive.
func rewriteAsyncpgURL(u string) string {
	if len(u) >= len(asyncpgScheme) && strings.EqualFold(u[:len(asyncpgScheme)], asyncpgScheme) {
		return "postgres://" + u[len(asyncpgScheme):]
	}
	return u
}

// parseBool accepts the spellings pydantic accepted for the original service,
// so that existing environment files keep their meaning.
func parseBool(name, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("%s%s: %q is not a boolean (want true, false, 1, 0, yes or no)", envPrefix, name, v)
}

// parseInt parses a decimal integer within [low, high].
func parseInt(name, v string, low, high int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < low || n > high {
		return 0, fmt.Errorf("%s%s: %q is not an integer from %d to %d", envPrefix, name, v, low, high)
	}
	return n, nil
}
