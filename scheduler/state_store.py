"""The scheduler's learning state on disk, written so that a `kill -9` never leaves half a file.

A write goes to a temporary file in the same directory, is fsync'ed, then renamed over the
target (rename is atomic within one file system), and the directory is fsync'ed so the rename
itself survives a crash. A reader therefore sees either the previous state or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


class StateFileError(ValueError):
    """The state file exists but cannot be used (corrupt, other policy, other version)."""


def encode_state(state: dict[str, Any]) -> bytes:
    """The file's bytes for `state` (separate so callers can snapshot under their lock)."""
    return json.dumps({"format_version": FORMAT_VERSION, **state}, sort_keys=True,
                      allow_nan=True).encode("utf-8")


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically replace `path` with `state` as JSON."""
    write_atomic(path, encode_state(state))


def write_atomic(path: str | os.PathLike[str], payload: bytes) -> None:
    """Replace `path` with `payload`: temp file in the same directory, fsync, rename, fsync dir."""
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The saved state, or None when the file does not exist."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        state = json.loads(raw)
    except json.JSONDecodeError as e:
        raise StateFileError(f"state file {str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(state, dict):
        raise StateFileError(f"state file {str(path)!r} must hold a JSON object "
                             f"(got {type(state).__name__})")
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise StateFileError(f"state file {str(path)!r} has format_version {version!r}; "
                             f"this scheduler reads {FORMAT_VERSION}")
    return state
