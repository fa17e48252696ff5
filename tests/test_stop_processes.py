"""``stop_processes`` (the ``kill`` of the process and loky backends) on real processes.

The rule: a worker counts as ended once its sentinel is ready, whoever collected its exit
status. A pool's own manager thread may reap a terminated worker first; ``is_alive()`` then
cannot tell (``waitpid`` fails) and reads "still running", which must not lead to a second,
failing kill.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from typing import Any

import pytest

from anyexec.builtin.process import stop_processes

pytestmark = pytest.mark.skipif(os.name != "posix", reason="reaping by pid is POSIX")


def _contexts() -> list[Any]:
    params = [pytest.param(multiprocessing.get_context("spawn"), id="multiprocessing")]
    try:
        from loky.backend.context import get_context
    except ImportError:
        params.append(pytest.param(None, id="loky", marks=pytest.mark.skip("loky missing")))
    else:
        params.append(pytest.param(get_context("loky"), id="loky"))
    return params


def _ignore_sigterm_and_sleep(ready: Any, seconds: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    time.sleep(seconds)


def _cleanup(proc: Any) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(proc.pid, 0)


@pytest.mark.parametrize("ctx", _contexts())
def test_a_worker_reaped_by_another_thread_counts_as_ended(ctx: Any) -> None:
    proc = ctx.Process(target=time.sleep, args=(120,))
    proc.start()
    try:
        os.kill(proc.pid, signal.SIGTERM)
        os.waitpid(proc.pid, 0)  # reaped behind the process object's back, as a pool does
        stop_processes([proc])  # must neither raise nor wait for a process already gone
    finally:
        _cleanup(proc)


@pytest.mark.parametrize("ctx", _contexts())
def test_a_worker_that_ignores_sigterm_is_killed(ctx: Any) -> None:
    ready = ctx.Event()
    proc = ctx.Process(target=_ignore_sigterm_and_sleep, args=(ready, 120))
    proc.start()
    try:
        assert ready.wait(120), "the child never started"
        stop_processes([proc])
        proc.join(60)
        assert proc.exitcode == -signal.SIGKILL
    finally:
        if proc.exitcode is None:
            _cleanup(proc)
