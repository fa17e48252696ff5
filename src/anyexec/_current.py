"""``anyexec.current()`` and the module-level ``map``/``submit``/``using``.

A library deep in a pipeline calls ``anyexec.map(f, xs)``; the application decides the
backend through ``using()``, the environment or the config file. One executor exists per
distinct resolved configuration; it is reused and closed at interpreter exit: after the
work still queued on it ran, or, when the program ends on Ctrl-C, at once (its queued work
cancelled and process workers terminated, see ``anyexec._exit``).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from anyexec import _exit, config
from anyexec._worker import context as _context
from anyexec.contract import Backend
from anyexec.executor import Executor
from anyexec.mapping import MapOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["amap", "astarmap", "current", "map", "starmap", "submit", "using"]

T = TypeVar("T")

_shared: dict[tuple[Any, ...], Executor] = {}
_lock = threading.Lock()


def current(*, require: str | None = None, prefer: str | None = None) -> Executor:
    """The executor the resolved configuration selects, shared and reused.

    ``require``/``prefer`` declare what the caller's tasks need (see
    :func:`anyexec.config.resolve` and ``docs/library-use.md``); a library passes them
    instead of choosing a backend.
    """
    settings = config.resolve(require=require, prefer=prefer)
    key = settings.key()
    ex = _shared.get(key)
    if ex is None or ex.closed:
        with _lock:
            ex = _shared.get(key)
            if ex is None or ex.closed:
                ex = _shared[key] = Executor.from_settings(settings)
    return ex


def _take_shared() -> list[Executor]:
    with _lock:
        executors = list(_shared.values())
        _shared.clear()
    return executors


@atexit.register
def _close_shared() -> None:
    """At interpreter exit: close the shared executors, each after its running work."""
    for ex in _take_shared():
        ex.shutdown(wait=True, cancel_futures=True)


def _abort_shared() -> None:
    """The program ends on Ctrl-C: cancel the shared executors' queued work and stop their
    running work where the backend can, without waiting. Run by ``anyexec._exit`` before
    the standard pools' exit hooks, which would otherwise run the whole queue first."""
    for ex in _take_shared():
        ex.abort()


_exit.on_interrupt(_abort_shared)


@contextlib.contextmanager
def using(
    backend: str | Backend | None = None,
    workers: int | str | None = None,
    *,
    allow_oversubscribe: bool | None = None,
    require: str | None = None,
    prefer: str | None = None,
    initializer: Callable[..., Any] | None = None,
    initargs: Iterable[Any] | None = None,
    **options: Any,
) -> Iterator[Executor]:
    """Choose the backend for this block (nestable; each thread and async task sees its
    own). Yields the executor ``current()`` now returns. Errors show at entry.
    ``initializer(*initargs)`` runs once in each worker of the executors the block uses.

    ``require``/``prefer`` hold for every call in the block (``require="sharedmem"`` with
    a ``backend`` that crosses processes in the same ``using()`` is a ConfigError)."""
    layer = config.using_layer(
        backend,
        workers,
        options,
        allow_oversubscribe=allow_oversubscribe,
        require=require,
        prefer=prefer,
        initializer=initializer,
        initargs=None if initargs is None else tuple(initargs),
    )
    with config.push(layer), _closed_in_worker():
        yield current()


_users: dict[tuple[Any, ...], int] = {}


@contextlib.contextmanager
def _closed_in_worker() -> Iterator[None]:
    """Inside a task (a worker), the executor a ``using()`` block selects is closed when
    the last block using it ends, so a task leaves no pool behind in its worker: a pool
    left open there would keep the worker, and the outer executor's shutdown, from ending.
    Outside workers, shared executors live until interpreter exit."""
    if not _context.IN_WORKER.get():
        yield
        return
    key = config.resolve().key()
    with _lock:
        _users[key] = _users.get(key, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _users[key] -= 1
            last = _users[key] == 0
            ex = None
            if last:
                del _users[key]
                ex = _shared.pop(key, None)
        if ex is not None:
            ex.shutdown(wait=True)


def map(
    fn: Callable[..., T],
    *iterables: Iterable[Any],
    require: str | None = None,
    prefer: str | None = None,
    **kwargs: Unpack[MapOptions],
) -> Iterator[T]:
    """``current(require=..., prefer=...).map(...)``: see :meth:`anyexec.Executor.map`."""
    return current(require=require, prefer=prefer).map(fn, *iterables, **kwargs)


def starmap(
    fn: Callable[..., T],
    iterable: Iterable[Any],
    *,
    require: str | None = None,
    prefer: str | None = None,
    **kwargs: Unpack[MapOptions],
) -> Iterator[T]:
    """``current(...).starmap(...)``: argument tuples or ``anyexec.Args`` items; see
    :meth:`anyexec.Executor.starmap`."""
    return current(require=require, prefer=prefer).starmap(fn, iterable, **kwargs)


def astarmap(
    fn: Callable[..., T],
    iterable: Iterable[Any],
    *,
    require: str | None = None,
    prefer: str | None = None,
    **kwargs: Unpack[MapOptions],
) -> AsyncIterator[T]:
    """``async for`` over :func:`starmap`'s results."""
    return current(require=require, prefer=prefer).astarmap(fn, iterable, **kwargs)


def amap(
    fn: Callable[..., T],
    *iterables: Iterable[Any],
    require: str | None = None,
    prefer: str | None = None,
    **kwargs: Unpack[MapOptions],
) -> AsyncIterator[T]:
    """``current(require=..., prefer=...).amap(...)``: ``async for`` over the results; see
    :meth:`anyexec.Executor.amap`."""
    return current(require=require, prefer=prefer).amap(fn, *iterables, **kwargs)


def submit(
    fn: Callable[..., T],
    /,
    *args: Any,
    require: str | None = None,
    prefer: str | None = None,
    **kwargs: Any,
) -> Any:
    """``current(require=..., prefer=...).submit(fn, *args, **kwargs)``. ``require`` and
    ``prefer`` are taken by anyexec; to pass keyword arguments of those names to ``fn``,
    call ``anyexec.current().submit(...)``."""
    return current(require=require, prefer=prefer).submit(fn, *args, **kwargs)
