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
# step, start/stop_all (on exit), wait_for, ensure_venv, build_vouch, signed_call, expect, finish
source "$HERE/lib.sh"

step "python venv ($VENV) with mcp<2"
ensure_venv 'import mcp.server.fastmcp' 'mcp<2'
"$VENV/bin/python" -c 'import importlib.metadata as m; print("mcp", m.version("mcp"))'

step "cargo build -p vouch-cli"
build_vouch

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
start server.py "$WORK/server.log" "$VENV/bin/python" "$HERE/server.py" --port "$UPSTREAM_PORT"
wait_for "$WORK/server.log" "listening on" "$PID" server.py
cat "$WORK/server.log"

step "vouch gateway --config $HERE/vouch.toml"
gateway_flags=(--config "$HERE/vouch.toml")
[ "$UPSTREAM_PORT" = 8000 ] || gateway_flags+=(--upstream "http://127.0.0.1:$UPSTREAM_PORT/mcp")
[ "$GATEWAY_PORT" = 8080 ] || gateway_flags+=(--listen "127.0.0.1:$GATEWAY_PORT")
# The binary itself, not the shell function: the pid must be the gateway's own for stop_all.
start "vouch gateway" "$WORK/gateway.log" "$VOUCH" gateway "${gateway_flags[@]}"
wait_for "$WORK/gateway.log" "vouch gateway: listening" "$PID" "vouch gateway"
head -n 1 "$WORK/gateway.log"

# signed_call signs as the worker agent, with its token.
KEY=$WORK/agent.pem
KEYID=$AGENT
TOKEN=$(cat "$WORK/worker.tok")
SESSION=

step "initialize (signed, with the worker's token)"
signed_call 200 "$GATEWAY" '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"run.sh","version":"0"}}}'
SESSION=$(grep -i '^mcp-session-id:' "$WORK/request-$N.response-head" | cut -d: -f2 | tr -d ' \r')
echo "   session $SESSION"
signed_call 202 "$GATEWAY" '{"jsonrpc":"2.0","method":"notifications/initialized"}'

step "tools/list: the gateway keeps only the tools the token grants"
signed_call 200 "$GATEWAY" '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'
grep -q '"delete_records"' "$WORK/request-$N.response" &&
    expect "whoami, slow_count" "a list with delete_records" "the listing"

step "whoami: allowed; the server sees the identity the gateway verified (X-Vouch-Identity)"
signed_call 200 "$GATEWAY" '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
grep -q '"text":"worker@agents.example"' "$WORK/request-$N.response" ||
    expect worker@agents.example "something else" "whoami's answer"

step "slow_count: allowed; progress notifications stream through the gateway"
signed_call 200 "$GATEWAY" '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"slow_count","arguments":{"n":3},"_meta":{"progressToken":"count-1"}}}'

step "delete_records: refused by the gateway (not in the token); server.py never sees it"
signed_call 403 "$GATEWAY" '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"delete_records","arguments":{"table":"orders"}}}'

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

finish
