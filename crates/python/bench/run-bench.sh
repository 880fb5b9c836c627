#!/usr/bin/env bash
# The Python benchmarks of `cargo xtask bench`: builds the `vouch` package (release) into a venv
# under target/ with pinned peers, then runs bench/token_verify.py and bench/middleware.py.
# Usage: crates/python/bench/run-bench.sh [OUT_DIR]   (default: target/vouch-bench)
# Extra arguments for middleware.py go in VOUCH_MIDDLEWARE_ARGS (e.g. "--sides bare,envoys").
# Needs python3 >= 3.10 with venv, and network access to PyPI the first time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(cd "$here/.." && pwd)"
root="$(cd "$crate/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
out="${1:-$target/vouch-bench}"
venv="$target/python-bench-venv"
. "$crate/venv.sh"
make_venv "$venv"
# The peers are pinned exactly: the figures compare against these versions.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "maturin>=1.9,<2" \
    "biscuit-python==0.4.0" \
    "envoys==0.3.0" "envoys-mcp==0.1.1" \
    "uvicorn==0.54.0" "h11==0.16.0" "httpx==0.28.1"
export CARGO_TARGET_DIR="$target"
(cd "$crate" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release --quiet)
mkdir -p "$out"
"$venv/bin/python" "$here/token_verify.py" --out "$out/python-token-verify.json"
# shellcheck disable=SC2086 # VOUCH_MIDDLEWARE_ARGS is a list of words
"$venv/bin/python" "$here/middleware.py" --out "$out/python-middleware.json" ${VOUCH_MIDDLEWARE_ARGS:-}
