"""Awaiting ``concurrent.futures.Future`` objects from asyncio or trio (through anyio),
without a thread per wait: the future's done callback wakes the loop thread-safely."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Sequence
from typing import Any

import anyio

__all__ = ["await_first", "await_future", "waker"]


def waker(event: anyio.Event) -> Callable[..., None]:
    """A callback, safe from any thread, that sets ``event`` in the current loop."""
    try:
        import asyncio

        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:

        def wake(*_: Any) -> None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

        return wake
    import trio

    token = trio.lowlevel.current_trio_token()

    def wake_trio(*_: Any) -> None:
        try:
            token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            pass

    return wake_trio


async def await_first(futures: Sequence[cf.Future[Any]]) -> cf.Future[Any]:
    """Wait until one of ``futures`` is done and return it (the first done, in order)."""
    while True:
        for fut in futures:
            if fut.done():
                return fut
        event = anyio.Event()
        wake = waker(event)
        for fut in futures:
            fut.add_done_callback(wake)
        await event.wait()


async def await_future(fut: cf.Future[Any]) -> Any:
    """The result of ``fut``; cancelling the awaiting task cancels ``fut``."""
    try:
        await await_first([fut])
    except BaseException:
        fut.cancel()
        raise
    return fut.result()
