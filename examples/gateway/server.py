"""An MCP server that knows nothing about vouch, for `vouch gateway` to stand in front of.

A FastMCP server (the `mcp` package from PyPI, `mcp<2`) on the streamable HTTP transport at
http://127.0.0.1:PORT/mcp, with three tools:

- `whoami`: returns the `X-Vouch-Identity` header of the HTTP request that carried the call
  (the caller the gateway verified), or an empty string when there is none;
- `slow_count`: counts to `n`, sending a progress notification at each step;
- `delete_records`: a destructive tool (it only pretends), for a token that does not grant it.

Usage:

    python server.py [--port N] [--json] [--stateless]

`--port` (or the environment variable PORT; default 8000, 0 for any free port) sets the port;
`--json` (or JSON_RESPONSE=1) answers each POST with one JSON body instead of an SSE stream
(FastMCP's `json_response`); `--stateless` (or STATELESS_HTTP=1) keeps no sessions, so a
`tools/call` needs no `initialize` first (FastMCP's `stateless_http`). Once the port is bound
and listening it prints one line on stderr, `listening on http://127.0.0.1:PORT/mcp`, with the
actual port. It stops on SIGTERM or SIGINT.

The server listens on 127.0.0.1 only: anything that can reach it can send `X-Vouch-*` headers,
so only the gateway (on the same host) should be able to.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys

import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from mcp.types import ToolAnnotations

HOST = "127.0.0.1"
PATH = "/mcp"
MAX_COUNT = 100


def build(json_response: bool, stateless: bool) -> FastMCP:
    """Returns the FastMCP server with its three tools, not yet serving."""
    mcp = FastMCP(
        "vouch-gateway-example",
        host=HOST,
        streamable_http_path=PATH,
        json_response=json_response,
        stateless_http=stateless,
        log_level="WARNING",
    )

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def whoami(ctx: Context) -> str:
        """Returns the caller's identity as the gateway verified it (X-Vouch-Identity)."""
        # On the streamable HTTP transport the request context carries the Starlette request
        # that delivered this call; on stdio there is none.
        request = ctx.request_context.request
        if request is None:
            return ""
        return request.headers.get("x-vouch-identity", "")

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
    async def slow_count(ctx: Context, n: int = 5, delay_ms: int = 100) -> str:
        """Counts to n (at most 100), one step every delay_ms, reporting progress at each."""
        n = max(0, min(n, MAX_COUNT))
        delay = max(0, min(delay_ms, 1000)) / 1000
        for i in range(1, n + 1):
            await asyncio.sleep(delay)
            await ctx.report_progress(i, n, f"counted {i} of {n}")
        return f"counted to {n}"

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
    def delete_records(table: str) -> str:
        """Deletes every record of a table (this example only pretends)."""
        return f"deleted every record of {table}"

    return mcp


def flag(name: str) -> bool:
    """True if the environment variable `name` is set to 1, true or yes."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def bind(port: int) -> socket.socket:
    """Binds 127.0.0.1:port (0: any free port), or exits with one line on stderr."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as e:
        sock.close()
        print(f"server.py: cannot listen on {HOST}:{port}: {e.strerror}", file=sys.stderr)
        sys.exit(1)
    return sock


async def serve(mcp: FastMCP, sock: socket.socket) -> None:
    """Serves on `sock` until SIGTERM or SIGINT; prints the listening line once it accepts."""
    config = uvicorn.Config(
        mcp.streamable_http_app(),
        log_level="warning",
        # An SSE stream still open at shutdown is cut after this long.
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        port = sock.getsockname()[1]
        print(f"listening on http://{HOST}:{port}{PATH}", file=sys.stderr, flush=True)
    await task


def main() -> None:
    """Parses the command line and runs the server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "8000")),
        help="the port on 127.0.0.1 (default: $PORT or 8000; 0 for any free port)",
    )
    parser.add_argument(
        "--json",
        "--json-response",
        dest="json_response",
        action="store_true",
        default=flag("JSON_RESPONSE"),
        help="answer POSTs with JSON bodies, not SSE streams (or JSON_RESPONSE=1)",
    )
    parser.add_argument(
        "--stateless",
        action="store_true",
        default=flag("STATELESS_HTTP"),
        help="keep no sessions (or STATELESS_HTTP=1)",
    )
    args = parser.parse_args()
    sock = bind(args.port)
    asyncio.run(serve(build(args.json_response, args.stateless), sock))


if __name__ == "__main__":
    main()
