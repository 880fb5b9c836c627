#!/usr/bin/env python3
"""examples/gateway/server.py, run unchanged, with a record of every HTTP request it receives.

    python recording_upstream.py SERVER_PY RECORD.jsonl [server.py's arguments...]

The end-to-end tests (e2e.py) must see what reaches the upstream: which `X-Vouch-*` fields, that
no token header and no client signature got through, and that a refused request never arrived.
server.py logs nothing per request, so this wrapper puts an ASGI middleware around the app
FastMCP builds (FastMCP.streamable_http_app) and then runs server.py's own `main()` with the
remaining arguments: same tools, same flags, same uvicorn setup, same startup line.

Each request's head is appended to RECORD.jsonl before the app sees it, one JSON object a line:
{"method": ..., "path": ..., "headers": [[name, value], ...]} (names lowercased, in order,
repeated fields kept).
"""
from __future__ import annotations

import importlib.util
import json
import sys


class Recorder:
    """ASGI middleware: records each HTTP request's head, then hands the request on unchanged."""

    def __init__(self, app, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http":
            entry = {
                "method": scope.get("method"),
                "path": scope.get("path"),
                "headers": [[k.decode("latin-1").lower(), v.decode("latin-1")]
                            for k, v in scope.get("headers", [])],
            }
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        await self.app(scope, receive, send)


def main() -> None:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    server_py, record = sys.argv[1], sys.argv[2]
    spec = importlib.util.spec_from_file_location("gateway_example_server", server_py)
    if spec is None or spec.loader is None:
        print(f"cannot load {server_py}", file=sys.stderr)
        sys.exit(2)
    server = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(server)

    from mcp.server.fastmcp import FastMCP

    build_app = FastMCP.streamable_http_app

    def recording_app(self):
        return Recorder(build_app(self), record)

    FastMCP.streamable_http_app = recording_app
    sys.argv = [server_py, *sys.argv[3:]]
    server.main()


if __name__ == "__main__":
    main()
