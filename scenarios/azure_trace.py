"""The Azure LLM inference trace (Patel et al., "Splitwise", ISCA 2024; CC-BY 4.0), read for
both worlds: the emulated runner and the simulator generate their workload from it alike.

A file is `TIMESTAMP,ContextTokens,GeneratedTokens` with that header (the columns in any
order), one request per row, sorted by time: TIMESTAMP like `2023-11-16 18:15:46.6805900`
(any number of fractional digits, or none; `T` may separate date and time), the token counts
non-negative integers. Times count from the file's first row. A malformed row is an error
naming `file:line`; nothing is skipped silently (blank lines aside).

A window picks the rows to replay, all in the trace's own seconds: from `start_s` after the
first row, for `duration_s` (None: to the end) and at most `count` rows (None: all), whichever
ends first. The window's arrival times count from `start_s` and are then multiplied by
`time_scale`: 0.5 halves every gap between arrivals (twice the request rate), 2.0 doubles
them (half the rate); the token counts are untouched.

A parsed file is cached on (path, modification time, size): the simulator generates the same
workload once per policy and reads the file once.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np

from scenarios.spec import resolve_data_path

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?")


@dataclass(frozen=True)
class AzureTrace:
    """Rows of a trace (or of a window of it) as read-only arrays, in arrival order."""

    path: Path
    arrival_s: np.ndarray  # seconds from the first row (from the window start for a window)
    context_tokens: np.ndarray  # prompt tokens the model prefills
    generated_tokens: np.ndarray  # the true output length

    def __len__(self) -> int:
        return len(self.arrival_s)


def _timestamp_ns(text: str, where: str) -> int:
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"{where}: TIMESTAMP {text!r} is not YYYY-MM-DD HH:MM:SS[.fraction]")
    *fields, fraction = match.groups()
    try:
        moment = datetime(*map(int, fields), tzinfo=timezone.utc)
    except ValueError as exc:
        raise ValueError(f"{where}: TIMESTAMP {text!r} is not a date and time: {exc}") from None
    # Integer nanoseconds: a float of seconds since 1970 keeps only ~0.2 µs of the fraction.
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return int(moment.timestamp()) * 1_000_000_000 + nanos


def _tokens(text: str, column: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{where}: {column} {text!r} is not an integer") from None
    if value < 0:
        raise ValueError(f"{where}: {column} must be >= 0, got {value}")
    return value


@lru_cache(maxsize=8)
def _parse(path: str, mtime_ns: int, size: int) -> AzureTrace:
    """One file, parsed once per (path, mtime, size); see the module docstring for the rules."""
    del mtime_ns, size  # the cache key only: a changed file is read again
    times: list[int] = []
    context: list[int] = []
    generated: list[int] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: a BOM is no column name
        reader = csv.reader(fh)
        header = [cell.strip() for cell in next(reader, [])]
        if sorted(header) != sorted(COLUMNS):
            raise ValueError(f"{path}:1: expected the header {','.join(COLUMNS)} (any order), "
                             f"got {','.join(header) or 'an empty file'!r}")
        at = {name: header.index(name) for name in COLUMNS}
        for raw in reader:
            if not any(cell.strip() for cell in raw):
                continue
            where = f"{path}:{reader.line_num}"
            if len(raw) != len(COLUMNS):
                raise ValueError(f"{where}: expected {len(COLUMNS)} fields "
                                 f"({','.join(header)}), got {len(raw)}: {','.join(raw)!r}")
            cells = [cell.strip() for cell in raw]
            stamp = _timestamp_ns(cells[at["TIMESTAMP"]], where)
            if times and stamp < times[-1]:
                raise ValueError(f"{where}: TIMESTAMP {cells[at['TIMESTAMP']]!r} is before the "
                                 f"previous row's; the trace must be sorted by time")
            times.append(stamp)
            context.append(_tokens(cells[at["ContextTokens"]], "ContextTokens", where))
            generated.append(_tokens(cells[at["GeneratedTokens"]], "GeneratedTokens", where))
    if not times:
        raise ValueError(f"{path}: the trace has a header but no rows")
    stamps = np.array(times, dtype=np.int64)
    return _frozen(Path(path), (stamps - stamps[0]) / 1e9, np.array(context, dtype=np.int64),
                   np.array(generated, dtype=np.int64))


def _frozen(path: Path, arrival_s: np.ndarray, context: np.ndarray,
            generated: np.ndarray) -> AzureTrace:
    for array in (arrival_s, context, generated):
        array.flags.writeable = False  # shared through the cache: nobody may change it
    return AzureTrace(path, arrival_s, context, generated)


def read_trace(path: Path | str) -> AzureTrace:
    """The whole file (a relative path is tried from the working directory, scenarios/ and
    the repository root); FileNotFoundError names the path."""
    resolved = resolve_data_path(path).resolve()  # one cache entry per file, however named
    try:
        stat = resolved.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"arrival.trace: no such file {str(path)!r}") from None
    return _parse(str(resolved), stat.st_mtime_ns, stat.st_size)


def window(trace: AzureTrace, start_s: float = 0.0, duration_s: float | None = None,
           count: int | None = None, time_scale: float = 1.0) -> AzureTrace:
    """The rows from start_s for duration_s and at most count (trace seconds), their arrivals
    counted from start_s and multiplied by time_scale; ValueError if it holds no row."""
    if not (start_s >= 0 and time_scale > 0 and (duration_s is None or duration_s > 0)
            and (count is None or count >= 1)):
        raise ValueError(f"window: need start_s >= 0, duration_s > 0 or None, count >= 1 or "
                         f"None, time_scale > 0 (got start_s={start_s!r}, duration_s="
                         f"{duration_s!r}, count={count!r}, time_scale={time_scale!r})")
    first = int(np.searchsorted(trace.arrival_s, start_s, side="left"))
    end = len(trace) if duration_s is None else int(
        np.searchsorted(trace.arrival_s, start_s + duration_s, side="left"))
    if count is not None:
        end = min(end, first + count)
    if end <= first:
        span = trace.arrival_s[-1]
        raise ValueError(
            f"{trace.path}: the window start_s={start_s:g}, duration_s={duration_s}, "
            f"count={count} holds no row (the trace's {len(trace)} rows span 0 to {span:.1f} s "
            f"after its first row)")
    rows = slice(first, end)
    return _frozen(trace.path, (trace.arrival_s[rows] - start_s) * time_scale,
                   trace.context_tokens[rows].copy(), trace.generated_tokens[rows].copy())
