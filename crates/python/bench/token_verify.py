"""Token verify from Python: `vouch.verify` against `biscuit-python` (PyPI 0.4.0, `biscuit_auth`).

Both verify the same MCP-shaped 3-block token, each in its library's own terms:
  authority  issuer auth-server, subject agent-a; tools db_query (read, write; max_rows 100),
             file_read (read), search; expires in 1 h
  block 2    tools narrowed to db_query and search; expires in 30 min
  block 3    tools narrowed to db_query; expires in 15 min
and decide a tools/call of db_query (operation read): both must accept it, and both must refuse
file_read (granted by the authority block, narrowed away by block 2) and admin (never granted).
One verify = decode the token from its text, check every signature, decide, and hand the result
to Python (vouch: the facts dict; biscuit: a Biscuit and an Authorizer built from the request's
facts and the policy, then authorize()). The figure is cold: the calls cycle through 1024
distinct tokens of that shape (the third block differs), more than vouch's cache of checked
tokens holds. Warm, the same token verified again, is printed too: vouch then checks no
signature (its Rust layers cache checked tokens the same way); biscuit-python has no such cache.

    python token_verify.py [--out FILE.json] [--rounds N] [--iterations N]

Prints the time per verify of each and the ratio vouch/biscuit (goal <= 0.7).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import biscuit_auth as ba

import vouch

GOAL = 0.7
# Distinct tokens per library, more than vouch's cache of checked tokens holds.
DISTINCT = 1024

AUTHORITY = """
issuer("auth-server");
subject("agent-a");
tool("db_query");
tool("file_read");
tool("search");
operation("db_query", "read");
operation("db_query", "write");
operation("file_read", "read");
limit("db_query", "max_rows", 100);
check if time($t), $t < {expires};
"""
BLOCK_2 = """
check if requested_tool("db_query") or requested_tool("search");
check if time($t), $t < {expires};
"""
BLOCK_3 = """
check if requested_tool("db_query");
check if time($t), $t < {expires};
"""
# What the server knows about the request, and its policy: the tool and the operation must be
# granted by the authority block (every tool this bench calls has operation facts).
AUTHORIZER = """
time({now});
requested_tool({tool});
requested_operation({op});
allow if tool($tool), requested_tool($tool), operation($tool, $op), requested_operation($op);
"""


def biscuit_side(now: datetime, count: int) -> tuple[list[str], Callable[[str, str], object]]:
    """`count` distinct tokens (the third block differs), and a verify of one for a tool."""
    root = ba.KeyPair()
    token = ba.BiscuitBuilder(AUTHORITY, {"expires": now + timedelta(hours=1)}).build(
        root.private_key
    )
    token = token.append(ba.BlockBuilder(BLOCK_2, {"expires": now + timedelta(minutes=30)}))
    third = {"expires": now + timedelta(minutes=15)}
    texts = [token.append(ba.BlockBuilder(BLOCK_3, third)).to_base64() for _ in range(count)]
    public = root.public_key
    limits = ba.AuthorizerBuilder().limits()
    limits.max_time = timedelta(seconds=1)

    def verify(text: str, tool: str) -> object:
        parsed = ba.Biscuit.from_base64(text, public)
        builder = ba.AuthorizerBuilder(AUTHORIZER, {"now": now, "tool": tool, "op": "read"})
        # The default 1 ms Datalog time limit trips when this shared machine preempts the
        # process mid-run; the work is the same with a roomier limit.
        builder.set_limits(limits)
        return builder.build(parsed).authorize()

    return texts, verify


def vouch_side(count: int) -> tuple[list[str], Callable[[str, str], object]]:
    """`count` distinct tokens (the third block differs), and a verify of one for a tool."""
    private, public = vouch.generate_keypair()
    token = vouch.mint(
        private,
        {
            "issuer": "auth-server",
            "subject": "agent-a",
            "tools": ["db_query", "file_read", "search"],
            "operations": {"db_query": ["read", "write"], "file_read": ["read"]},
            "resource_limits": {"db_query": {"max_rows": 100}},
            "ttl": 3600,
        },
    )
    token = vouch.attenuate(token, public, {"tools": ["db_query", "search"], "ttl": 1800})
    third = {"tools": ["db_query"], "ttl": 900}
    texts = [vouch.attenuate(token, public, third) for _ in range(count)]

    def verify(text: str, tool: str) -> object:
        return vouch.verify(text, public, tool=tool, op="read")

    return texts, verify


def refuses(verify: Callable[[str, str], object], text: str, tool: str) -> bool:
    try:
        verify(text, tool)
    except (vouch.Forbidden, ba.AuthorizationError):
        return True
    return False


def per_call_ns(
    fns: list[Callable[[], object]], rounds: int, iterations: int
) -> list[float]:
    """For each function, the median over `rounds` of the mean time of one call in a round of
    `iterations`. The functions' rounds alternate, so that both see the same machine (it is
    shared: a load that comes and goes between two sequential runs would skew their ratio)."""
    for fn in fns:
        for _ in range(iterations):
            fn()
    means: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, out in zip(fns, means):
            start = time.perf_counter_ns()
            for _ in range(iterations):
                fn()
            out.append((time.perf_counter_ns() - start) / iterations)
    return [statistics.median(m) for m in means]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=1000)
    args = parser.parse_args()

    now = datetime.now(timezone.utc).replace(microsecond=0)
    # More distinct tokens than vouch's cache of checked tokens holds (512): cycling through
    # them, every verify is cold (signatures checked); the same token again is warm (vouch
    # checks its signatures once, as its Rust layers do; biscuit-python has no such cache).
    b_texts, b_verify = biscuit_side(now, DISTINCT)
    v_texts, v_verify = vouch_side(DISTINCT)
    assert len(set(b_texts)) == len(set(v_texts)) == DISTINCT

    # Both accept the allowed call and refuse the others, or nothing is measured.
    facts = v_verify(v_texts[0], "db_query")
    assert isinstance(facts, dict) and facts["tools"] == ["db_query"], facts
    assert facts["delegation_depth"] == 2, facts
    b_verify(b_texts[0], "db_query")
    for tool in ("file_read", "admin"):
        assert refuses(v_verify, v_texts[1], tool), f"vouch accepted {tool}"
        assert refuses(b_verify, b_texts[1], tool), f"biscuit accepted {tool}"

    def cycling(texts: list[str], verify: Callable[[str, str], object]) -> Callable[[], object]:
        it = itertools.cycle(texts)
        return lambda: verify(next(it), "db_query")

    vouch_ns, biscuit_ns, vouch_warm_ns = per_call_ns(
        [
            cycling(v_texts, v_verify),
            cycling(b_texts, b_verify),
            lambda: v_verify(v_texts[0], "db_query"),
        ],
        args.rounds,
        args.iterations,
    )
    ratio = vouch_ns / biscuit_ns
    result = {
        "vouch_ns": vouch_ns,
        "biscuit_ns": biscuit_ns,
        "ratio": ratio,
        "vouch_warm_ns": vouch_warm_ns,
        "warm_ratio": vouch_warm_ns / biscuit_ns,
        "goal": GOAL,
        "vouch_token_chars": len(v_texts[0]),
        "biscuit_token_chars": len(b_texts[0]),
        "rounds": args.rounds,
        "iterations": args.iterations,
    }
    print(
        f"token verify from Python (3 blocks, tools/call db_query): "
        f"vouch {vouch_ns / 1e3:.2f} µs, biscuit-python {biscuit_ns / 1e3:.2f} µs, "
        f"vouch/biscuit {ratio:.3f} (goal <= {GOAL}); the same vouch token again "
        f"(signatures checked once) {vouch_warm_ns / 1e3:.2f} µs, "
        f"{vouch_warm_ns / biscuit_ns:.3f} of biscuit"
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
