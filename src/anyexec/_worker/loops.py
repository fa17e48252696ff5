"""Event-loop helpers for tasks: is a function a coroutine function, run one to completion
from synchronous code, and await one under a time limit."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

from anyexec.errors import TaskTimeout

__all__ = ["await_limited", "is_async", "run_async"]


def is_async(fn: Callable[..., Any]) -> bool:
    call = type(fn).__dict__.get("__call__")  # an object whose __call__ is async
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _loop_running_here() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
            return True
        except RuntimeError:
            pass
    return False


def run_async(afn: Callable[..., Any], *args: Any) -> Any:
    """Run a coroutine function to completion from synchronous code. Where an event loop
    already runs in this thread (``serial`` called from async code), use a fresh thread."""
    import anyio

    if not _loop_running_here():
        return anyio.run(afn, *args)
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(1, thread_name_prefix="anyexec-serial-async") as one:
        return one.submit(anyio.run, afn, *args).result()


async def await_limited(coro: Any, seconds: float | None) -> Any:
    """Await ``coro``; past ``seconds`` it is cancelled and TaskTimeout raised."""
    if seconds is None:
        return await coro
    import anyio

    try:
        with anyio.fail_after(seconds):
            return await coro
    except TimeoutError:
        raise TaskTimeout(
            f"the coroutine ran past its task_timeout of {seconds:g} s and was cancelled"
        ) from None
