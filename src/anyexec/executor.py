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
import reprlib
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from anyexec import _chunking, _compat, _exit, config
from anyexec._worker.loops import is_async as _is_async
from anyexec._worker.tasks import ARGS, SINGLE, STAR, Call, Chunk, ChunkResult, Initializer
from anyexec.contract import Backend, cancel_unqueued
from anyexec.errors import AnyexecError, ConfigError, UnpicklableError, WorkerLost
from anyexec.mapping import MapOptions, MapPlan, aiter_map, iter_map

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from anyexec._shared import SharedStore

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
    runs fails as it does in the standard library. Once done it lets go of the backend's
    future and of the call's function and arguments (the standard library's futures do
    not keep them either), so nothing waits for the garbage collector.
    """

    def __init__(self, inner: cf.Future[Any], shape: Callable[[BaseException], BaseException]):
        super().__init__()
        self._inner: cf.Future[Any] | None = inner
        self._shape: Callable[[BaseException], BaseException] | None = shape
        inner.add_done_callback(self._copy)

    def cancel(self) -> bool:
        inner = self._inner
        if inner is not None and inner.cancel():
            return cancel_unqueued(self)
        return self.cancelled()

    def running(self) -> bool:
        inner = self._inner
        return inner is not None and not self.done() and inner.running()

    def _copy(self, inner: cf.Future[Any]) -> None:
        shape, self._inner, self._shape = self._shape, None, None
        if inner.cancelled():
            cancel_unqueued(self)
            return
        if self.done() or shape is None:
            return
        exc = inner.exception()
        if exc is None:
            self.set_result(inner.result())
        else:
            self.set_exception(shape(exc))


def _pickle_culprit(fn: Callable[..., Any], calls: Iterable[tuple[Any, ...]]) -> str | None:
    """Name what will not pickle, for the error message (only on the failure path); None
    when the function and every argument pickle (then it was the result or exception)."""
    import pickle

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
    return None


class _Port:
    """What the map engine may ask of an :class:`Executor` (``anyexec.mapping.Port``)."""

    def __init__(self, executor: Executor) -> None:
        settings = executor.settings
        self.executor = executor
        self.backend = settings.backend.name
        self.workers = settings.workers
        self.crossing = settings.backend.crosses in ("processes", "cluster")
        self.in_caller = settings.backend.crosses == "nothing"

    def submit_chunks(
        self, chunks: Sequence[Chunk], share_arrays: bool
    ) -> list[cf.Future[ChunkResult]]:
        ex = self.executor
        try:
            return ex._submit_chunks(chunks, share_arrays)
        except Exception as exc:  # raised by submit itself (say, it pickles at once)
            shaped = ex._shape(exc, chunks[0].fn, [c.args_of(i) for c in chunks for i in c.items])
            if shaped is exc:
                raise
            raise shaped from exc

    def chunk_error(self, exc: BaseException, chunk: Chunk) -> BaseException:
        return self.executor._shape(exc, chunk.fn, [chunk.args_of(i) for i in chunk.items])

    def grow(self, workers: int) -> None:
        self.executor._grow(workers)


class Executor(cf.Executor):
    """Run calls in parallel on the configured backend.

    ``Executor(backend=None, workers=None, **options)``: anything left ``None`` comes from
    the innermost ``anyexec.using()``, the environment, the config file, or the default
    (see :mod:`anyexec.config`). ``options`` are the backend's own; one it does not take is
    a :class:`~anyexec.errors.ConfigError`. ``max_workers`` is an alias of ``workers``.

    ``initializer(*initargs)`` runs once in each worker before its first task (once per
    worker thread on thread and asyncio, once per process on process, loky and dask, and
    again in a replacement after a crash); if it raises, that worker's tasks fail with
    :class:`~anyexec.errors.InitializerError`.

    The backend's pool starts on first use (or :meth:`start`). Usable wherever a
    ``concurrent.futures.Executor`` is accepted.
    """

    _task_timeout: float | None
    _retries: int
    _initializer: Initializer | None

    def __init__(
        self,
        backend: str | Backend | None = None,
        workers: int | str | None = None,
        *,
        task_timeout: float | None = None,
        retries: int = 0,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        max_workers: int | str | None = None,
        allow_oversubscribe: bool | None = None,
        **options: Any,
    ) -> None:
        if max_workers is not None:  # what concurrent.futures users type, with its rule
            if workers is not None:
                raise ConfigError("give workers= or its alias max_workers=, not both")
            if (
                isinstance(max_workers, int)
                and not isinstance(max_workers, bool)
                and max_workers <= 0
            ):
                raise ConfigError(
                    f"argument max_workers={max_workers}: must be greater than 0, as in "
                    f"concurrent.futures (workers=-1 means every usable CPU)"
                )
            workers = max_workers
        if initializer is None and tuple(initargs):
            raise ConfigError("initargs= was given without initializer=")
        self._init(
            config.resolve(
                backend,
                workers,
                options,
                allow_oversubscribe=allow_oversubscribe,
                initializer=initializer,
                initargs=tuple(initargs) if initializer is not None else None,
            )
        )
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
        self._initializer = self._make_initializer(settings)
        self._last_broken: cf.Executor | None = None
        self._lock = threading.RLock()
        self._pool = _Pool(settings.backend)
        self._finalizer = weakref.finalize(self, self._pool.close, False, True)
        self._crossing = settings.backend.crosses in ("processes", "cluster")
        self._port = _Port(self)
        self._shared_store: SharedStore | None = None
        # Its own lock: a chunk's done-callback releases arrays from a pool's thread while
        # the caller may hold self._lock (shutdown waits for the pool under it).
        self._store_lock = threading.Lock()

    @property
    def _store(self) -> SharedStore:
        """The shared arrays of this executor's maps, made on first use: a map that shares
        no array never imports the shared-memory machinery (``tempfile``, ``shutil``)."""
        with self._store_lock:
            if self._shared_store is None:
                from anyexec._shared import SharedStore

                self._shared_store = SharedStore()
            return self._shared_store

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
        original = getattr(exc, "original", None)
        if isinstance(exc, AnyexecError) and isinstance(original, BaseException):
            if exc.__cause__ is not original:  # a pool put the worker's traceback there
                if original.__cause__ is None:
                    original.__cause__ = exc.__cause__
                exc.__cause__ = original
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
            if what is None:
                err = UnpicklableError(
                    f"backend {self.backend!r} could not send the task's result (or its "
                    f"exception) back from its worker: {type(exc).__name__}: {exc}. Return "
                    f"something picklable"
                )
            else:
                err = UnpicklableError(
                    f"backend {self.backend!r} could not send {what} to its workers: "
                    f"{type(exc).__name__}: {exc}. Functions must be importable (defined at "
                    f"module level) and arguments picklable; backend='loky' also sends "
                    f"lambdas and closures (cloudpickle)"
                )
            err.__cause__ = exc
            return err
        return exc

    # -- work -------------------------------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        """Schedule ``fn(*args, **kwargs)``; returns a ``concurrent.futures.Future``."""
        call = Call(
            fn,
            args,
            kwargs,
            self._crossing,
            self._timeout_for(fn, self._task_timeout),
            self._initializer,
        )
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
        uses = self._share(chunks) if share_arrays and self._shares_memory(inner) else None
        try:
            try:
                futures = batch(inner, chunks)
            except cf.BrokenExecutor:
                fresh = self._replace_broken(inner)
                if uses and not self._shares_memory(fresh):  # the new workers may be elsewhere
                    self._unshare(chunks, uses)
                    uses = None
                futures = batch(fresh, chunks)
        except BaseException:
            if uses:
                self._unshare(chunks, uses)
            raise
        if uses:
            for fut, keys in zip(futures, uses):
                if keys:
                    # Done in any way (result, error, cancel, dead worker): free the files.
                    fut.add_done_callback(functools.partial(self._release, keys))
        return futures

    def _release(self, keys: list[int], _: object) -> None:
        self._store.release(keys)

    def _shares_memory(self, inner: cf.Executor) -> bool:
        """Whether ``map`` sends large arrays to ``inner``'s workers through shared memory:
        only where they are processes (threads share the caller's memory anyway) and the
        backend says they can open this machine's shared-memory files
        (:meth:`Backend.shares_memory <anyexec.contract.Backend.shares_memory>`: process
        and loky always, dask on its embedded cluster only). Asked for each batch of
        chunks, of the executor that batch goes to: the backend opens it lazily, and may
        replace it with another."""
        return self._crossing and bool(self._settings.backend.shares_memory(inner))

    def _unshare(self, chunks: Sequence[Chunk], uses: list[list[int]]) -> None:
        """Undo :meth:`_share` for chunks that were not sent: their files are released and
        they carry the caller's arrays again."""
        for chunk, keys in zip(chunks, uses):
            if keys:
                self._store.release(keys)
            if chunk.shared:
                chunk.items, chunk.shared = chunk.original, False

    def _share(self, chunks: Sequence[Chunk]) -> list[list[int]] | None:
        """Put the large numpy arrays of chunks bound for workers that share this machine's
        memory in shared-memory files (anyexec._shared); per chunk, the keys to release
        once it is done, or None when no chunk holds such an array."""
        if "numpy" not in sys.modules:  # no numpy imported: there can be no arrays
            return None
        uses: list[list[int]] = []
        any_shared = False
        for chunk in chunks:
            done = self._store.share(list(chunk.items), chunk.mode)
            if done is None:
                uses.append([])
                continue
            chunk.items, keys = done
            chunk.shared = any_shared = True
            uses.append(keys)
        return uses if any_shared else None

    def map(  # type: ignore[override]
        self, fn: Callable[..., T], *iterables: Iterable[Any], **options: Unpack[MapOptions]
    ) -> Iterator[T]:
        """``fn`` over the items of ``iterables`` (zipped, shortest wins), in parallel.

        Options (:class:`~anyexec.mapping.MapOptions`): ``timeout``, ``chunksize``
        (``"auto"`` adapts to measured task time), ``ordered``, ``buffersize`` (``"auto"``
        reads input lazily, a few chunks per worker ahead; ``None`` submits everything at
        once like the standard library), ``progress``, ``share_arrays``, ``task_timeout``,
        ``retries``, ``return_exceptions``.

        A task's exception is raised when its result is reached; closing or dropping the
        iterator cancels work not yet started.
        """
        if not iterables:
            return iter(())
        items, mode = _items(iterables)
        return iter_map(self._port, fn, items, self._plan(fn, iterables, mode, options))

    def starmap(
        self, fn: Callable[..., T], iterable: Iterable[Any], **options: Unpack[MapOptions]
    ) -> Iterator[T]:
        """``fn(*item)`` for each argument tuple, or ``fn(*a.args, **a.kwargs)`` for each
        :class:`anyexec.Args` item (keyword arguments per item); otherwise :meth:`map`."""
        return iter_map(self._port, fn, iter(iterable), self._plan(fn, [iterable], STAR, options))

    def amap(
        self, fn: Callable[..., T], *iterables: Iterable[Any], **options: Unpack[MapOptions]
    ) -> AsyncIterator[T]:
        """``async for r in ex.amap(...)``: :meth:`map` for asyncio and trio code.

        Same options and semantics; waiting never blocks the event loop, and cancelling
        the iterating task (or closing the iterator) cancels the chunks not yet started.
        """
        if not iterables:
            return _empty()
        items, mode = _items(iterables)
        return aiter_map(self._port, fn, items, self._plan(fn, iterables, mode, options))

    def astarmap(
        self, fn: Callable[..., T], iterable: Iterable[Any], **options: Unpack[MapOptions]
    ) -> AsyncIterator[T]:
        """The async form of :meth:`starmap`."""
        return aiter_map(self._port, fn, iter(iterable), self._plan(fn, [iterable], STAR, options))

    def _plan(
        self,
        fn: Callable[..., Any],
        iterables: Sequence[Iterable[Any]],
        mode: int,
        options: Mapping[str, Any],
    ) -> MapPlan:
        """Check one map's options (:class:`~anyexec.mapping.MapOptions`) into a plan."""
        unknown = set(options) - MapOptions.__optional_keys__
        if unknown:
            name = sorted(unknown)[0]
            raise TypeError(
                f"map() got an unexpected keyword argument {name!r}; it takes "
                f"{', '.join(sorted(MapOptions.__optional_keys__))}"
            )
        get = options.get
        timeout = get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
        ):
            raise ConfigError(f"argument timeout={timeout!r}: must be a number of seconds >= 0")
        backend = self._settings.backend
        seconds = _check_seconds("task_timeout", get("task_timeout"))
        if seconds is None:
            seconds = self._task_timeout
        abandon = self._abandon_after(fn, seconds)
        retries = get("retries")
        win = _chunking.window(get("buffersize", "auto"), backend.chunks_per_worker, self.workers)
        total = _chunking.known_length(iterables)
        sizer = _chunking.ChunkSizer.plan(
            _chunking.check_chunksize(get("chunksize", "auto")),
            self.workers,
            backend.target_chunk_seconds,
            total,
            everything_now=win.size is None,
            one_per_task=abandon is not None,
        )
        return MapPlan(
            window=win,
            sizer=sizer,
            ordered=bool(get("ordered", True)),
            deadline=None if timeout is None else time.monotonic() + timeout,
            progress=get("progress", False),
            share_arrays=bool(get("share_arrays", True)),
            task_timeout=None if abandon is not None else self._timeout_for(fn, seconds),
            abandon_after=abandon,
            retries=self._retries if retries is None else _check_retries(retries),
            return_exceptions=bool(get("return_exceptions", False)),
            mode=mode,
            init=self._initializer,
        )

    async def asubmit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``await ex.asubmit(fn, ...)``: :meth:`submit` awaited from asyncio or trio.
        Cancelling the awaiting task cancels the call if it has not started."""
        from anyexec._aio import await_future

        result: T = await await_future(self.submit(fn, *args, **kwargs))
        return result

    @staticmethod
    def _make_initializer(settings: config.Settings) -> Initializer | None:
        """The resolved initializer as tasks carry it: a fresh token per executor, so a
        worker runs it once for each executor that uses it."""
        if settings.initializer is None:
            return None
        per_thread = settings.backend.crosses in ("nothing", "threads")
        import uuid  # here: it imports platform, and most executors have no initializer

        return Initializer(uuid.uuid4().hex, settings.initializer, settings.initargs, per_thread)

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


def _items(iterables: Sequence[Iterable[Any]]) -> tuple[Iterator[Any], int]:
    """The items to map and how they are passed: one iterable's values as they are (no
    1-tuple per item), several zipped into argument tuples."""
    if len(iterables) == 1:
        return iter(iterables[0]), SINGLE
    return zip(*iterables), ARGS


async def _empty() -> AsyncIterator[Any]:
    return
    yield  # an async generator that yields nothing


def _pending_of(inner: cf.Executor) -> list[cf.Future[Any]]:
    """Futures a standard pool has not started, for abort(); empty where unknown."""
    return _compat.process_pool_pending(inner)


def _check_seconds(name: str, value: Any) -> float | None:
    """A time limit in seconds, checked when it is given (``Executor(task_timeout=...)``,
    ``map(task_timeout=...)``): a positive finite number, at most what the standard
    library's waits accept; None is no limit. ``inf`` and ``nan`` are refused, since "no
    limit" is None and a limit the timers cannot hold would fail every task instead."""
    import math

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"argument {name}={value!r}: must be a positive number of seconds, or None for no limit"
        )
    if not math.isfinite(value) or value > threading.TIMEOUT_MAX:
        raise ConfigError(
            f"argument {name}={value!r}: must be a finite number of seconds, at most "
            f"{threading.TIMEOUT_MAX:g}; use None for no limit"
        )
    if not value > 0:
        raise ConfigError(f"argument {name}={value!r}: must be a positive number of seconds")
    return float(value)


def _check_retries(value: Any) -> int:
    """``retries``: a whole number >= 0 (an ``int``, or anything with ``__index__``)."""
    import operator

    if isinstance(value, bool):
        raise ConfigError(f"argument retries={value!r}: must be a whole number >= 0")
    try:
        count = operator.index(value)
    except TypeError:
        raise ConfigError(f"argument retries={value!r}: must be a whole number >= 0") from None
    if count < 0:
        raise ConfigError(f"argument retries={value!r}: must be a whole number >= 0")
    return count


#: What the picklers of CPython 3.10-3.13 say when an object cannot be pickled: "cannot
#: pickle '_thread.lock' object", "Can't pickle local object ..." and, from 3.13, "Can't get
#: local object ..." (a lambda or a function defined in a function).
_PICKLE_WORDS = ("pickl", "can't get local object", "can't get attribute")


def _is_pickling_error(exc: BaseException) -> bool:
    """A failure to pickle, by its type, its message, or the error it was raised from (an
    engine's own serialization error that keeps the pickler's as its cause)."""
    import pickle

    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, pickle.PicklingError):
            return True
        if isinstance(error, (TypeError, AttributeError)):
            text = str(error).lower()
            if any(word in text for word in _PICKLE_WORDS):
                return True
        error = error.__cause__
    return False
