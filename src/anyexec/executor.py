"""``anyexec.Executor``: one ``concurrent.futures.Executor`` over every backend.

It resolves the configuration once, opens the backend's executor on first use, and adds
what the standard executors lack or do differently per pool: ``map`` with working chunks,
bounded input and unordered results (``anyexec.mapping``), and errors of one shape on every
backend: a worker's death is :class:`~anyexec.errors.WorkerLost`, something that cannot be
sent to a worker is :class:`~anyexec.errors.UnpicklableError`.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import pickle
import reprlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from anyexec import _compat, _exit, config
from anyexec._shared import SharedStore
from anyexec._worker.loops import is_async as _is_async
from anyexec._worker.tasks import Call, Chunk, ChunkResult
from anyexec.contract import Backend, cancel_unqueued
from anyexec.errors import ConfigError, UnpicklableError, WorkerLost
from anyexec.mapping import aiter_map, iter_map

__all__ = ["Executor"]

T = TypeVar("T")


class _Pool:
    """The backend executor an :class:`Executor` owns; closed by ``shutdown`` or, if the
    Executor is dropped or the interpreter exits first, by a finalizer."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.inner: cf.Executor | None = None
        self.closed = False

    def close(self, wait: bool = True, cancel_futures: bool = False) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            try:
                inner.shutdown(wait=wait, cancel_futures=cancel_futures)
            finally:
                self.backend.release(inner)


class _Future(cf.Future):  # type: ignore[type-arg]
    """A backend future seen through anyexec: same result, errors shaped by the core.

    ``cancel`` and ``running`` ask the backend's future, so cancelling a task that already
    runs fails as it does in the standard library.
    """

    def __init__(self, inner: cf.Future[Any], shape: Callable[[BaseException], BaseException]):
        super().__init__()
        self._inner = inner
        self._shape = shape
        inner.add_done_callback(self._copy)

    def cancel(self) -> bool:
        if self._inner.cancel():
            return self._cancel_and_notify()
        return self.cancelled()

    def _cancel_and_notify(self) -> bool:
        return cancel_unqueued(self)

    def running(self) -> bool:
        return not self.done() and self._inner.running()

    def _copy(self, inner: cf.Future[Any]) -> None:
        if inner.cancelled():
            self._cancel_and_notify()
            return
        if self.done():
            return
        exc = inner.exception()
        if exc is None:
            self.set_result(inner.result())
        else:
            self.set_exception(self._shape(exc))


def _check_chunksize(chunksize: Any) -> int | None:
    if chunksize == "auto" or chunksize is None:
        return None
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ConfigError(f"argument chunksize={chunksize!r}: must be a positive int or 'auto'")
    return chunksize


def _pickle_culprit(fn: Callable[..., Any], calls: Iterable[tuple[Any, ...]]) -> str:
    """Name what will not pickle, for the error message (only on the failure path)."""
    try:
        pickle.dumps(fn)
    except Exception as exc:
        return f"the function {reprlib.repr(fn)} ({exc})"
    for i, args in enumerate(calls):
        for j, arg in enumerate(args):
            try:
                pickle.dumps(arg)
            except Exception as exc:
                return f"argument {j} of task {i}, {reprlib.repr(arg)} ({exc})"
    return "the function or an argument"


class Executor(cf.Executor):
    """Run calls in parallel on the configured backend.

    ``Executor(backend=None, workers=None, **options)``: anything left ``None`` comes from
    the innermost ``anyexec.using()``, the environment, the config file, or the default
    (see :mod:`anyexec.config`). ``options`` are the backend's own; one it does not take is
    a :class:`~anyexec.errors.ConfigError`.

    The backend's pool starts on first use (or :meth:`start`). Usable wherever a
    ``concurrent.futures.Executor`` is accepted.
    """

    _task_timeout: float | None
    _retries: int

    def __init__(
        self,
        backend: str | Backend | None = None,
        workers: int | str | None = None,
        *,
        task_timeout: float | None = None,
        retries: int = 0,
        **options: Any,
    ) -> None:
        self._init(config.resolve(backend, workers, options))
        self._task_timeout = _check_seconds("task_timeout", task_timeout)
        self._retries = _check_retries(retries)

    @classmethod
    def from_settings(cls, settings: config.Settings) -> Executor:
        """An executor for already resolved settings (used by ``anyexec.current``)."""
        self = cls.__new__(cls)
        self._init(settings)
        return self

    def _init(self, settings: config.Settings) -> None:
        self._settings = settings
        self._task_timeout = None
        self._retries = 0
        self._last_broken: cf.Executor | None = None
        self._lock = threading.RLock()
        self._pool = _Pool(settings.backend)
        self._finalizer = weakref.finalize(self, self._pool.close, False, True)
        self._crossing = settings.backend.crosses in ("processes", "cluster")
        self._target_chunk_seconds = settings.backend.target_chunk_seconds
        self._in_caller = settings.backend.crosses == "nothing"
        # Large arrays go through shared memory to process workers on this machine; a
        # cluster's workers may be elsewhere, and threads share memory anyway.
        self._shares = settings.backend.crosses == "processes"
        self._store = SharedStore()

    # -- what it is ---------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """The backend's name."""
        return self._settings.backend.name

    @property
    def workers(self) -> int:
        """How many workers run tasks at once."""
        return self._settings.workers

    @property
    def options(self) -> Mapping[str, Any]:
        """The backend options in force (read-only)."""
        return dict(self._settings.options)

    @property
    def settings(self) -> config.Settings:
        """The resolved configuration, with where each value came from."""
        return self._settings

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def __repr__(self) -> str:
        state = "closed" if self._pool.closed else ("running" if self._pool.inner else "idle")
        opts = "".join(f" {k}={v!r}" for k, v in self._settings.options.items())
        return f"<anyexec.Executor backend={self.backend!r} workers={self.workers}{opts} {state}>"

    # -- lifecycle ------------------------------------------------------------------------

    def _inner(self) -> cf.Executor:
        _exit.check()  # after interpreter shutdown began, refuse as concurrent.futures does
        inner = self._pool.inner
        if inner is not None:
            return inner
        with self._lock:
            if self._pool.closed:
                raise RuntimeError(f"cannot schedule new futures after shutdown: {self!r}")
            if self._pool.inner is None:
                s = self._settings
                self._pool.inner = s.backend.open(s.workers, **s.options)
            return self._pool.inner

    def _replace_broken(self, broken: cf.Executor) -> cf.Executor:
        """A worker died and the backend's pool refuses work: start a fresh one."""
        with self._lock:
            if self._pool.inner is broken:
                self._last_broken = broken  # for the exit codes in the errors still to come
                self._pool.close(wait=False, cancel_futures=True)
            return self._inner()

    def start(self) -> Executor:
        """Start the pool now and run one trivial task per worker, so the first real task
        does not pay for start-up (the measurement harness calls this)."""
        futures = [self.submit(int) for _ in range(self.workers)]
        for fut in futures:
            fut.result()
        return self

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work and close the pool (idempotent)."""
        with self._lock:
            self._pool.closed = True
            self._pool.close(wait=wait, cancel_futures=cancel_futures)

    def kill_running(self) -> None:
        """Stop the tasks running now, where the backend can (docs/reliability.md):
        process and loky terminate their workers (those tasks fail with WorkerLost and the
        next submission starts fresh workers); asyncio cancels running coroutines; the
        embedded dask cluster restarts its workers. Threads cannot be stopped:
        :class:`~anyexec.errors.Unsupported`."""
        inner = self._pool.inner
        if inner is not None:
            self._settings.backend.kill(inner)

    def abort(self) -> None:
        """Cancel pending work, stop running work where possible, and close without
        waiting. What ``with ex:`` does when Ctrl-C (or SystemExit) leaves the block."""
        inner = self._pool.inner
        with self._lock:
            self._pool.closed = True
        if inner is not None:
            for fut in _pending_of(inner):
                fut.cancel()
            try:
                self._settings.backend.kill(inner)
            except Exception:  # Unsupported, or the pool is already gone
                pass
        self._pool.close(wait=False, cancel_futures=True)

    def _grow(self, workers: int) -> None:
        inner = self._pool.inner
        if inner is not None:
            self._settings.backend.grow(inner, workers)

    def reopen(self) -> Executor:
        """Accept work again after :meth:`shutdown`; a fresh pool starts on first use."""
        if not self._settings.backend.reopenable:
            raise RuntimeError(
                f"backend {self.backend!r} cannot be reopened after shutdown; "
                f"create a new anyexec.Executor instead"
            )
        with self._lock:
            self._pool.closed = False
        return self

    def __enter__(self) -> Executor:
        if self._pool.closed:
            self.reopen()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if ev is not None and not isinstance(ev, Exception):  # Ctrl-C, SystemExit
            self.abort()
        else:
            self.shutdown(wait=True)

    # -- errors of one shape --------------------------------------------------------------

    def _shape(
        self,
        exc: BaseException,
        fn: Callable[..., Any] | None = None,
        calls: Sequence[tuple[Any, ...]] = (),
    ) -> BaseException:
        if isinstance(exc, (WorkerLost, UnpicklableError)):
            return exc
        if isinstance(exc, cf.BrokenExecutor):
            hint = ""
            if self._crossing and self._settings.backend.crosses == "processes":
                hint = (
                    ". If it died at once, check that the script starts its work under "
                    "`if __name__ == '__main__':`, which the spawn and forkserver start "
                    "methods need"
                )
            codes = self._settings.backend.exit_codes(self._pool.inner or self._last_broken)
            how = f" (worker exit codes: {', '.join(codes)})" if codes else ""
            lost = WorkerLost(
                f"a worker of backend {self.backend!r} died while running this "
                f"task{how}: {type(exc).__name__}: {exc}{hint}"
            )
            lost.__cause__ = exc
            return lost
        if self._crossing and _is_pickling_error(exc):
            what = _pickle_culprit(fn, calls) if fn is not None else "the function or an argument"
            err = UnpicklableError(
                f"backend {self.backend!r} could not send {what} to its workers: "
                f"{type(exc).__name__}: {exc}. Functions must be importable (defined at "
                f"module level) and arguments picklable; backend='loky' also sends lambdas "
                f"and closures (cloudpickle)"
            )
            err.__cause__ = exc
            return err
        return exc

    def _chunk_error(self, exc: BaseException, chunk: Chunk) -> BaseException:
        return self._shape(exc, chunk.fn, chunk.items)

    # -- work -------------------------------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        """Schedule ``fn(*args, **kwargs)``; returns a ``concurrent.futures.Future``."""
        call = Call(fn, args, kwargs, self._crossing, self._timeout_for(fn, self._task_timeout))
        inner = self._inner()
        try:
            fut = inner.submit(call)
        except cf.BrokenExecutor:
            fut = self._replace_broken(inner).submit(call)
        except Exception as exc:
            raise self._shape(exc, fn, [args]) from exc
        return _Future(fut, lambda exc: self._shape(exc, fn, [args]))

    def _submit_chunks(
        self, chunks: Sequence[Chunk], share_arrays: bool = True
    ) -> list[cf.Future[ChunkResult]]:
        inner = self._inner()
        batch = self._settings.backend.submit_batch
        uses = self._share(chunks) if share_arrays and self._shares else None
        try:
            try:
                futures = batch(inner, chunks)
            except cf.BrokenExecutor:
                futures = batch(self._replace_broken(inner), chunks)
        except BaseException:
            if uses:
                for keys in uses:
                    self._store.release(keys)
            raise
        if uses:
            for fut, keys in zip(futures, uses):
                if keys:
                    # Done in any way (result, error, cancel, dead worker): free the files.
                    fut.add_done_callback(functools.partial(self._release, keys))
        return futures

    def _release(self, keys: list[int], _: object) -> None:
        self._store.release(keys)

    def _share(self, chunks: Sequence[Chunk]) -> list[list[int]] | None:
        """Put large numpy arrays of process-bound chunks in shared memory (anyexec._shared)."""
        uses: list[list[int]] = []
        any_shared = False
        for chunk in chunks:
            done = self._store.share(list(chunk.items))
            if done is None:
                uses.append([])
                continue
            chunk.items, keys = done
            chunk.shared = any_shared = True
            uses.append(keys)
        return uses if any_shared else None

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | str = "auto",
        ordered: bool = True,
        buffersize: int | str | None = "auto",
        progress: bool | str | dict[str, Any] = False,
        share_arrays: bool = True,
        task_timeout: float | None = None,
        retries: int | None = None,
        return_exceptions: bool = False,
    ) -> Iterator[T]:
        """``fn`` over the items of ``iterables`` (zipped, shortest wins), in parallel.

        - ``chunksize``: items per submission; ``"auto"`` adapts to measured task time.
        - ``ordered``: input order (default) or completion order.
        - ``buffersize``: chunks in flight; ``"auto"`` is four per worker (sixteen on dask),
          so input is read lazily; ``None`` submits everything at once like the standard library.
        - ``timeout``: seconds from this call until every result must be in, else
          ``TimeoutError`` (as ``concurrent.futures``).
        - ``progress``: True (or a description, or tqdm keyword arguments) shows a bar
          counting tasks.
        - ``share_arrays``: numpy arrays of 1 MiB or more reach process workers through
          shared memory (one copy, no pickling); False pickles them instead.
        - ``task_timeout``: seconds one task may run; past it that task fails with
          ``TaskTimeout`` and the others go on (see ``docs/reliability.md`` for where a
          running task can be stopped).
        - ``retries``: re-run a chunk whose worker died up to this many times, alone, so a
          task that kills its worker takes no other task with it (for idempotent work).
        - ``return_exceptions``: yield a failed task's exception as its result instead of
          raising it, so every task's outcome arrives.

        A task's exception is raised when its result is reached; closing or dropping the
        iterator cancels work not yet started.
        """
        return iter_map(
            self,
            fn,
            iterables,
            **self._map_args(iterables, timeout, chunksize, ordered, buffersize, progress),
            share_arrays=share_arrays,
            **self._fault_args(fn, task_timeout, retries, return_exceptions),
        )

    def amap(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | str = "auto",
        ordered: bool = True,
        buffersize: int | str | None = "auto",
        progress: bool | str | dict[str, Any] = False,
        share_arrays: bool = True,
        task_timeout: float | None = None,
        retries: int | None = None,
        return_exceptions: bool = False,
    ) -> AsyncIterator[T]:
        """``async for r in ex.amap(...)``: :meth:`map` for asyncio and trio code.

        Same arguments and semantics; waiting never blocks the event loop, and cancelling
        the iterating task (or closing the iterator) cancels the chunks not yet started.
        """
        return aiter_map(
            self,
            fn,
            iterables,
            **self._map_args(iterables, timeout, chunksize, ordered, buffersize, progress),
            share_arrays=share_arrays,
            **self._fault_args(fn, task_timeout, retries, return_exceptions),
        )

    async def asubmit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``await ex.asubmit(fn, ...)``: :meth:`submit` awaited from asyncio or trio.
        Cancelling the awaiting task cancels the call if it has not started."""
        from anyexec._aio import await_future

        result: T = await await_future(self.submit(fn, *args, **kwargs))
        return result

    def _fault_args(
        self,
        fn: Callable[..., Any],
        task_timeout: float | None,
        retries: int | None,
        return_exceptions: bool,
    ) -> dict[str, Any]:
        seconds = _check_seconds("task_timeout", task_timeout)
        if seconds is None:
            seconds = self._task_timeout
        abandon = self._abandon_after(fn, seconds)
        return {
            "task_timeout": None if abandon is not None else self._timeout_for(fn, seconds),
            "abandon_after": abandon,
            "retries": self._retries if retries is None else _check_retries(retries),
            "return_exceptions": bool(return_exceptions),
        }

    def _timeout_for(self, fn: Callable[..., Any], seconds: float | None) -> float | None:
        """``seconds`` if the worker can stop ``fn`` itself when it runs too long (a timer
        in a process's main thread, or a cancelled coroutine); None with no timeout;
        raises where the task can only be abandoned (see :meth:`_abandon_after`)."""
        if seconds is None:
            return None
        backend = self._settings.backend
        if backend.timeout_mode == "worker" or _is_async(fn):
            return seconds
        if backend.crosses == "nothing" and threading.current_thread() is threading.main_thread():
            return seconds
        raise ConfigError(
            f"task_timeout: backend {self.backend!r} cannot stop a running plain function "
            f"(its tasks run in threads, which Python cannot interrupt). Use backend 'process', "
            f"'loky' or 'dask', make the task a coroutine function, or use map(task_timeout=...), "
            f"which abandons the task where the backend allows it"
        )

    def _abandon_after(self, fn: Callable[..., Any], seconds: float | None) -> float | None:
        """For ``map``: where the worker cannot stop ``fn``, the seconds after which the
        caller abandons it (its thread runs on, its result is discarded, and the pool gets a
        replacement worker). None where the worker stops it itself, or there is no limit."""
        if seconds is None:
            return None
        try:
            self._timeout_for(fn, seconds)
            return None
        except ConfigError:
            if self._settings.backend.timeout_mode == "abandon":
                return seconds
            raise

    def _map_args(
        self,
        iterables: Sequence[Iterable[Any]],
        timeout: float | None,
        chunksize: Any,
        ordered: bool,
        buffersize: Any,
        progress: Any,
    ) -> dict[str, Any]:
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        if buffersize == "auto":
            window: int | None = self._settings.backend.chunks_per_worker * self.workers
        elif buffersize is None:
            window = None
        elif isinstance(buffersize, int) and not isinstance(buffersize, bool) and buffersize >= 1:
            window = buffersize
        else:
            raise ConfigError(
                f"argument buffersize={buffersize!r}: must be a positive int, 'auto' or None"
            )
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise ConfigError(f"argument timeout={timeout!r}: must be a number of seconds >= 0")
        return {
            "timeout": timeout,
            "chunksize": _check_chunksize(chunksize),
            "ordered": bool(ordered),
            "buffersize": window,
            "progress": progress,
        }


def _pending_of(inner: cf.Executor) -> list[cf.Future[Any]]:
    """Futures a standard pool has not started, for abort(); empty where unknown."""
    return _compat.process_pool_pending(inner)


def _check_seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"argument {name}={value!r}: must be a positive number of seconds")
    return float(value)


def _check_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"argument retries={value!r}: must be a whole number >= 0")
    return value


def _is_pickling_error(exc: BaseException) -> bool:
    if isinstance(exc, pickle.PicklingError):
        return True
    text = str(exc).lower()
    return isinstance(exc, (TypeError, AttributeError)) and "pickle" in text
