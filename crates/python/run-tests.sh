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
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "run-tests.sh: $python is older than 3.10" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "maturin>=1.9,<2" "pytest>=8" "mypy>=1.10" \
    "starlette>=0.40,<1" "fastapi>=0.115,<1" "uvicorn>=0.30,<1" "httpx>=0.27,<1" \
    "envoys-mcp>=0.1.1,<0.2" "mcp>=1.20,<2"
# maturin builds the abi3 extension with cargo (into $CARGO_TARGET_DIR) and installs it
# into the venv, with the pure-Python half from python/.
export CARGO_TARGET_DIR="$target"
(cd "$here" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --quiet)
# The middleware tests sign requests with the real CLI (`vouch sign`), found here by
# tests/asgi_support.py (or at $VOUCH_BIN).
if [ -z "${VOUCH_BIN:-}" ]; then
    (cd "$root" && cargo build --quiet -p vouch-cli --bin vouch)
fi
# The stubs must match the module as built (names, signatures, classes).
(cd "$here" && "$venv/bin/python" -m mypy.stubtest vouch)
exec "$venv/bin/python" -m pytest "$here/tests" "$@"
