#!/usr/bin/env bash
# The quality gate: everything CI checks, runnable on a developer's machine.
#
#   scripts/quality-gate.sh
#
# Steps, cheapest first; the gate stops at the first failure:
#   shell scripts     bash -n and shellcheck on scripts/*.sh and .ci/run
#   gofmt             gofmt -l . must list nothing
#   go vet            go vet ./...
#   golangci-lint     go tool golangci-lint run ./...
#   guardrails        import rules, public-safety scan, secret response fields
#                     (internal/guardrails; they run again in the full suite)
#   compose           docker compose config -q (skipped without docker compose;
#                     the file's structure is also tested by observability's tests)
#   promtool          promtool check config observability/prometheus/prometheus.yml
#   actionlint        actionlint on .github/workflows/ci.yml (pinned, via go run)
#   openapi lint      @redocly/cli lint http/openapi.yaml, no errors allowed
#                     (pinned by tools/openapi-lint/package-lock.json, installed
#                     with npm ci into a cache directory outside the tree)
#   tests + coverage  go test -race with coverage over every package, against
#                     one PostgreSQL cluster started for the run, or against
#                     SAAS_API_TEST_DATABASE_URL when it is set (CI's service
#                     container)
#
# Environment:
#   SAAS_API_TEST_DATABASE_URL   superuser URL of an existing PostgreSQL to test
#                                against instead of starting a private cluster
#   SAAS_API_GATE_SKIP_MISSING=1 skip (rather than fail) steps whose tool is not
#                                installed (shellcheck, promtool)
#   SAAS_API_FORBIDDEN_TERMS_FILE  private terms for the public-safety scan
#                                (see internal/guardrails)
set -euo pipefail
cd "$(dirname "$0")/.."

# actionlint runs through `go run pkg@version`, which builds it with its own
# go.mod: as a go.mod tool entry its YAML dependency would be resolved
# against ours, and that version does not build it.
ACTIONLINT_VERSION=v1.7.12
GO=${GO:-go}
# npm ci installs the linter here, from tools/openapi-lint's lock file; a
# cache directory keeps node_modules out of the tree (gofmt, the guardrails
# and the Docker context walk it).
OPENAPI_LINT_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/saasapi/openapi-lint

gate_start=$SECONDS
step_name=''
step_start=$SECONDS

step() {
	finish_step
	step_name=$1
	step_start=$SECONDS
	printf '\n==> %s\n' "$step_name"
}

finish_step() {
	if [ -n "$step_name" ]; then
		printf '    (%s: %ds)\n' "$step_name" $((SECONDS - step_start))
	fi
}

on_exit() {
	local rc=$?
	if [ "$rc" -ne 0 ]; then
		printf '\nquality gate FAILED at step "%s" after %ds\n' "$step_name" $((SECONDS - gate_start)) >&2
	fi
}
trap on_exit EXIT

# missing TOOL HINT: fail, or skip when SAAS_API_GATE_SKIP_MISSING=1.
# Returns 0 when the step should be skipped.
missing() {
	if [ "${SAAS_API_GATE_SKIP_MISSING:-}" = 1 ]; then
		echo "    SKIPPED: $1 is not installed ($2); SAAS_API_GATE_SKIP_MISSING=1"
		return 0
	fi
	echo "$1 is not installed: $2 (or set SAAS_API_GATE_SKIP_MISSING=1 to skip this step)" >&2
	exit 1
}

step "shell scripts"
shell_scripts=(scripts/*.sh)
[ -f .ci/run ] && shell_scripts+=(.ci/run)
for f in "${shell_scripts[@]}"; do
	bash -n "$f"
done
if command -v shellcheck >/dev/null 2>&1; then
	shellcheck "${shell_scripts[@]}"
	echo "    ${#shell_scripts[@]} scripts: bash -n and shellcheck clean"
else
	missing shellcheck "Debian/Ubuntu: apt-get install shellcheck"
fi

step "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt needed (run gofmt -w .):" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "    clean"

step "go vet"
$GO vet ./...

step "golangci-lint"
$GO tool golangci-lint run ./...

step "guardrails"
$GO test -count=1 ./internal/guardrails/

step "compose"
if [ ! -f docker-compose.yml ]; then
	echo "    SKIPPED: no docker-compose.yml"
elif command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
	docker compose config -q
	echo "    docker compose config: valid"
else
	echo "    SKIPPED: docker compose is not available (its structure tests run with go test in observability/)"
fi

step "promtool"
if command -v promtool >/dev/null 2>&1; then
	promtool check config observability/prometheus/prometheus.yml
else
	missing promtool "Debian/Ubuntu: apt-get install prometheus, which provides promtool"
fi

step "actionlint"
$GO run "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" .github/workflows/ci.yml
echo "    .github/workflows/ci.yml: clean"

step "openapi lint"
if command -v npm >/dev/null 2>&1; then
	mkdir -p "$OPENAPI_LINT_DIR"
	cp tools/openapi-lint/package.json tools/openapi-lint/package-lock.json "$OPENAPI_LINT_DIR/"
	npm ci --prefix "$OPENAPI_LINT_DIR" --no-audit --no-fund --loglevel=error
	# The ignore file beside the document lists the accepted warnings, each
	# with its reason; errors always fail.
	"$OPENAPI_LINT_DIR/node_modules/.bin/redocly" lint http/openapi.yaml
else
	missing npm "Debian/Ubuntu: apt-get install npm (Node.js 20.19 or later)"
fi

step "tests + coverage"
test_cmd=("$GO" test -race -count=1 -covermode=atomic -coverpkg=./... -coverprofile=coverage.out ./...)
if [ -n "${SAAS_API_TEST_DATABASE_URL:-}" ]; then
	echo "    against SAAS_API_TEST_DATABASE_URL (no private cluster)"
	"${test_cmd[@]}"
else
	$GO run ./internal/withcluster -- "${test_cmd[@]}"
fi
echo "    coverage $($GO tool cover -func=coverage.out | tail -1)"

finish_step
step_name=''
printf '\nquality gate passed in %ds\n' $((SECONDS - gate_start))
