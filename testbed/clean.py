"""What a testbed created, recorded in a state file, and the cleanup that reads it.

A running `Testbed` writes /run/perllm-testbed/<owner pid>.json: the PIDs (with their start
times, so a reused PID is never killed) of the Mininet host shells and of every process started
in a host, and the root-namespace interfaces it created. `clean()` removes what dead owners
left: kills those processes (their namespaces vanish with them), deletes those interfaces, and
finally any root-namespace link whose name starts with the project prefix `plm-`. It never
kills by name pattern and never runs `mn -c`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

STATE_DIR = Path("/run/perllm-testbed")
PREFIX = "plm-"


def proc_start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; split after the command name, which may contain spaces and parentheses.
    return int(stat.rsplit(")", 1)[1].split()[19])


def same_process(pid: int, start_ticks: int | None) -> bool:
    return start_ticks is not None and proc_start_ticks(pid) == start_ticks


def process_record(pid: int) -> list[int | None]:
    return [pid, proc_start_ticks(pid)]


def state_path(owner_pid: int | None = None) -> Path:
    return STATE_DIR / f"{owner_pid or os.getpid()}.json"


def write_state(state: dict) -> Path:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    path = state_path(state["owner"][0])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)
    return path


def read_states() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(STATE_DIR.glob("*.json")) if STATE_DIR.is_dir() else []:
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            out.append((path, {}))
    return out


def owner_alive(state: dict) -> bool:
    owner = state.get("owner")
    return bool(owner) and same_process(owner[0], owner[1])


def kill_processes(records: list[list[int | None]], grace_s: float = 2.0) -> list[int]:
    """SIGTERM each still-existing recorded process group, wait, then SIGKILL; returns PIDs hit."""
    alive = [pid for pid, start in records if pid and same_process(pid, start)]
    for pid in alive:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    pending = list(alive)
    while pending and time.monotonic() < deadline:
        pending = [pid for pid, start in records if pid in pending and same_process(pid, start)]
        if pending:
            time.sleep(0.02)  # polling /proc: a process we did not start cannot be waited for
    for pid in pending:
        _signal(pid, signal.SIGKILL)
    return alive


def _signal(pid: int, sig: int) -> None:
    # Processes started in hosts are session leaders (mnexec -d calls setsid), so their group
    # holds their children; fall back to the PID alone if it is not a group leader.
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def delete_links(names: list[str]) -> list[str]:
    """Delete root-namespace links by exact name; returns the names deleted."""
    deleted = []
    with IPRoute() as ipr:
        for name in names:
            found = ipr.link_lookup(ifname=name)
            if not found:
                continue
            try:
                ipr.link("del", index=found[0])
                deleted.append(name)
            except NetlinkError as exc:
                if exc.code != 19:  # ENODEV: went with its peer
                    raise
    return deleted


def prefixed_links() -> list[str]:
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return [n for n in names if n and n.startswith(PREFIX)]


def clean(force: bool = False, dead_owner: int | None = None) -> list[str]:
    """Remove what dead testbeds left (and live ones too with force); returns what was done.

    `dead_owner`: a PID whose state counts as left over although the process lives (a testbed
    in this very process that failed to tear down).
    """
    done: list[str] = []
    protected: set[str] = set()
    for path, state in read_states():
        stale = bool(state) and state["owner"][0] == dead_owner
        if state and owner_alive(state) and not force and not stale:
            protected.update(state.get("root_intfs", []))
            done.append(f"kept {path.name}: its testbed (pid {state['owner'][0]}) is running; "
                        "use --force to remove it anyway")
            continue
        killed = kill_processes(state.get("processes", []) + state.get("shells", []))
        if killed:
            done.append(f"killed pids {', '.join(map(str, killed))}")
        deleted = delete_links(state.get("root_intfs", []))
        if deleted:
            done.append(f"deleted links {', '.join(deleted)}")
        for d in state.get("tmp_dirs", []):
            _remove_tree(Path(d))
        path.unlink(missing_ok=True)
        done.append(f"removed {path}")
    leftovers = [n for n in prefixed_links() if n not in protected]
    deleted = delete_links(leftovers)
    if deleted:
        done.append(f"deleted links {', '.join(deleted)}")
    return done


def _remove_tree(path: Path) -> None:
    if not path.is_dir() or not path.name.startswith(PREFIX):
        return  # only our own temporary folders
    for child in path.iterdir():
        child.unlink(missing_ok=True)
    path.rmdir()
