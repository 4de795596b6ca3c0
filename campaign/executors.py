"""Where a campaign's tasks run.

`LocalExecutor` (the embedded default, no cluster): one forked process per task on this
machine, as many at once as its CPUs and custom resources allow (`testbed: 1` when this
process is root and Mininet is installed). A task that raises is reported failed with its
exception; a process that dies (killed, out of memory) is re-run up to `max_retries` times,
then reported failed with its exit signal.

`RayExecutor`: Ray tasks with the same demands (`num_cpus`, `resources`). `address=None`
starts a local Ray instance (stopped again on close); `"auto"` or `"ray://HOST:PORT"` joins a
running cluster. A lost worker or node is re-run by Ray on another node up to `max_retries`
times, then reported failed with Ray's reason. A task's files are written on the worker into
a temporary folder and sent back to the caller's `out_dir` as a tar archive.

`executor_from_name("local" | "local:N" | "ray" | "ray:auto" | "ray://HOST:PORT")`.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tarfile
import tempfile
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from campaign.tasks import TESTBED, CampaignConfigError, Task, TaskOutcome

OnDone = Callable[[TaskOutcome], None]
# An interrupted local campaign waits this long for its tasks to stop after Ctrl-C, then
# after SIGTERM (an emulated run's teardown takes seconds), before it kills them.
STOP_GRACE_S = 60.0
EXECUTOR_FORMS = "local, local:N (N processes), ray, ray:auto, ray://HOST:PORT"


def local_resources() -> dict[str, float]:
    """The custom resources this machine offers: one testbed when root with Mininet."""
    has_testbed = os.geteuid() == 0 and shutil.which("mnexec") is not None
    return {TESTBED: 1.0 if has_testbed else 0.0}


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= 2000 else text[:2000] + " ..."


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process killed by {name}"
    return f"worker process exited with code {exitcode} before returning a result"


class Executor(ABC):
    """Runs tasks; `run` returns one outcome per task, in the tasks' order."""

    name = "executor"

    @abstractmethod
    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[TaskOutcome]:
        """Run every task (local processes or Ray tasks)."""

    def close(self) -> None:
        """Release what the executor started (a local Ray instance)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _child(task: Task, conn: multiprocessing.connection.Connection) -> None:
    started = time.perf_counter()
    try:
        value = task.fn(task.payload, task.out_dir)
        message: tuple = ("ok", value, "")
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, none is lost
        message = ("error", None, _error_text(exc) + "\n" + traceback.format_exc(limit=-3))
    wall_s = time.perf_counter() - started
    try:
        conn.send((*message, socket.gethostname(), wall_s))
    except Exception as exc:  # noqa: BLE001 - a value that cannot be sent is the task's error
        conn.send(("error", None, f"its result could not be sent back: {_error_text(exc)}",
                   socket.gethostname(), wall_s))
    conn.close()


class LocalExecutor(Executor):
    """A forked process per task on this machine (see the module's docstring)."""

    name = "local"

    def __init__(self, processes: int | None = None, resources: Mapping[str, float] | None = None,
                 max_retries: int = 1) -> None:
        if processes is not None and processes < 1:
            raise ValueError(f"processes must be >= 1 (got {processes})")
        self.processes = processes or os.cpu_count() or 1
        self.capacity = {"CPU": float(self.processes),
                         **(local_resources() if resources is None else dict(resources))}
        self.max_retries = max_retries

    def _fits(self, demand: Mapping[str, float], free: Mapping[str, float]) -> bool:
        return all(free.get(name, 0.0) >= amount - 1e-9 for name, amount in demand.items())

    def _never_fits(self, task: Task) -> str:
        # A task asking for more CPU than there is still runs, alone (as a pool would).
        short = {n: a for n, a in task.resources.items() if self.capacity.get(n, 0.0) < a}
        if not short:
            return ""
        hint = "; a testbed needs root and Mininet ('sudo make setup')" if TESTBED in short else ""
        return (f"needs {', '.join(f'{n}: {a:g}' for n, a in short.items())}, which this "
                f"machine does not offer (it offers "
                f"{', '.join(f'{n}: {a:g}' for n, a in self.capacity.items())}){hint}")

    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[TaskOutcome]:
        ctx = multiprocessing.get_context("fork")
        outcomes: dict[str, TaskOutcome] = {}
        attempts: dict[str, int] = {}
        queue: deque[Task] = deque()

        def finish(outcome: TaskOutcome) -> None:
            outcomes[outcome.key] = outcome
            if on_done:
                on_done(outcome)

        for task in tasks:
            reason = self._never_fits(task)
            if reason:
                finish(TaskOutcome(task.key, ok=False, error=reason, attempts=0))
            else:
                queue.append(task)
        free = dict(self.capacity)
        running: dict[Any, tuple[Task, Any, Any, dict[str, float]]] = {}
        ctrl_c = False
        try:
            while queue or running:
                for task in list(queue):  # start, in order, every task that fits now
                    demand = {"CPU": min(task.num_cpus, self.capacity["CPU"]), **task.resources}
                    if not self._fits(demand, free):
                        continue
                    queue.remove(task)
                    for name, amount in demand.items():
                        free[name] = free.get(name, 0.0) - amount
                    if task.out_dir is not None:
                        Path(task.out_dir).mkdir(parents=True, exist_ok=True)
                    reader, writer = ctx.Pipe(duplex=False)
                    proc = ctx.Process(target=_child, args=(task, writer), daemon=True)
                    attempts[task.key] = attempts.get(task.key, 0) + 1
                    proc.start()
                    writer.close()
                    running[proc.sentinel] = (task, proc, reader, demand)
                ready = multiprocessing.connection.wait(
                    [r for _, _, r, _ in running.values()] + list(running))
                for sentinel, (task, proc, reader, demand) in list(running.items()):
                    if sentinel not in ready and reader not in ready:
                        continue
                    message = None
                    try:  # the result, or EOF: the child closes its end only as it exits
                        if reader.poll():
                            message = reader.recv()
                    except (EOFError, OSError):
                        message = None
                    proc.join()
                    reader.close()
                    del running[sentinel]
                    for name, amount in demand.items():
                        free[name] += amount
                    if message is None:
                        reason = _death_reason(proc.exitcode)
                        if attempts[task.key] <= self.max_retries:
                            queue.appendleft(task)  # lost, not failed: run it again
                            continue
                        finish(TaskOutcome(task.key, ok=False, attempts=attempts[task.key],
                                           error=f"{reason} (attempt {attempts[task.key]} of "
                                                 f"{self.max_retries + 1})"))
                        continue
                    status, value, error, host, wall_s = message
                    finish(TaskOutcome(task.key, ok=status == "ok", value=value, error=error,
                                       host=host, wall_s=wall_s, attempts=attempts[task.key]))
        except KeyboardInterrupt:
            ctrl_c = True
            raise
        finally:  # interrupted: leave no process behind, but let each tear its testbed down
            for _, proc, _, _ in running.values():
                if ctrl_c:  # Ctrl-C reached the children too: they are tearing down already
                    proc.join(timeout=STOP_GRACE_S)
                if proc.is_alive():
                    proc.terminate()  # SIGTERM: an emulated run tears down as on Ctrl-C
            for _, proc, reader, _ in running.values():
                proc.join(timeout=STOP_GRACE_S)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                reader.close()
        return [outcomes[t.key] for t in tasks]


def _pack(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=child.name)
    return buffer.getvalue()


def _unpack(data: bytes, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        for member in members:  # plain files and folders inside out_dir only
            parts = Path(member.name).parts
            if (Path(member.name).is_absolute() or ".." in parts
                    or not (member.isfile() or member.isdir())):
                raise ValueError(f"a task's files hold {member.name!r}, which would not land "
                                 f"as a plain file inside {out_dir}")
        tar.extractall(out_dir, members=members)


def _ray_task(fn: Callable, payload: Any, with_files: bool) -> tuple:
    """Runs on a Ray worker: the task in a temporary folder whose files go back packed."""
    started = time.perf_counter()
    host = socket.gethostname()
    if not with_files:
        return fn(payload, None), None, host, time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="campaign-task-") as tmp:
        value = fn(payload, Path(tmp))
        return value, _pack(Path(tmp)), host, time.perf_counter() - started


class RayExecutor(Executor):
    """Ray tasks (see the module's docstring)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 max_retries: int = 1) -> None:
        if address is not None and "RAY_AUTH_MODE" not in os.environ and (
                os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").exists()):
            # Ray 2.60's `ray start` asks for a token, but a client sends one only in token
            # mode; Ray reads the mode when it is imported, so say so before that.
            os.environ["RAY_AUTH_MODE"] = "token"
        try:
            import ray
        except ImportError as exc:
            raise RuntimeError("the Ray executor needs the ray package (pinned in "
                               "requirements.txt): run 'make setup'") from exc
        self._ray = ray
        self.address = address
        self.max_retries = max_retries
        self._owned = False
        if ray.is_initialized():
            return
        if address is None:
            # A local instance for this campaign: the machine's CPUs and its testbed.
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count(),
                     resources={n: a for n, a in local_resources().items() if a > 0},
                     include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": _repo_root()}})
            self._owned = True
        else:
            ray.init(address=address, log_to_driver=False)

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
            self._owned = False

    def _short_of(self, task: Task, cluster: Mapping[str, float]) -> str:
        # Ray would keep an infeasible task pending for ever: say so instead.
        short = {n: a for n, a in task.resources.items() if cluster.get(n, 0.0) < a}
        if not short:
            return ""
        hint = (f"; start Ray on each testbed host with --resources='{{\"{TESTBED}\": 1}}' "
                f"(docs/campaigns.md)" if TESTBED in short else "")
        return (f"needs {', '.join(f'{n}: {a:g}' for n, a in short.items())}, which no node "
                f"of the Ray cluster offers{hint}")

    def run(self, tasks: Sequence[Task], on_done: OnDone | None = None) -> list[TaskOutcome]:
        ray = self._ray
        remote = ray.remote(_ray_task)
        cluster = ray.cluster_resources()
        outcomes: dict[str, TaskOutcome] = {}

        def finish(outcome: TaskOutcome) -> None:
            outcomes[outcome.key] = outcome
            if on_done:
                on_done(outcome)

        pending: dict[Any, Task] = {}
        for task in tasks:
            reason = self._short_of(task, cluster)
            if reason:
                finish(TaskOutcome(task.key, ok=False, error=reason, attempts=0))
                continue
            ref = remote.options(
                num_cpus=task.num_cpus, resources=dict(task.resources) or None,
                max_retries=self.max_retries, retry_exceptions=False, name=task.key,
            ).remote(task.fn, task.payload, task.out_dir is not None)
            pending[ref] = task
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    finish(self._outcome(task, ref))
        finally:
            for ref in pending:  # interrupted: cancel what has not finished
                ray.cancel(ref, force=True)
        return [outcomes[t.key] for t in tasks]

    def _outcome(self, task: Task, ref: Any) -> TaskOutcome:
        exceptions = self._ray.exceptions
        try:
            value, files, host, wall_s = self._ray.get(ref)
        except exceptions.RayTaskError as exc:  # the task itself raised
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            return TaskOutcome(task.key, ok=False, error=_error_text(cause))
        except exceptions.RayError as exc:  # worker or node lost after every retry
            return TaskOutcome(task.key, ok=False, attempts=self.max_retries + 1,
                               error=f"worker lost after {self.max_retries + 1} attempt(s): "
                                     f"{_error_text(exc)}")
        if files is not None and task.out_dir is not None:
            _unpack(files, Path(task.out_dir))
        return TaskOutcome(task.key, ok=True, value=value, host=host, wall_s=wall_s)


def _repo_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def executor_from_name(name: str | None, processes: int | None = None) -> Executor:
    """An executor from its command-line form (EXECUTOR_FORMS); None is `local`."""
    name = (name or "local").strip()
    if name == "local":
        return LocalExecutor(processes)
    if name.startswith("local:"):
        count = name.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise CampaignConfigError(f"--executor {name!r}: local:N needs N >= 1 processes; "
                             f"accepted: {EXECUTOR_FORMS}")
        return LocalExecutor(int(count))
    if name == "ray":
        return RayExecutor(None, num_cpus=processes)
    if name == "ray:auto":
        return RayExecutor("auto")
    if name.startswith("ray://") and ":" in name[len("ray://"):]:
        return RayExecutor(name)
    raise CampaignConfigError(f"--executor: unknown {name!r}; accepted: {EXECUTOR_FORMS}")


def run_tasks(executor: Executor, tasks: Iterable[Task], on_done: OnDone | None = None
              ) -> list[TaskOutcome]:
    """Run tasks on an executor, keys checked unique first (a key names its stored outcome)."""
    tasks = list(tasks)
    seen: set[str] = set()
    for task in tasks:
        if task.key in seen:
            raise ValueError(f"task key {task.key!r} appears twice in one campaign")
        seen.add(task.key)
    return executor.run(tasks, on_done)
