"""What ``anyexec tune`` sends to workers: picklable, and light to import.

A process worker that unpickles one of these imports only this module (standard library
only), not the search machinery of :mod:`anyexec.tune`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyexec._worker.args import Args

__all__ = ["AsyncStar", "Star", "anoop", "noop"]


def noop(x: Any) -> Any:
    """The probe task: what it costs is the backend's own per-task cost."""
    return x


async def anoop(x: Any) -> Any:
    """The probe task for coroutine functions (awaited where the backend can)."""
    return x


class Star:
    """``fn(*args)`` for one argument tuple, ``fn(*a.args, **a.kwargs)`` for one
    :class:`anyexec.Args`: how tune passes such a sample through ``map`` (and
    ``measure``), which hand each item over as a single argument."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, args: tuple[Any, ...] | Args) -> Any:
        if isinstance(args, Args):
            return self.fn(*args.args, **args.kwargs)
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"Star({self.fn!r})"


class AsyncStar(Star):
    """:class:`Star` for a coroutine function; its ``__call__`` is itself a coroutine
    function, so backends still see async work and await it."""

    async def __call__(self, args: tuple[Any, ...] | Args) -> Any:  # type: ignore[override]
        if isinstance(args, Args):
            return await self.fn(*args.args, **args.kwargs)
        return await self.fn(*args)
