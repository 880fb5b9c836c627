#!/usr/bin/env bash
# vouch gateway in front of a Python FastMCP server, end to end on 127.0.0.1.
#
#   examples/gateway/run.sh
#
# 1. makes a venv under target/examples-venv and installs `mcp<2` from PyPI (once);
# 2. builds the `vouch` command and, with it, writes an agent key, a token root key, a root
#    token, and a token attenuated for the agent (bound to its keyid), into target/examples/gateway/;
# 3. starts server.py (port 8000) and `vouch gateway --config examples/gateway/vouch.toml`
#    (port 8080);
# 4. talks MCP to the gateway with curl, every request a raw request signed by `vouch sign` and
#    carrying the attenuated token: initialize, tools/list (filtered by the token), whoami
#    (allowed: the server answers with the identity the gateway verified), slow_count (allowed:
#    its progress notifications stream through), delete_records (refused by the gateway, 403,
#    before the server sees it);
# 5. stops both processes when it exits, however it exits; exits 1 if any outcome was not the
#    expected one.
#
# Other ports: UPSTREAM_PORT=9000 GATEWAY_PORT=9080 examples/gateway/run.sh (passed to the gateway
# as --upstream and --listen, which override the config file).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
HERE=examples/gateway
WORK=target/examples/gateway # the keys, tokens, requests and logs; vouch.toml points here
VENV=target/examples-venv
UPSTREAM_PORT=${UPSTREAM_PORT:-8000}
GATEWAY_PORT=${GATEWAY_PORT:-8080}
GATEWAY=http://127.0.0.1:$GATEWAY_PORT/mcp
AGENT=https://agents.example/agents/worker@agents.example

step() { printf '\n== %s\n' "$*"; }

SERVER_PID=
GATEWAY_PID=
stop() {
    # SIGTERM: the gateway drains the requests in flight, then both exit.
    for pid in $GATEWAY_PID $SERVER_PID; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $GATEWAY_PID $SERVER_PID; do
        wait "$pid" 2>/dev/null || true
    done
}
trap stop EXIT
trap 'exit 130' INT TERM

# Waits up to 30 s until FILE contains PATTERN; fails if process PID died first.
wait_for() {
    local file=$1 pattern=$2 pid=$3 name=$4
    for _ in $(seq 300); do
        grep -q "$pattern" "$file" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited:" >&2
            cat "$file" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$name did not start within 30 s:" >&2
    cat "$file" >&2
    exit 1
}

step "python venv ($VENV) with mcp<2"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import mcp.server.fastmcp' 2>/dev/null; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'mcp<2'
fi
"$VENV/bin/python" -c 'import importlib.metadata as m; print("mcp", m.version("mcp"))'

step "cargo build -p vouch-cli"
cargo build --quiet -p vouch-cli
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 |
    "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
VOUCH=$TARGET_DIR/debug/vouch
vouch() { "$VOUCH" "$@"; }

step "keys and tokens in $WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
# The agent's key signs its requests; the gateway knows its public key (vouch.toml: agent).
echo "agent key:  $(vouch keygen --out "$WORK/agent.pem")"
vouch pubkey --key "$WORK/agent.pem" --format pem >"$WORK/agent.pub"
# The token root: whoever holds it grants rights; the gateway trusts its public key (root).
echo "root key:   $(vouch keygen --out "$WORK/root.pem")"
vouch pubkey --key "$WORK/root.pem" --format pem >"$WORK/root.pub"
# A root token for the team: all three tools, for an hour.
vouch mint --key "$WORK/root.pem" --issuer example-auth --subject team-a \
    --tools whoami,slow_count,delete_records --ttl 3600 >"$WORK/root.tok"
# Narrowed offline for the worker agent: no delete_records, reads only, ten minutes, and usable
# only in requests the agent itself signs.
vouch attenuate --token - --pubkey "$WORK/root.pub" --tools whoami,slow_count \
    --op whoami:read --op slow_count:read --ttl 600 --bind "$AGENT" \
    <"$WORK/root.tok" >"$WORK/worker.tok"
vouch inspect --token - <"$WORK/worker.tok"

step "server.py on 127.0.0.1:$UPSTREAM_PORT"
"$VENV/bin/python" "$HERE/server.py" --port "$UPSTREAM_PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
wait_for "$WORK/server.log" "listening on" "$SERVER_PID" server.py
cat "$WORK/server.log"

step "vouch gateway --config $HERE/vouch.toml"
gateway_flags=(--config "$HERE/vouch.toml")
[ "$UPSTREAM_PORT" = 8000 ] || gateway_flags+=(--upstream "http://127.0.0.1:$UPSTREAM_PORT/mcp")
[ "$GATEWAY_PORT" = 8080 ] || gateway_flags+=(--listen "127.0.0.1:$GATEWAY_PORT")
# The binary itself, not the shell function: $! must be the gateway's own pid for stop().
"$VOUCH" gateway "${gateway_flags[@]}" >"$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
wait_for "$WORK/gateway.log" "vouch gateway: listening" "$GATEWAY_PID" "vouch gateway"
head -n 1 "$WORK/gateway.log"

TOKEN=$(cat "$WORK/worker.tok")
SESSION=
N=0
UNEXPECTED=0
# expect WANT GOT WHAT: notes an outcome that is not the expected one.
expect() {
    if [ "$1" != "$2" ]; then
        echo "   UNEXPECTED: $3 should be $1, was $2"
        UNEXPECTED=1
    fi
}

# call STATUS BODY: writes a raw HTTP request for BODY, signs it with `vouch sign` (the MCP
# profile: @method, @target-uri, Content-Digest, the token and MCP headers), sends it with curl
# exactly as signed, prints the status and each message of the response, and checks the status.
call() {
    local want=$1 body=$2 req head line status
    N=$((N + 1))
    req=$WORK/request-$N
    printf '%s' "$body" >"$req.body"
    {
        printf 'POST /mcp HTTP/1.1\n'
        printf 'Host: 127.0.0.1:%s\n' "$GATEWAY_PORT"
        printf 'Content-Type: application/json\n'
        printf 'Accept: application/json, text/event-stream\n'
        printf 'X-Mcpvault-Token: %s\n' "$TOKEN"
        if [ -n "$SESSION" ]; then
            printf 'Mcp-Session-Id: %s\n' "$SESSION"
            printf 'Mcp-Protocol-Version: 2025-06-18\n'
        fi
        printf 'Content-Length: %s\n\n' "$(wc -c <"$req.body" | tr -d ' ')"
        printf '%s' "$body"
    } >"$req.http"
    vouch sign --key "$WORK/agent.pem" --keyid "$AGENT" --scheme http "$req.http" >"$req.signed"
    # The signed head becomes curl's header fields (the request line is curl's own); the body
    # is sent byte for byte.
    head=()
    while IFS= read -r line; do
        [ -z "$line" ] && break
        head+=(-H "$line")
    done < <(tail -n +2 "$req.signed")
    curl --silent --show-error --no-buffer -D "$req.response-head" -o "$req.response" \
        -X POST "${head[@]}" --data-binary "@$req.body" "$GATEWAY"
    status=$(head -n 1 "$req.response-head" | tr -d '\r')
    echo "-> $status"
    "$VENV/bin/python" - "$req.response" <<'PY'
# Prints each JSON-RPC message of the response (a JSON body or SSE `data:` lines) in one line.
import json, sys
text = open(sys.argv[1], encoding="utf-8").read()
datas = [l[5:].strip() for l in text.splitlines() if l.startswith("data:")]
for raw in datas or ([text] if text.strip() else []):
    try:
        m = json.loads(raw)
    except ValueError:
        m = None
    if not isinstance(m, dict) or "jsonrpc" not in m:
        # Not JSON-RPC: the gateway's own refusal, as it was sent.
        print("   " + raw.strip())
        continue
    r = m.get("result") or {}
    if "tools" in r:
        print("   tools:", ", ".join(t["name"] for t in r["tools"]))
    elif "content" in r:
        print("   result:", " ".join(c.get("text", "") for c in r["content"]))
    elif "serverInfo" in r:
        print("   server:", r["serverInfo"]["name"], "protocol", r["protocolVersion"])
    elif m.get("method") == "notifications/progress":
        print("   progress:", m["params"].get("message"))
    else:
        print("   " + json.dumps(m))
PY
    expect "$want" "$(echo "$status" | cut -d' ' -f2)" "the status"
}

step "initialize (signed, with the worker's token)"
call 200 '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"run.sh","version":"0"}}}'
SESSION=$(grep -i '^mcp-session-id:' "$WORK/request-$N.response-head" | cut -d: -f2 | tr -d ' \r')
echo "   session $SESSION"
call 202 '{"jsonrpc":"2.0","method":"notifications/initialized"}'

step "tools/list: the gateway keeps only the tools the token grants"
call 200 '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'
grep -q '"delete_records"' "$WORK/request-$N.response" &&
    expect "whoami, slow_count" "a list with delete_records" "the listing"

step "whoami: allowed; the server sees the identity the gateway verified (X-Vouch-Identity)"
call 200 '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
grep -q '"text":"worker@agents.example"' "$WORK/request-$N.response" ||
    expect worker@agents.example "something else" "whoami's answer"

step "slow_count: allowed; progress notifications stream through the gateway"
call 200 '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"slow_count","arguments":{"n":3},"_meta":{"progressToken":"count-1"}}}'

step "delete_records: refused by the gateway (not in the token); server.py never sees it"
call 403 '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"delete_records","arguments":{"table":"orders"}}}'

step "an unsigned request: refused by the gateway"
status=$(curl --silent --show-error -o "$WORK/unsigned.response" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H "X-Mcpvault-Token: $TOKEN" -H "Mcp-Session-Id: $SESSION" \
    --data-binary '{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"whoami","arguments":{}}}' \
    "$GATEWAY")
echo "-> HTTP $status"
echo "   $(cat "$WORK/unsigned.response")"
expect 401 "$status" "the status"

step "the gateway's decisions ($WORK/gateway.log)"
grep ' decision ' "$WORK/gateway.log" | sed 's/.* decision //' || true

if [ "$UNEXPECTED" = 0 ]; then
    printf '\nevery outcome as expected\n'
else
    printf '\nsome outcomes were not the expected ones (see UNEXPECTED above)\n'
    exit 1
fi
