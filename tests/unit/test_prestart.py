"""Prestarted RPC and sender threads (issue 13): a burst's first calls wait for no thread to
start."""

from __future__ import annotations

import threading

import pytest

from scheduler.config import ServerConfig
from scheduler.grpc_server import prestarted_executor
from scenarios.driver import main as driver_main


def test_the_prestarted_threads_run_before_any_task_and_serve_a_burst_without_new_ones():
    pool = prestarted_executor(16, 8, "burst")
    try:
        started = {t.name for t in threading.enumerate() if t.name.startswith("burst")}
        assert len(started) == 8
        gate = threading.Barrier(8)  # eight tasks at once: each needs its own thread
        list(pool.map(lambda _: gate.wait(10.0), range(8)))
        assert {t.name for t in threading.enumerate() if t.name.startswith("burst")} == started
    finally:
        pool.shutdown()


def test_no_more_threads_than_workers_and_none_by_default():
    with prestarted_executor(3, 10, "capped") as pool:
        assert len(pool._threads) == 3
    with prestarted_executor(3, 0, "none") as pool:
        assert len(pool._threads) == 0


def test_bad_prestart_counts_are_named():
    with pytest.raises(ValueError, match=r"prestart_threads must be in \[0, max_workers=4\] "
                                         r"\(got 5\)"):
        ServerConfig(max_workers=4, prestart_threads=5).validate()
    with pytest.raises(SystemExit):
        driver_main(["--scheduler", "127.0.0.1:1", "--workload", "w.json",
                     "--max-concurrency", "4", "--prestart-threads", "9"])
