package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/saasapi/saasapi/commands"
	apihttp "github.com/saasapi/saasapi/http"
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
	PprofAddr         string        // PPROF_ADDR, a loopback address for net/http/pprof; empty (default) for none
	DataKey           string        // DATA_KEY, the key-encryption key of the people's data keys (dataKeyring)
	DataKeyPrevious   string        // DATA_KEY_PREVIOUS, the key DATA_KEY replaces while they are re-wrapped

	// Abuse limits, per replica (apihttp.Throttle).
	LoginAccountRate    apihttp.Rate  // LOGIN_ACCOUNT_RATE and LOGIN_ACCOUNT_BURST: failed sign-ins per account and address
	LoginAddressRate    apihttp.Rate  // LOGIN_ADDRESS_RATE: sign-in attempts per client address
	RegisterAddressRate apihttp.Rate  // REGISTER_ADDRESS_RATE: registrations per client address
	LoginFailureWindow  time.Duration // LOGIN_FAILURE_WINDOW_SECONDS: failed sign-ins summed into one event
	TrustedProxies      string        // TRUSTED_PROXIES: comma-separated CIDRs whose X-Forwarded-For is believed

	WriteGroups int // WRITE_GROUPS: group-commit transactions in flight at once (commands.Config.WriteGroups)
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
		PprofAddr:        get("PPROF_ADDR", ""),
		DataKey:          get("DATA_KEY", ""),
		DataKeyPrevious:  get("DATA_KEY_PREVIOUS", ""),
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
	c.LoginAccountRate, err = parseRate("LOGIN_ACCOUNT_RATE", get("LOGIN_ACCOUNT_RATE", "10/15m"))
	errs = append(errs, err)
	burst, err := parseInt("LOGIN_ACCOUNT_BURST", get("LOGIN_ACCOUNT_BURST", "5"), 1, maxRateEvents)
	errs = append(errs, err)
	if c.LoginAccountRate.Events > 0 {
		c.LoginAccountRate.Burst = int(burst)
	}
	c.LoginAddressRate, err = parseRate("LOGIN_ADDRESS_RATE", get("LOGIN_ADDRESS_RATE", "100/1m"))
	errs = append(errs, err)
	c.RegisterAddressRate, err = parseRate("REGISTER_ADDRESS_RATE", get("REGISTER_ADDRESS_RATE", "100/1m"))
	errs = append(errs, err)
	window, err := parseInt("LOGIN_FAILURE_WINDOW_SECONDS", get("LOGIN_FAILURE_WINDOW_SECONDS", "300"), 1, 86400)
	errs = append(errs, err)
	c.LoginFailureWindow = time.Duration(window) * time.Second
	groups, err := parseInt("WRITE_GROUPS", get("WRITE_GROUPS", strconv.Itoa(commands.DefaultWriteGroups)), 1, 1000)
	errs = append(errs, err)
	c.WriteGroups = int(groups)
	c.TrustedProxies = get("TRUSTED_PROXIES", "")
	_, err = parseProxies(c.TrustedProxies)
	errs = append(errs, err)
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("%sHTTP_ADDR: %q is not a host:port listen address: %w", envPrefix, c.HTTPAddr, err))
	}
	errs = append(errs, checkPprofAddr(c.PprofAddr))

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
	if c.relaxed() {
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

// maxRateEvents bounds the counts of a rate setting and a burst.
const maxRateEvents = 1_000_000

// parseRate parses a token bucket rate written as COUNT/DURATION ("10/15m",
// "100/1m", DURATION as Go writes it, 1s to 24h), or "off" for no limit.
// The burst is the count; LOGIN_ACCOUNT_BURST sets its own.
func parseRate(name, v string) (apihttp.Rate, error) {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "off") {
		return apihttp.Rate{}, nil
	}
	count, per, ok := strings.Cut(v, "/")
	n, errN := strconv.Atoi(count)
	d, errD := time.ParseDuration(per)
	if !ok || errN != nil || errD != nil || n < 1 || n > maxRateEvents || d < time.Second || d > 24*time.Hour {
		return apihttp.Rate{}, fmt.Errorf("%s%s: %q is not a rate such as 10/15m (a count from 1 to %d, a duration from 1s to 24h) or off",
			envPrefix, name, v, maxRateEvents)
	}
	return apihttp.Rate{Events: n, Per: d, Burst: n}, nil
}

// parseProxies parses comma-separated CIDRs (a bare address is one host).
func parseProxies(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, field := range strings.Split(v, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		p, err := netip.ParsePrefix(field)
		if err != nil {
			addr, errAddr := netip.ParseAddr(field)
			if errAddr != nil {
				return nil, fmt.Errorf("%sTRUSTED_PROXIES: %q is not a CIDR such as 10.0.0.0/8 or an address", envPrefix, field)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// parseInt parses a decimal integer within [low, high].
func parseInt(name, v string, low, high int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < low || n > high {
		return 0, fmt.Errorf("%s%s: %q is not an integer from %d to %d", envPrefix, name, v, low, high)
	}
	return n, nil
}
