#!/usr/bin/env bash
# The jq programs are single-quoted on purpose: their $names are jq's.
# shellcheck disable=SC2016
#
# The end-to-end smoke demo: drives a running service through the main
# workflows with placeholder example.com users and checks every answer.
#
#   scripts/smoke-demo.sh
#   SAAS_API_DEMO_BASE_URL=http://127.0.0.1:18080 scripts/smoke-demo.sh
#   SAAS_API_DEMO_RUN_ID=example-review scripts/smoke-demo.sh
#
# SAAS_API_DEMO_BASE_URL  the service (default http://127.0.0.1:8000)
# SAAS_API_DEMO_RUN_ID    makes the e-mail addresses and the organisation slug
#                         unique (default: a UTC timestamp and a random number);
#                         reusing one against the same database fails at
#                         registration, by design.
#
# It prints one "ok  <step>" line per step and stops at the first unexpected
# answer, printing the step, the expected and the actual status and the
# response body with secrets redacted. Passwords, access tokens and the raw
# API key stay in shell variables: they are never printed, never put on a
# command line (curl reads them from a pipe or a file descriptor, so they do
# not appear in the process list) and never written to disk.
set -euo pipefail

for tool in curl jq; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "smoke-demo: $tool is required (Debian/Ubuntu: apt-get install $tool; macOS: brew install $tool)" >&2
		exit 2
	fi
done

base_url=${SAAS_API_DEMO_BASE_URL:-http://127.0.0.1:8000}
base_url=${base_url%/}
run_id=${SAAS_API_DEMO_RUN_ID:-$(date -u +%Y%m%d%H%M%S)-$RANDOM$RANDOM}
# Lower-case letters, digits and single dashes: usable in an e-mail local
# part and in a slug.
run_id=$(printf '%s' "$run_id" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-*//; s/-*$//')
if [ -z "$run_id" ]; then
	echo "smoke-demo: SAAS_API_DEMO_RUN_ID must contain letters or digits" >&2
	exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Per-request state, set by call.
status='' body=''
# The credential the next call sends (empty: none). Never printed.
bearer=''
# The Idempotency-Key the next call sends (empty: none).
idempotency_key=''

# redact prints a response body with every secret-bearing value replaced.
redact() {
	if printf '%s' "$1" | jq -e . >/dev/null 2>&1; then
		printf '%s' "$1" | jq 'walk(if type == "object" then with_entries(
		      if (.key | ascii_downcase | gsub("[^a-z]"; "")) as $k
		         | ["accesstoken", "rawkey", "token", "password", "secret", "authorization", "refreshtoken"] | index($k)
		      then .value = "[redacted]" else . end) else . end)'
	else
		printf '%s\n' "${1:0:2000}" | sed -E 's/sapi_[A-Za-z0-9_]+/sapi_[redacted]/g; s/eyJ[A-Za-z0-9._-]+/[redacted-jwt]/g'
	fi
}

# fail STEP EXPECTED: report the last call and stop.
fail() {
	{
		echo "FAIL $1"
		echo "  expected: $2"
		echo "  actual:   ${status:-no response}"
		if [ -n "$body" ]; then
			echo "  body:"
			redact "$body" | sed 's/^/    /'
		fi
	} >&2
	exit 1
}

# call STEP EXPECTED_STATUS METHOD PATH [JSON_BODY]
# Sends one request with the current $bearer and $idempotency_key, sets
# $status and $body, keeps the response headers in $tmp/headers, and fails
# the demo unless the status is the expected one.
call() {
	local step=$1 expected=$2 method=$3 path=$4 data=${5-}
	local args=(--silent --show-error --max-time 30 --request "$method" --dump-header "$tmp/headers"
		--write-out '\n%{http_code}' --header 'Accept: application/json')
	if [ -n "$idempotency_key" ]; then
		args+=(--header "Idempotency-Key: $idempotency_key")
	fi
	if [ -n "$data" ]; then
		# The body (it may hold a password) comes from a pipe.
		args+=(--header 'Content-Type: application/json' --data-binary @-)
	fi
	local out rc=0
	status='' body=''
	if [ -n "$bearer" ]; then
		# The Authorization header comes from a pipe on file descriptor 3;
		# printf is a shell builtin, so the credential is on no command line.
		out=$(printf '%s' "$data" | curl "${args[@]}" --header @/dev/fd/3 "$base_url$path" \
			3< <(printf 'Authorization: Bearer %s\n' "$bearer")) || rc=$?
	else
		out=$(printf '%s' "$data" | curl "${args[@]}" "$base_url$path") || rc=$?
	fi
	if [ "$rc" -ne 0 ]; then
		fail "$step" "$expected (curl failed with exit status $rc: is the service at $base_url running?)"
	fi
	status=${out##*$'\n'}
	body=${out%$'\n'*}
	if [ "$status" != "$expected" ]; then
		fail "$step" "$expected"
	fi
}

# field JQ_FILTER [ARGS...]: a value from the last response body.
field() {
	local filter=$1
	shift
	printf '%s' "$body" | jq -r "$@" "$filter"
}

# check STEP JQ_FILTER [ARGS...]: the filter must be true of $body.
check() {
	local step=$1 filter=$2
	shift 2
	if ! printf '%s' "$body" | jq -e "$@" "$filter" >/dev/null 2>&1; then
		fail "$step" "$status with a body where $filter"
	fi
}

header() { # header NAME: the value of a response header of the last call
	tr -d '\r' <"$tmp/headers" | awk -v name="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" '
		{ split($0, kv, ":"); if (tolower(kv[1]) == name) { sub(/^[^:]*:[ \t]*/, ""); v = $0 } }
		END { print v }'
}

ok() { echo "ok  $1"; }

# credentials EMAIL PASSWORD [EXTRA_OBJECT]: a register or login body. The
# password reaches jq through its environment, not its command line.
credentials() {
	local extra=${3:-'{}'}
	DEMO_PASSWORD=$2 jq -nc --arg e "$1" --argjson x "$extra" '{email: $e, password: $ENV.DEMO_PASSWORD} + $x'
}

# Demo credentials: random per run, never printed.
owner_email="owner-$run_id@example.com"
member_email="member-$run_id@example.com"
owner_password="demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
member_password="demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
slug="demo-$run_id"
slug=${slug:0:80}
slug=${slug%-}

echo "smoke demo against $base_url (run id $run_id)"

# 1. Wait for readiness: up to 60 seconds.
deadline=$((SECONDS + 60))
until ready=$(curl --silent --max-time 5 --output /dev/null --write-out '%{http_code}' "$base_url/readyz") && [ "$ready" = 200 ]; do
	if [ "$SECONDS" -ge "$deadline" ]; then
		status=${ready:-} body=''
		fail "wait for /readyz" "200 within 60 seconds"
	fi
	sleep 1
done
ok "readyz"

call "healthz" 200 GET /healthz
check "healthz" '.status == "ok"'
ok "healthz"

# 2. Two users.
call "register owner" 201 POST /auth/register \
	"$(credentials "$owner_email" "$owner_password" '{"display_name":"Demo Owner"}')"
check "register owner" '.user.email == $e and .user.is_active' --arg e "$owner_email"
ok "register owner $owner_email"

call "register member" 201 POST /auth/register \
	"$(credentials "$member_email" "$member_password" '{"display_name":"Demo Member"}')"
member_id=$(field .user.id)
ok "register member $member_email"

# 3. Log both in.
call "log in owner" 200 POST /auth/login "$(credentials "$owner_email" "$owner_password")"
check "log in owner" '.token_type == "bearer" and (.access_token | length > 0) and .expires_in_seconds > 0'
owner_token=$(field .access_token)
ok "log in owner"

call "log in member" 200 POST /auth/login "$(credentials "$member_email" "$member_password")"
member_token=$(field .access_token)
ok "log in member"

bearer=$owner_token
call "GET /me" 200 GET /me
check "GET /me" '.user.email == $e and .memberships == []' --arg e "$owner_email"
ok "GET /me"

# 4. An organisation, created with an Idempotency-Key and replayed.
idempotency_key="smoke-org-$run_id"
org_body=$(jq -nc --arg s "$slug" '{name: "Demo Organisation", slug: $s}')
call "create organisation" 201 POST /orgs "$org_body"
org_id=$(field .id)
check "create organisation" '.slug == $s' --arg s "$slug"
ok "create organisation $slug"

call "replay organisation creation" 201 POST /orgs "$org_body"
check "replay organisation creation" '.id == $id' --arg id "$org_id"
if [ "$(header Idempotency-Replayed)" != true ]; then
	fail "replay organisation creation" "201 with Idempotency-Replayed: true"
fi
idempotency_key=''
ok "replay organisation creation (Idempotency-Replayed: true, same id)"

# 5. The second user joins as a member.
call "add member" 201 POST "/orgs/$org_id/members" "$(jq -nc --arg u "$member_id" '{user_id: $u, role: "member"}')"
check "add member" '.role == "member" and .user.id == $u' --arg u "$member_id"
ok "add member"

bearer=$member_token
call "member sees the organisation" 200 GET /me
check "member sees the organisation" 'any(.memberships[]; .organisation_id == $o and .role == "member")' --arg o "$org_id"
ok "member sees the organisation in GET /me"
bearer=$owner_token

# 6. Projects.
call "create project" 201 POST "/orgs/$org_id/projects" \
	'{"name":"Demo Project","description":"Created by the smoke demo","status":"active"}'
project_id=$(field .id)
ok "create project"

call "create second project" 201 POST "/orgs/$org_id/projects" '{"name":"Archived Demo Project","status":"archived"}'
ok "create second project"

bearer=$member_token
call "list projects" 200 GET \
	"/orgs/$org_id/projects?status=active&name=demo&sort_by=name&sort_direction=asc&limit=10&offset=0"
check "list projects" '.pagination.total == 1 and .pagination.count == 1 and .pagination.limit == 10
	and .items[0].id == $p and .items[0].status == "active"' --arg p "$project_id"
ok "list projects (status, name, sort_by, sort_direction, limit, offset) as the member"
bearer=$owner_token

call "update project" 200 PATCH "/orgs/$org_id/projects/$project_id" \
	'{"name":"Demo Project (renamed)","description":null}'
check "update project" '.name == "Demo Project (renamed)" and .description == null'
ok "update project"

# 7. An API key: use it, revoke it, and see it refused.
call "create API key" 201 POST "/orgs/$org_id/api-keys" '{"name":"smoke demo key"}'
check "create API key" '(.raw_key | startswith("sapi_")) and .api_key.revoked_at == null'
api_key=$(field .raw_key)
api_key_id=$(field .api_key.id)
ok "create API key (raw key kept in memory only)"

bearer=$api_key
call "read project with the API key" 200 GET "/orgs/$org_id/projects/$project_id"
check "read project with the API key" '.id == $p' --arg p "$project_id"
ok "read project with the API key"

bearer=$owner_token
call "revoke API key" 200 DELETE "/orgs/$org_id/api-keys/$api_key_id"
check "revoke API key" '.status == "revoked" and .revoked_at != null'
ok "revoke API key"

bearer=$api_key
call "read project with the revoked key" 401 GET "/orgs/$org_id/projects/$project_id"
ok "read project with the revoked key is refused (401)"
bearer=$owner_token
api_key=''

# 8. The audit log and its head.
call "read audit events" 200 GET "/orgs/$org_id/audit-events?limit=100"
for action in organisation.created member.added project.created project.updated api_key.created api_key.revoked; do
	check "read audit events" 'any(.items[]; .action == $a)' --arg a "$action"
done
ok "read audit events (organisation.created ... api_key.revoked)"

call "read audit head" 200 GET "/orgs/$org_id/audit-events/head"
check "read audit head" '.sequence > 0 and (.hash | test("^[0-9a-f]{64}$"))'
ok "read audit head (sequence $(field .sequence))"

# 9. Metrics.
bearer=''
call "metrics" 200 GET /metrics
for family in saas_api_requests_total saas_api_projects_created_total; do
	if ! printf '%s\n' "$body" | grep -q "^$family"; then
		body=''
		fail "metrics" "200 with the $family family"
	fi
done
ok "metrics (saas_api_requests_total, saas_api_projects_created_total)"

echo "smoke demo passed (run id $run_id)"
