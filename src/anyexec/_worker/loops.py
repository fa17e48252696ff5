"""Event-loop helpers for tasks: is a function a coroutine function, run one to completion
from synchronous code, and await one under a time limit."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

from anyexec.errors import TaskTimeout

__all__ = ["await_limited", "is_async", "run_async"]


#: Callables that are never coroutine functions, whatever ``inspect`` would add.
_NATIVE = (
    type,
    type(None),
    types.BuiltinFunctionType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.MethodWrapperType,
)
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, the same in every CPython


def _is_coroutine_function(fn: Any) -> bool:
    """``inspect.iscoroutinefunction(fn)``, without importing :mod:`inspect` (~5 ms with
    ``ast`` and ``dis``) for the common callables it answers the same for: builtins and
    classes (never coroutine functions) and plain functions (their code's flag says). Only
    ``inspect.markcoroutinefunction`` (3.12+) could make a plain function count as one, and
    that needs ``inspect`` imported already."""
    kind = type(fn)
    if kind in _NATIVE:
        return False
    if kind is types.FunctionType and "inspect" not in sys.modules:
        return bool(fn.__code__.co_flags & _CO_COROUTINE)
    import inspect

    return inspect.iscoroutinefunction(fn)


def is_async(fn: Callable[..., Any]) -> bool:
    call = type(fn).__dict__.get("__call__")  # an object whose __call__ is async
    return _is_coroutine_function(fn) or _is_coroutine_function(call)


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
