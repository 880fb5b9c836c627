#!/usr/bin/env bash
# Builds the `vouch` Python package into a venv under target/ and runs its pytest suite.
# Usage: crates/python/run-tests.sh [pytest args...]   (from anywhere in the workspace)
# Needs python3 >= 3.10 with venv, network access to PyPI (maturin, pytest, starlette, fastapi,
# uvicorn, httpx), and redis-server on PATH (the Redis tests start their own).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/python-venv"
. "$here/venv.sh"
make_venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "maturin>=1.9,<2" "pytest>=8" "mypy>=1.10" \
    "httpx>=0.27,<1" "mcp>=1.20,<2" "anyio>=4,<5" "uvicorn>=0.30,<1" "fastapi>=0.115,<1" \
    "starlette>=0.40,<1" "envoys-mcp>=0.1.1,<0.2"
# maturin builds the abi3 extension with cargo (into $CARGO_TARGET_DIR) and installs it
# into the venv, with the pure-Python half from python/.
export CARGO_TARGET_DIR="$target"
(cd "$here" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --quiet)
# The tests check Python-signed requests with the real `vouch` command (and sign requests for
# the middleware with `vouch sign`), and talk MCP through `vouch gateway` and to the protected
# rmcp example: build both into the same target dir (tests/asgi_support.py and the signer tests
# find them there, or the CLI at $VOUCH_BIN, and fail if they are missing).
(cd "$root" && cargo build --quiet -p vouch-cli --bin vouch)
(cd "$root" && cargo build --quiet -p vouch-examples --example protected_server)
# The stubs must match the module as built (names, signatures, classes).
(cd "$here" && "$venv/bin/python" -m mypy.stubtest vouch)
exec "$venv/bin/python" -m pytest "$here/tests" "$@"
