#!/usr/bin/env bash
# Follows the README's "Add a route" steps the way a fork would, verbatim:
# copies the repository, applies every code block of the section where its
# first line says it goes, builds, runs the new tests, serves, and checks
# what the README says follows: the answers, HEAD, the 405 with its Allow
# header, the OpenAPI entries (parameters, request body, Location) and the
# metrics labels. Then it checks that the steps changed no file but the
# routes' own files, the table, src/state.rs, the README's route table and
# the routes' test files, that OPTIONS can be a row, and that a Ready row
# taking POST, or any row naming HEAD, fails to compile with an error at
# that row.
#
# Usage: scripts/ci/check-readme-route.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

apt_install curl git python3
work="$(mktemp -d)"
cleanup() {
  stop_pulse || true
  rm -rf "$work"
}
trap cleanup EXIT

step "copying the tracked files to a scratch fork (a git repository of its own)"
fork="$work/fork"
mkdir -p "$fork"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$fork"
fork_git() { git -C "$fork" -c user.name=fork -c user.email=fork@localhost "$@"; }
fork_git init -q
fork_git add -A
fork_git commit -qm "pulse as forked"

step "applying the README's Add-a-route blocks"
python3 - README.md "$fork" <<'PY'
import re, sys
readme, fork = open(sys.argv[1]).read(), sys.argv[2]
section = re.search(r"^## Add a route\n(.*?)^## ", readme, re.S | re.M)
if not section:
    sys.exit("README.md has no '## Add a route' section")
blocks = re.findall(r"^```(\w+)\n(.*?)^```", section.group(1), re.S | re.M)

def read(path):
    return open(f"{fork}/{path}").read()

def write(path, text):
    open(f"{fork}/{path}", "w").write(text)

applied = 0
for language, block in blocks:
    first, _, body = block.partition("\n")
    if language == "markdown":
        # Rows of the README's route table: after its last row.
        text = read("README.md")
        routes = text.index("\n## Routes\n")
        table_end = re.compile(r"^\|.*\n(?!\|)", re.M).search(text, routes).end()
        write("README.md", text[:table_end] + block + text[table_end:])
    elif first == "// src/routes/mod.rs: beside the other `mod` lines":
        text = read("src/routes/mod.rs")
        last = list(re.finditer(r"^(pub )?mod \w+;\n", text, re.M))[-1]
        write("src/routes/mod.rs", text[: last.end()] + body + text[last.end():])
    elif first == "// src/routes/mod.rs: the last row of route_table!":
        text = read("src/routes/mod.rs")
        table = re.search(r"^route_table! \{\n.*?^\}$", text, re.S | re.M)
        rows = "".join(f"    {line}\n" for line in body.splitlines())
        write("src/routes/mod.rs", text[: table.end() - 1] + rows + text[table.end() - 1:])
    elif first == "// src/state.rs: a field of State":
        text = read("src/state.rs")
        at = text.index("pub struct State {\n") + len("pub struct State {\n")
        write("src/state.rs", text[:at] + "".join(f"    {line}\n" for line in body.splitlines()) + text[at:])
    elif first == "// src/state.rs: its value in State::new":
        text = read("src/state.rs")
        start = text.index("pub fn new(")
        opening = "        State {\n"  # the value State::new builds
        at = text.index(opening, start) + len(opening)
        write("src/state.rs", text[:at] + "".join(f"            {line}\n" for line in body.splitlines()) + text[at:])
    elif re.fullmatch(r"// (src|tests)/[\w/]+\.rs", first):
        write(first[3:], body)
    else:
        sys.exit(f"a block of 'Add a route' starts with {first!r}: this script does not know where it goes")
    applied += 1
    print(f"    {language}: {first}")
if applied != 12:
    sys.exit(f"expected 12 blocks in 'Add a route', applied {applied}")
PY

step "what the steps changed: the routes' files, the table, state, the README's table, the tests"
fork_git add -A
changed="$(fork_git diff --cached --name-only HEAD | sort | tr '\n' ' ')"
expected="README.md src/routes/memos.rs src/routes/mod.rs src/routes/whoami.rs src/state.rs tests/api/memos.rs tests/api/whoami.rs "
[ "$changed" = "$expected" ] || die "the steps changed: $changed; expected: $expected"
info "changed: $changed"
# In the README, only rows added to the route table, nothing removed.
readme_diff="$(fork_git diff --cached -U0 HEAD -- README.md | grep -E '^[+-][^+-]' || true)"
if grep -qvE '^\+\| `' <<<"$readme_diff"; then
  die "the README changed beyond rows of its route table: $readme_diff"
fi
# In the table file, only `mod` lines and rows added.
table_diff="$(fork_git diff --cached -U0 HEAD -- src/routes/mod.rs | grep -E '^[+-][^+-]' || true)"
if grep -qvE '^\+(mod \w+;|    \w+: \[)' <<<"$table_diff"; then
  die "src/routes/mod.rs changed beyond mod lines and rows: $table_diff"
fi

export CARGO_TARGET_DIR="$REPO_ROOT/target/readme-route"
step "the fork's tests: the new files run with no mod line, and the table tests pass"
tests_log="$work/tests.log"
if ! cargo test --locked --manifest-path "$fork/Cargo.toml" --test api -- \
  whoami:: memos:: table:: >"$tests_log" 2>&1; then
  cat "$tests_log"
  die "the fork's tests failed"
fi
for test in whoami::whoami_names_the_caller memos::a_posted_memo_can_be_read_back \
  table::the_readme_route_table_lists_exactly_the_table; do
  grep -q "^test $test \.\.\. ok$" "$tests_log" || {
    cat "$tests_log"
    die "the fork's test $test did not run"
  }
  info "$test: ok"
done

step "building and serving the fork"
cargo build --locked --quiet --manifest-path "$fork/Cargo.toml" --bin pulse
start_pulse "$CARGO_TARGET_DIR/debug/pulse" "$work/pulse.log" PULSE_LOG_FORMAT=json

# expect WHAT ACTUAL WANTED: one checked claim.
expect() {
  [ "$2" = "$3" ] || die "$1: got '$2', expected '$3'"
  info "$1: $2"
}
json_field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

step "GET /whoami: a Ready route that reads a header and the caller's address"
whoami="$(curl -s -H 'Host: fork.example' -H 'X-Request-Id: readme-1' "$PULSE_URL/whoami")"
expect "its Host" "$(json_field "$whoami" host)" "fork.example"
expect "its request id" "$(json_field "$whoami" request_id)" "readme-1"
expect "its version" "$(json_field "$whoami" version)" "HTTP/1.1"
[[ "$(json_field "$whoami" address)" == 127.0.0.1:* ]] || die "address: got $(json_field "$whoami" address)"
info "its address: $(json_field "$whoami" address)"
expect "HEAD /whoami" "$(curl -s -I -o /dev/null -w '%{http_code} %{size_download}' "$PULSE_URL/whoami")" "200 0"
expect "POST /whoami: 405 with Allow" \
  "$(curl -s -X POST -o /dev/null -w '%{http_code} %header{allow}' "$PULSE_URL/whoami")" "405 GET, HEAD"

step "POST /memos and GET /memos/{id}: state and a body"
created="$(curl -s -D "$work/headers" -H 'Content-Type: application/json' -d '{"text":"buy milk"}' "$PULSE_URL/memos")"
expect "POST /memos: 201 with Location" \
  "$(awk 'NR == 1 { print $2 } tolower($1) == "location:" { print $2 }' "$work/headers" | tr -d '\r' | tr '\n' ' ')" "201 /memos/1 "
expect "the stored memo" "$(json_field "$created" text)" "buy milk"
expect "GET /memos/1" "$(json_field "$(curl -s "$PULSE_URL/memos/1")" text)" "buy milk"
expect "GET /memos/2: none yet" "$(curl -s -o /dev/null -w '%{http_code}' "$PULSE_URL/memos/2")" "404"
expect "HEAD /memos/1" "$(curl -s -I -o /dev/null -w '%{http_code} %{size_download}' "$PULSE_URL/memos/1")" "200 0"
expect "DELETE /memos/1: 405 with Allow" \
  "$(curl -s -X DELETE -o /dev/null -w '%{http_code} %header{allow}' "$PULSE_URL/memos/1")" "405 GET, HEAD"
expect "GET /memos: 405 with Allow" \
  "$(curl -s -o /dev/null -w '%{http_code} %header{allow}' "$PULSE_URL/memos")" "405 POST"
expect "a body that is not JSON: 415" \
  "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' -d 'x' "$PULSE_URL/memos")" "415"

step "the OpenAPI entries and the metrics labels"
curl -s "$PULSE_URL/openapi.json" >"$work/openapi.json"
expect "the OpenAPI entries" "$(python3 - "$work/openapi.json" <<'PY'
import json, sys
paths = json.load(open(sys.argv[1]))["paths"]
whoami, memos, memo = paths["/whoami"], paths["/memos"], paths["/memos/{id}"]
post = memos["post"]
print(
    sorted(whoami), whoami["get"]["summary"], "|",
    sorted(memos), sorted(post["responses"]), "body" if "requestBody" in post else "no body",
    "Location" in post["responses"]["201"]["headers"], "|",
    sorted(memo), [p["name"] for p in memo["parameters"]], "404" in memo["get"]["responses"],
)
PY
)" "['get', 'head'] Who is asking | ['post'] ['201', '400', '408', '413', '415'] body True | ['get', 'head', 'parameters'] ['id'] True"
metrics="$(curl -s "$PULSE_URL/metrics")"
for series in 'method="GET",route="/whoami",status="200"' 'method="POST",route="/memos",status="201"' \
  'method="GET",route="/memos/{id}",status="404"'; do
  expect "metrics label $series" "$(grep -c "^http_requests_total{.*$series" <<<"$metrics")" 1
done
stop_pulse || die "the fork did not stop cleanly"

step "OPTIONS can be a row"
sed -i 's/^    Whoami: \[GET\]/    Whoami: [GET, OPTIONS]/' "$fork/src/routes/mod.rs"
cargo build --locked --quiet --manifest-path "$fork/Cargo.toml" --bin pulse
start_pulse "$CARGO_TARGET_DIR/debug/pulse" "$work/pulse-options.log"
expect "OPTIONS /whoami" "$(curl -s -X OPTIONS -o /dev/null -w '%{http_code}' "$PULSE_URL/whoami")" "200"
expect "POST /whoami: 405 with Allow" \
  "$(curl -s -X POST -o /dev/null -w '%{http_code} %header{allow}' "$PULSE_URL/whoami")" "405 GET, HEAD, OPTIONS"
expect "its OpenAPI methods" "$(curl -s "$PULSE_URL/openapi.json" |
  python3 -c 'import json, sys; print(sorted(json.load(sys.stdin)["paths"]["/whoami"]))')" "['get', 'head', 'options']"
stop_pulse || die "the fork did not stop cleanly"
sed -i 's/^    Whoami: \[GET, OPTIONS\]/    Whoami: [GET]/' "$fork/src/routes/mod.rs"

step "mistakes in a row are compile errors at the row"
# compile_error_at ROW_PATTERN REPLACEMENT EXPECTED: breaks the row, builds,
# and checks the error names EXPECTED at the row's line.
compile_error_at() {
  local table="$fork/src/routes/mod.rs" line log="$work/build.log"
  line="$(grep -n "$1" "$table" | cut -d: -f1)"
  [ -n "$line" ] || die "no row matches $1"
  cp "$table" "$work/table.rs"
  sed -i "${line}s/$1/$2/" "$table"
  if cargo build --locked --quiet --manifest-path "$fork/Cargo.toml" --lib >"$log" 2>&1; then
    die "a row with $2 compiled"
  fi
  grep -q "$3" "$log" || { cat "$log"; die "the error does not name $3"; }
  grep -q "src/routes/mod.rs:$line:" "$log" || { cat "$log"; die "the error does not point at line $line"; }
  info "$2: '$3' at src/routes/mod.rs:$line"
  cp "$work/table.rs" "$table"
}
compile_error_at 'Whoami: \[GET\]' 'Whoami: [POST]' MethodOfAReadyRow
compile_error_at 'Whoami: \[GET\]' 'Whoami: [GET, HEAD]' MethodOfARow
compile_error_at 'Memo: \[GET\]' 'Memo: [GET, PATCH]' MethodOfAReadyRow
# A row that an earlier one shadows: GET /status/{code} (a fault route) matches
# every path of /status/{id}.
compile_error_at 'Memo: \[GET\] \["memos", ' 'Memo: [GET] ["status", ' AnEarlierRowMatchesEveryPathOf
