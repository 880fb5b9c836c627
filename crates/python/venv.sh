# Sourced by run-tests.sh and bench/run-bench.sh: `make_venv DIR` makes (or keeps) a venv at DIR
# from $PYTHON (default python3), which must be CPython >= 3.10 with the venv module.
make_venv() {
    local venv="$1" python="${PYTHON:-python3}"
    if ! command -v "$python" > /dev/null; then
        echo "$python not found: the vouch package needs CPython >= 3.10 with venv" >&2
        return 1
    fi
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "$python is older than 3.10 (the vouch package needs CPython >= 3.10)" >&2
        return 1
    fi
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
    fi
}
