package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/saasapi/saasapi"
	"github.com/saasapi/saasapi/commands"
	"github.com/saasapi/saasapi/eventstore"
	apihttp "github.com/saasapi/saasapi/http"
)

// envOf returns a getenv that reads from vars, as the real environment would.
func envOf(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func defaultConfig(addr string) Config {
	return Config{
		AppName:           "multi-tenant-saas-api",
		AppVersion:        "0.1.0",
		Environment:       "local",
		LogLevel:          "INFO",
		DocsEnabled:       false,
		DatabaseURL:       "",
		JWTSecret:         "local-placeholder-jwt-secret-not-for-production",
		JWTIssuer:         "multi-tenant-saas-api-local",
		AccessTokenTTL:    900 * time.Second,
		PasswordMinLength: 12,
		HTTPAddr:          addr,
		DevDir:            ".data",

		LoginAccountRate:    apihttp.Rate{Events: 10, Per: 15 * time.Minute, Burst: 5},
		LoginAddressRate:    apihttp.Rate{Events: 100, Per: time.Minute, Burst: 100},
		RegisterAddressRate: apihttp.Rate{Events: 100, Per: time.Minute, Burst: 100},
		LoginFailureWindow:  5 * time.Minute,
		WriteGroups:         commands.DefaultWriteGroups,
	}
}

func TestLoadConfig_Defaults(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"127.0.0.1:8000", ":8000"} {
		got, err := loadConfig(envOf(nil), addr)
		if err != nil {
			t.Fatalf("loadConfig with an empty environment: %v", err)
		}
		if want := defaultConfig(addr); got != want {
			t.Errorf("loadConfig defaults (address %q):\n got %+v\nwant %+v", addr, got, want)
		}
	}
}

func TestLoadConfig_Overrides(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value string
		want        func(*Config)
	}{
		{"SAAS_API_APP_NAME", "billing-api", func(c *Config) { c.AppName = "billing-api" }},
		{"SAAS_API_APP_VERSION", "2.3.4", func(c *Config) { c.AppVersion = "2.3.4" }},
		{"SAAS_API_ENVIRONMENT", "production", func(c *Config) { c.Environment = "production" }},
		{"SAAS_API_LOG_LEVEL", "debug", func(c *Config) { c.LogLevel = "debug" }},
		{"SAAS_API_LOG_LEVEL", "CRITICAL", func(c *Config) { c.LogLevel = "CRITICAL" }},
		{"SAAS_API_DOCS_ENABLED", "true", func(c *Config) { c.DocsEnabled = true }},
		{"SAAS_API_DOCS_ENABLED", "TRUE", func(c *Config) { c.DocsEnabled = true }},
		{"SAAS_API_DOCS_ENABLED", "1", func(c *Config) { c.DocsEnabled = true }},
		{"SAAS_API_DOCS_ENABLED", "Yes", func(c *Config) { c.DocsEnabled = true }},
		{"SAAS_API_DOCS_ENABLED", "false", func(*Config) {}},
		{"SAAS_API_DOCS_ENABLED", "0", func(*Config) {}},
		{"SAAS_API_DOCS_ENABLED", "no", func(*Config) {}},
		{"SAAS_API_DATABASE_URL", "postgres://u:p@db:5432/app", func(c *Config) { c.DatabaseURL = "postgres://u:p@db:5432/app" }},
		{"SAAS_API_JWT_SECRET", "0123456789abcdef0123456789abcdef", func(c *Config) { c.JWTSecret = "0123456789abcdef0123456789abcdef" }},
		{"SAAS_API_JWT_ISSUER", "saas-prod", func(c *Config) { c.JWTIssuer = "saas-prod" }},
		{"SAAS_API_ACCESS_TOKEN_TTL_SECONDS", "60", func(c *Config) { c.AccessTokenTTL = time.Minute }},
		{"SAAS_API_PASSWORD_MIN_LENGTH", "1", func(c *Config) { c.PasswordMinLength = 1 }},
		{"SAAS_API_PASSWORD_MIN_LENGTH", "256", func(c *Config) { c.PasswordMinLength = 256 }},
		{"SAAS_API_HTTP_ADDR", ":0", func(c *Config) { c.HTTPAddr = ":0" }},
		{"SAAS_API_HTTP_ADDR", "[::1]:9000", func(c *Config) { c.HTTPAddr = "[::1]:9000" }},
		{"SAAS_API_DEV_DIR", "/var/lib/saasapi", func(c *Config) { c.DevDir = "/var/lib/saasapi" }},
		{"SAAS_API_PPROF_ADDR", "127.0.0.1:6060", func(c *Config) { c.PprofAddr = "127.0.0.1:6060" }},
		{"SAAS_API_PPROF_ADDR", "[::1]:6060", func(c *Config) { c.PprofAddr = "[::1]:6060" }},
		{"SAAS_API_PPROF_ADDR", "localhost:6060", func(c *Config) { c.PprofAddr = "localhost:6060" }},
		{"SAAS_API_LOGIN_ACCOUNT_RATE", "20/1h", func(c *Config) { c.LoginAccountRate = apihttp.Rate{Events: 20, Per: time.Hour, Burst: 5} }},
		{"SAAS_API_LOGIN_ACCOUNT_RATE", "off", func(c *Config) { c.LoginAccountRate = apihttp.Rate{} }},
		{"SAAS_API_LOGIN_ACCOUNT_BURST", "3", func(c *Config) { c.LoginAccountRate.Burst = 3 }},
		{"SAAS_API_LOGIN_ADDRESS_RATE", "300/1m", func(c *Config) { c.LoginAddressRate = apihttp.Rate{Events: 300, Per: time.Minute, Burst: 300} }},
		{"SAAS_API_REGISTER_ADDRESS_RATE", "OFF", func(c *Config) { c.RegisterAddressRate = apihttp.Rate{} }},
		{"SAAS_API_LOGIN_FAILURE_WINDOW_SECONDS", "60", func(c *Config) { c.LoginFailureWindow = time.Minute }},
		{"SAAS_API_WRITE_GROUPS", "4", func(c *Config) { c.WriteGroups = 4 }},
		{"SAAS_API_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1,fd00::/8", func(c *Config) { c.TrustedProxies = "10.0.0.0/8, 192.0.2.1,fd00::/8" }},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			got, err := loadConfig(envOf(map[string]string{tt.name: tt.value}), "127.0.0.1:8000")
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			want := defaultConfig("127.0.0.1:8000")
			tt.want(&want)
			if got != want {
				t.Errorf("\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestLoadConfig_RejectsInvalidValuesNamingTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, value string }{
		{"SAAS_API_LOG_LEVEL", "TRACE"},
		{"SAAS_API_DOCS_ENABLED", "on"},
		{"SAAS_API_DOCS_ENABLED", "2"},
		{"SAAS_API_ACCESS_TOKEN_TTL_SECONDS", "0"},
		{"SAAS_API_ACCESS_TOKEN_TTL_SECONDS", "-5"},
		{"SAAS_API_ACCESS_TOKEN_TTL_SECONDS", "15m"},
		{"SAAS_API_ACCESS_TOKEN_TTL_SECONDS", "9.5"},
		{"SAAS_API_ACCESS_TOKEN_TTL_SECONDS", "99999999999999"}, // overflows a time.Duration
		{"SAAS_API_PASSWORD_MIN_LENGTH", "0"},
		{"SAAS_API_PASSWORD_MIN_LENGTH", "257"},
		{"SAAS_API_PASSWORD_MIN_LENGTH", "twelve"},
		{"SAAS_API_HTTP_ADDR", "8000"},
		{"SAAS_API_HTTP_ADDR", "localhost"},
		// Profiles are for the machine itself, never the network.
		{"SAAS_API_PPROF_ADDR", ":6060"},
		{"SAAS_API_PPROF_ADDR", "0.0.0.0:6060"},
		{"SAAS_API_PPROF_ADDR", "10.0.0.5:6060"},
		{"SAAS_API_PPROF_ADDR", "6060"},
		{"SAAS_API_LOGIN_ACCOUNT_RATE", "10"},
		{"SAAS_API_LOGIN_ACCOUNT_RATE", "0/1m"},
		{"SAAS_API_LOGIN_ACCOUNT_RATE", "10/15"},
		{"SAAS_API_LOGIN_ACCOUNT_RATE", "10/100ms"},
		{"SAAS_API_LOGIN_ACCOUNT_BURST", "0"},
		{"SAAS_API_LOGIN_ADDRESS_RATE", "many/1m"},
		{"SAAS_API_REGISTER_ADDRESS_RATE", "100/48h"},
		{"SAAS_API_LOGIN_FAILURE_WINDOW_SECONDS", "0"},
		{"SAAS_API_WRITE_GROUPS", "0"},
		{"SAAS_API_WRITE_GROUPS", "two"},
		{"SAAS_API_TRUSTED_PROXIES", "10.0.0.0/33"},
		{"SAAS_API_TRUSTED_PROXIES", "proxy.internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			got, err := loadConfig(envOf(map[string]string{tt.name: tt.value}), ":8000")
			if err == nil {
				t.Fatalf("loadConfig accepted %s=%q (config %+v); want an error", tt.name, tt.value, got)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Errorf("error %q does not name %s", err, tt.name)
			}
		})
	}
}

func TestLoadConfig_ReportsEveryInvalidVariable(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(envOf(map[string]string{
		"SAAS_API_DOCS_ENABLED":        "maybe",
		"SAAS_API_PASSWORD_MIN_LENGTH": "-1",
	}), ":8000")
	if err == nil {
		t.Fatal("loadConfig accepted two invalid variables; want an error")
	}
	for _, name := range []string{"SAAS_API_DOCS_ENABLED", "SAAS_API_PASSWORD_MIN_LENGTH"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}

func TestLoadConfig_RewritesAsyncpgURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"postgresql+asyncpg://saas_api:saas_api@localhost:5432/saas_api", "postgres://saas_api:saas_api@localhost:5432/saas_api"},
		{"PostgreSQL+AsyncPG://u@db/app?sslmode=require", "postgres://u@db/app?sslmode=require"},
		{"postgresql://u@db/app", "postgresql://u@db/app"},
		{"postgres://u@db/app", "postgres://u@db/app"},
		{"host=db user=u dbname=app", "host=db user=u dbname=app"},
	}
	for _, tt := range tests {
		c, err := loadConfig(envOf(map[string]string{"SAAS_API_DATABASE_URL": tt.in}), ":8000")
		if err != nil {
			t.Fatalf("loadConfig(DATABASE_URL=%q): %v", tt.in, err)
		}
		if c.DatabaseURL != tt.want {
			t.Errorf("DATABASE_URL %q became %q, want %q", tt.in, c.DatabaseURL, tt.want)
		}
	}
}

func TestConfig_CheckSecret(t *testing.T) {
	t.Parallel()
	const strong = "k7Jd0q9VxY2mN4pR8sT1uW6zA3bC5eF0" // 32 bytes
	tests := []struct {
		environment, secret string
		ok                  bool
	}{
		{"local", placeholderJWTSecret, true},
		{"LOCAL", placeholderJWTSecret, true},
		{"test", placeholderJWTSecret, true},
		{"Test", "short", false}, // HS256 needs 32 bytes everywhere
		{"local", "", false},
		{"production", placeholderJWTSecret, false},
		{"staging", placeholderJWTSecret, false},
		{"production", "", false},
		{"production", strong[:31], false},
		{"production", strong, true},
		{"staging", strong + "and-some-more", true},
		{"local-dev", placeholderJWTSecret, false}, // only the exact names relax the check
	}
	for _, tt := range tests {
		c := defaultConfig(":8000")
		c.Environment, c.JWTSecret = tt.environment, tt.secret
		err := c.checkSecret()
		switch {
		case tt.ok && err != nil:
			t.Errorf("ENVIRONMENT=%q, secret %q: %v; want it accepted", tt.environment, tt.secret, err)
		case !tt.ok && err == nil:
			t.Errorf("ENVIRONMENT=%q, secret %q accepted; want an error", tt.environment, tt.secret)
		case !tt.ok && !strings.Contains(err.Error(), "set SAAS_API_JWT_SECRET"):
			t.Errorf("ENVIRONMENT=%q: error %q does not say to set SAAS_API_JWT_SECRET", tt.environment, err)
		}
	}
}

func TestLoadConfig_PlaceholderSecretRefusedInProduction(t *testing.T) {
	t.Parallel()
	// The path serve takes: the default secret loads, then checkSecret refuses it.
	c, err := loadConfig(envOf(map[string]string{"SAAS_API_ENVIRONMENT": "production"}), ":8000")
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if err := c.checkSecret(); err == nil {
		t.Fatal("the placeholder JWT secret was accepted with ENVIRONMENT=production; want an error")
	}
}

func TestLedgerSigningKeyConfig(t *testing.T) {
	t.Parallel()
	// Outside local and test, serve refuses to start without a key, as it
	// does with a guessable JWT secret.
	err := run(t.Context(), []string{"serve"}, environment(map[string]string{
		"SAAS_API_ENVIRONMENT":  "production",
		"SAAS_API_JWT_SECRET":   strings.Repeat("s", 32),
		"SAAS_API_DATABASE_URL": "postgres://127.0.0.1:1/none",
	}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "SAAS_API_LEDGER_SIGNING_KEY is required") {
		t.Errorf("serve in production without a signing key: %v", err)
	}
	for name, value := range map[string]string{
		"SAAS_API_LEDGER_SIGNING_KEY": "PRIVATE+KEY+not+a+key",
		"SAAS_API_LEDGER_ORIGIN":      "has space",
	} {
		if _, err := loadConfig(envOf(map[string]string{name: value}), ":8000"); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: %v, want an error naming it", name, value, err)
		}
	}
	key, err := eventstore.GenerateSigningKey("example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(envOf(map[string]string{"SAAS_API_LEDGER_SIGNING_KEY": key, "SAAS_API_ENVIRONMENT": "production"}), ":8000")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.ledgerSigner(slog.New(slog.DiscardHandler))
	if err != nil || s.Origin(saasapi.LedgerOrganisation, "01M00000000000000000000000") != "multi-tenant-saas-api/orgs/01M00000000000000000000000" {
		t.Errorf("signer from the configured key: %v", err)
	}
}
