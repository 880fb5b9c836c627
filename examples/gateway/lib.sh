# Shell functions the examples' run.sh scripts share (examples/gateway/run.sh,
# examples/envoy/run.sh): sourced, never run. Bash, with `set -euo pipefail`.
#
# Uses, once the caller sets them: WORK (the scratch directory), VENV (the Python venv), VOUCH
# (the vouch binary, set by build_vouch), and for signed_call KEY, KEYID, TOKEN, and SESSION
# (empty for none).

step() { printf '\n== %s\n' "$*"; }

# start NAME LOG COMMAND...: runs COMMAND in the background (its output in LOG) and remembers
# its pid in PID; stop_all, run on exit, stops every process started so, the last one first.
PIDS=()
start() {
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    echo "$name: pid $PID, log $log"
}
stop_all() {
    local i
    # SIGTERM: a gateway drains the requests in flight, then everything exits.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[$i]}" 2>/dev/null || true
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        wait "${PIDS[$i]}" 2>/dev/null || true
    done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# wait_for FILE PATTERN PID NAME: waits up to 30 s until FILE contains PATTERN; fails if
# process PID died first.
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

# ensure_venv CHECK PACKAGE...: makes the venv $VENV when missing, and installs the packages
# from PyPI unless the Python statement CHECK already succeeds in it.
ensure_venv() {
    local check=$1
    shift
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -c "$check" 2>/dev/null; then
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "$@"
    fi
}

# build_vouch: builds the vouch command and sets VOUCH to it.
build_vouch() {
    cargo build --quiet -p vouch-cli
    local target_dir
    target_dir=$(cargo metadata --no-deps --format-version 1 |
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    VOUCH=$target_dir/debug/vouch
}
vouch() { "$VOUCH" "$@"; }

N=0
UNEXPECTED=0
# expect WANT GOT WHAT: notes an outcome that is not the expected one.
expect() {
    if [ "$1" != "$2" ]; then
        echo "   UNEXPECTED: $3 should be $1, was $2"
        UNEXPECTED=1
    fi
}

# signed_call STATUS URL BODY: writes a raw HTTP request for BODY (POST to URL), signs it with
# `vouch sign` (the MCP profile: @method, @target-uri, Content-Digest, the token and MCP headers)
# as KEYID with KEY, sends it with curl exactly as signed, prints the status and each message of
# the response, and checks the status. The files are $WORK/request-N.* (N counts the calls).
signed_call() {
    local want=$1 url=$2 body=$3 req authority path
    authority=${url#http://}
    authority=${authority%%/*}
    path=/${url#http://*/}
    N=$((N + 1))
    req=$WORK/request-$N
    printf '%s' "$body" >"$req.body"
    {
        printf 'POST %s HTTP/1.1\n' "$path"
        printf 'Host: %s\n' "$authority"
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
    vouch sign --key "$KEY" --keyid "$KEYID" --scheme http "$req.http" >"$req.signed"
    send_signed "$want" "$url" "$req"
}

# send_signed STATUS URL REQ: sends the signed request REQ.signed (body REQ.body) to URL with
# curl, prints the outcome and checks the status. Used by signed_call, and to send the same
# signed request again.
send_signed() {
    local want=$1 url=$2 req=$3 head line status
    # The signed head becomes curl's header fields (the request line is curl's own); the body
    # is sent byte for byte.
    head=()
    while IFS= read -r line; do
        [ -z "$line" ] && break
        head+=(-H "$line")
    done < <(tail -n +2 "$req.signed")
    curl --silent --show-error --no-buffer -D "$req.response-head" -o "$req.response" \
        -X POST "${head[@]}" --data-binary "@$req.body" "$url"
    status=$(head -n 1 "$req.response-head" | tr -d '\r')
    echo "-> $status"
    print_messages "$req.response"
    expect "$want" "$(echo "$status" | cut -d' ' -f2)" "the status"
}

# print_messages FILE: each JSON-RPC message of a response (a JSON body or SSE `data:` lines)
# in one line; anything else (a refusal) as it was sent.
print_messages() {
    "$VENV/bin/python" - "$1" <<'PY'
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
}

# finish: the verdict line; exits 1 if any outcome was not the expected one.
finish() {
    if [ "$UNEXPECTED" = 0 ]; then
        printf '\nevery outcome as expected\n'
    else
        printf '\nsome outcomes were not the expected ones (see UNEXPECTED above)\n'
        exit 1
    fi
}
