"""anyexec._worker.watch: per-call time limits for calls run in a worker thread (dask's workers),
exercised in this process from a non-main thread, as a dask worker thread runs them."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from typing import Any

import pytest

import anyexec
from anyexec._worker import context as _context
from anyexec._worker.tasks import Call, Chunk, Failure
from anyexec._worker.watch import abandoned, run_watched


def hang_on_one(x: int) -> int:
    if x == 1:
        time.sleep(3)  # one C-level sleep: no signal or async exception reaches it
    if x == 3:
        raise ValueError("three")
    return x * 10


def in_thread(fn: Any, *args: Any) -> Any:
    with cf.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result(timeout=60)


def test_a_call_past_its_limit_is_abandoned_and_the_rest_delivered() -> None:
    before = abandoned()  # calls other tests abandoned may still run; they only end
    out, failed = in_thread(run_watched, hang_on_one, [(0,), (1,), (2,), (3,), (4,)], 0.3, False)
    assert failed
    assert out[0] == 0 and out[2] == 20 and out[4] == 40
    assert type(out[1]) is Failure and isinstance(out[1].exc, anyexec.TaskTimeout)
    assert "abandoned" in str(out[1].exc)
    assert type(out[3]) is Failure and isinstance(out[3].exc, ValueError)
    assert abandoned() >= 1  # the sleeping helper still runs
    deadline = time.monotonic() + 30
    while abandoned() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert abandoned() <= before  # counted only while it runs


def test_no_limit_reached_returns_everything() -> None:
    out, failed = in_thread(run_watched, abs, [(-1,), (-2,)], 5.0, False)
    assert (out, failed) == ([1, 2], False)


def test_base_exceptions_are_the_tasks_outcome() -> None:
    def leave(x: int) -> None:
        raise SystemExit(x)

    (outcome, after), failed = in_thread(run_watched, leave, [(3,), (4,)], 5.0, False)
    assert failed
    error = outcome.exception()
    assert isinstance(error, anyexec.TaskAborted)
    assert isinstance(error.__cause__, SystemExit) and error.__cause__.code == 3
    assert after.exception().__cause__.code == 4


def test_helpers_see_the_callers_context() -> None:
    def inside(_: int) -> bool:
        return _context.IN_WORKER.get()

    def run() -> Any:
        _context.IN_WORKER.set(True)
        return run_watched(inside, [(0,)], 5.0, False)

    assert in_thread(run) == ([True], False)


def test_chunk_and_call_use_it_off_the_main_thread() -> None:
    chunk = Chunk(hang_on_one, [(0,), (1,), (2,)], crossing=True, timeout=0.3)
    outcomes, _, failed = in_thread(chunk)
    assert failed and outcomes[0] == 0 and outcomes[2] == 20
    assert isinstance(outcomes[1].exception(), anyexec.TaskTimeout)

    with pytest.raises(anyexec.TaskTimeout):
        in_thread(Call(hang_on_one, (1,), {}, crossing=False, timeout=0.3))
    with pytest.raises(ValueError, match="three"):
        in_thread(Call(hang_on_one, (3,), {}, crossing=False, timeout=5))
    assert in_thread(Call(hang_on_one, (2,), {}, crossing=False, timeout=5)) == 20
    assert threading.current_thread() is threading.main_thread()
