"""What the property tests hold both servers to: the status codes each RPC documents, read
from the comments in proto/perllm/v1/*.proto, and the ranges of the proto's integer types.

Every RPC's comment names the codes it returns (CONVENTIONS.md); a code the proto does not
name is a failure of the code or of the proto. "Same codes as X" copies X's codes; OK is always
allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc
from hypothesis import strategies as st

# What a client can put in an int32, int64 or uint64 field.
INT32 = (-2**31, 2**31 - 1)
INT64 = (-2**63, 2**63 - 1)
UINT64 = (0, 2**64 - 1)
PROTO_DIR = Path(__file__).resolve().parents[2] / "proto" / "perllm" / "v1"
# Never a documented answer: a handler that raised (UNKNOWN) or a broken transport (INTERNAL).
NEVER = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})

_CODES = {code.name: code for code in grpc.StatusCode}
_RPC = re.compile(r"^\s*rpc\s+(\w+)\s*\(")
_SAME_AS = re.compile(r"Same codes as (\w+)")


def documented_codes(proto_file: str) -> dict[str, frozenset[grpc.StatusCode]]:
    """RPC name -> the codes its comment names (OK included), for one .proto in PROTO_DIR."""
    comment: list[str] = []
    codes: dict[str, frozenset[grpc.StatusCode]] = {}
    for line in (PROTO_DIR / proto_file).read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            comment.append(stripped[2:])
            continue
        match = _RPC.match(line)
        if match:
            text = " ".join(comment)
            named = {_CODES[w] for w in re.findall(r"\b[A-Z][A-Z_]+\b", text) if w in _CODES}
            for other in _SAME_AS.findall(text):
                named |= codes[other]
            codes[match.group(1)] = frozenset(named | {grpc.StatusCode.OK})
        comment = []
    if not codes:
        raise ValueError(f"no rpc found in {PROTO_DIR / proto_file}")
    bad = {rpc: sorted(c.name for c in allowed & NEVER) for rpc, allowed in codes.items()
           if allowed & NEVER}
    if bad:
        raise ValueError(f"{proto_file} documents codes a server must never return: {bad}")
    return codes


def wild_int(low: int, high: int) -> st.SearchStrategy[int]:
    """Any integer in [low, high], its ends, 0 and ±1 more often than chance would give."""
    edges = sorted({v for v in (0, -1, 1, low, high) if low <= v <= high})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))
