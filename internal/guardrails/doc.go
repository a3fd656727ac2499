// Package guardrails holds no code for the service: its tests check the
// repository itself, so that `go test ./...` (and therefore `make test`, the
// quality gate and CI) fails when the code drifts from rules that reviews
// would otherwise have to catch by eye.
//
// # Import rules
//
// The package table of DESIGN.md (docs/architecture.md shows it) is encoded
// once, as data, in the test. The test reads `go list -deps=false -json ./...`
// from the module root and fails for every non-test import that the table
// does not allow, naming the importer, the import and the rule. Imports of
// _test.go files are not checked: tests may use internal helpers such as
// internal/testdb. A package of ours that the table does not know fails too,
// so a new package is a decision to record, not an accident.
//
// # Public safety
//
// Every git-tracked file (or, without git, every file of the tree except
// .git, .data and bin) is scanned for
//
//   - a built-in list of patterns that are never public: private-key blocks,
//     AWS access key IDs, GitHub and Slack tokens, and raw API keys of this
//     service's own format;
//   - the terms listed in the file named by SAAS_API_FORBIDDEN_TERMS_FILE (one
//     term per line, case-insensitive, # starts a comment). Keep that file
//     outside the repository or untracked; the scan reports the line number
//     of a term in it, never the term itself, so private terms do not end up
//     in CI logs.
//
// Committed configuration (docker-compose.yml, example.env,
// observability/**/*.yml|yaml|json, .github/workflows/*.yml|yaml) may hold
// placeholders only: every value of a key whose name ends in password,
// secret, token or key must contain "placeholder", "local", "example" or
// "test", or be a reference (`${{ secrets.NAME }}`, `${VAR}`, `$VAR`).
//
// # Secret fields in responses and event payloads
//
// Every struct type of package http that has json tags is taken to be a
// response body, except request bodies, which the handlers name `request`.
// No JSON field may be named (case- and separator-insensitively) like one of
// the secret names of the contract (A.8) except two, each allowed in exactly
// one type: `raw_key` in the one-time API key creation response and
// `access_token` in the login response. The structs of the root package
// (the event payloads, shown to auditors as metadata) get the same scan with
// no exception.
package guardrails
