"""asubmit and amap from asyncio and from trio, on every built-in backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest

import anyexec
from anyexec.testing import tasks

LOOPS = ["asyncio", "trio"]


def run(loop: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return anyio.run(main, backend=loop)


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_asubmit_and_amap(builtin: str, loop: str) -> None:
    async def main() -> None:
        with anyexec.Executor(builtin, workers=2) as ex:
            assert await ex.asubmit(tasks.add, 1, 2, z=3) == 6
            got = [r async for r in ex.amap(tasks.square, range(300))]
            assert got == [x * x for x in range(300)]
            unordered = [r async for r in ex.amap(tasks.square, range(50), ordered=False)]
            assert sorted(unordered) == [x * x for x in range(50)]
            assert [r async for r in ex.amap(tasks.async_square, range(5))] == [0, 1, 4, 9, 16]
            with pytest.raises(tasks.TaskError, match="task failed on 3"):
                [r async for r in ex.amap(tasks.fail_on, range(6))]
            with pytest.raises(tasks.TaskError):
                await ex.asubmit(tasks.fail_on, 3)

    run(loop, main)


def test_amap_timeout(loop: str) -> None:
    async def main() -> None:
        with anyexec.Executor("thread", workers=2) as ex:
            with pytest.raises(TimeoutError):
                [r async for r in ex.amap(tasks.sleep_then, [2.0, 2.0], timeout=0.1)]

    run(loop, main)


def test_cancelling_amap_cancels_pending_work(loop: str) -> None:
    async def main() -> float:
        ex = anyexec.Executor("thread", workers=1)
        with anyio.move_on_after(0.3):
            async for _ in ex.amap(tasks.sleep_then, [0.2] * 40, chunksize=1, buffersize=20):
                pass
        started = time.monotonic()
        ex.shutdown(wait=True)  # only the running chunk is left to finish
        return time.monotonic() - started

    assert run(loop, main) < 0.2 * 10


def test_cancelling_asubmit_cancels_a_pending_call(loop: str) -> None:
    async def main() -> None:
        with anyexec.Executor("thread", workers=1) as ex:
            busy = ex.submit(tasks.sleep_then, 0.5)
            futures = []
            with anyio.move_on_after(0.1):
                fut = ex.submit(tasks.square, 2)
                futures.append(fut)
                from anyexec._aio import await_future

                await await_future(fut)
            assert futures[0].cancelled()
            assert busy.result(timeout=30) == 0.5

    run(loop, main)


def test_asubmit_from_the_event_loop_on_serial(loop: str) -> None:
    async def main() -> None:
        with anyexec.Executor("serial") as ex:
            assert await ex.asubmit(tasks.square, 5) == 25

    run(loop, main)
