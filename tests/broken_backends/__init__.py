"""Deliberately broken backends, one defect each, for ``test_conformance_can_fail.py``.

Each is a plausible mistake a backend author could make (several were made by real
plugins). They live in an importable package so process workers can unpickle what they
send. ``BROKEN`` maps a defect's name to a factory of its backend.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from anyexec._worker.failures import Failure
from anyexec._worker.tasks import Call, Chunk, ChunkResult
from anyexec.builtin.process import ProcessBackend
from anyexec.builtin.thread import ThreadBackend
from anyexec.contract import Backend


class Tampering(cf.Executor):
    """A real thread pool, with ``tamper(task)`` run in the worker in place of ``task()``."""

    def __init__(self, workers: int, tamper: Callable[[Any], Any]) -> None:
        self.inner = cf.ThreadPoolExecutor(workers)
        self.tamper = tamper

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if isinstance(fn, (Chunk, Call)):
            return self.inner.submit(self.tamper, fn)
        return self.inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)


def drop(task: Any) -> Any:
    """Loses the last result of every chunk."""
    out = task()
    if isinstance(task, Chunk):
        return ChunkResult(out.outcomes[:-1], out.seconds, out.failed)
    return out


def reorder(task: Any) -> Any:
    """Returns a chunk's results back to front."""
    out = task()
    if isinstance(task, Chunk):
        return ChunkResult(out.outcomes[::-1], out.seconds, out.failed)
    return out


def twice(task: Any) -> Any:
    """Runs every task twice (a retry loop that re-runs on success too)."""
    task()
    return task()


def swallow(task: Any) -> Any:
    """Turns a task's exception into a None result."""
    if isinstance(task, Call):
        try:
            return task()
        except Exception:
            return None
    out = task()
    return ChunkResult(
        [None if type(v) is Failure else v for v in out.outcomes], out.seconds, False
    )


def retype(task: Any) -> Any:
    """Re-raises every task's exception as a RuntimeError with the same message."""
    if isinstance(task, Call):
        try:
            return task()
        except Exception as exc:
            raise RuntimeError(str(exc)) from None
    out = task()
    return ChunkResult(
        [
            Failure(RuntimeError(str(v.exc)), None) if type(v) is Failure else v
            for v in out.outcomes
        ],
        out.seconds,
        out.failed,
    )


def none_fails(task: Any) -> Any:
    """Treats a None result as "no result" and fails (a sentinel mistaken for a value)."""
    out = task()
    if isinstance(task, Call) and out is None:
        raise LookupError("the worker sent no result")
    return out


class TamperingBackend(ThreadBackend):
    """A thread pool whose results pass through one of the functions above."""

    def __init__(self, tamper: Callable[[Any], Any]) -> None:
        self.tamper = tamper
        self.name = tamper.__name__

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return Tampering(workers, self.tamper)


class _Stuck(cf.Future):  # type: ignore[type-arg]
    """A future that never completes."""


class NeverOnError(ThreadBackend):
    """A failing task's future never completes (an error callback that was never wired)."""

    name = "never_on_error"

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _NeverOnErrorExecutor(workers)


class _NeverOnErrorExecutor(cf.ThreadPoolExecutor):
    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        outer: cf.Future[Any] = cf.Future()
        inner = super().submit(fn, *args, **kwargs)

        def copy(f: cf.Future[Any]) -> None:
            if f.cancelled():
                outer.cancel()
                outer.set_running_or_notify_cancel()
                return
            exc = f.exception()
            out = None if exc is not None else f.result()
            if exc is not None or (isinstance(out, ChunkResult) and out.failed):
                return  # the error is dropped: the future stays pending forever
            outer.set_running_or_notify_cancel()
            outer.set_result(out)

        inner.add_done_callback(copy)
        return outer


class LeakyProcess(ThreadBackend):
    """Starts a helper process on open and never stops it."""

    name = "leak_process"

    def open(self, workers: int, **options: Any) -> cf.Executor:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        return super().open(workers, **options)


class LeakyThread(ThreadBackend):
    """Starts a monitor thread on open and never stops it."""

    name = "leak_thread"

    def open(self, workers: int, **options: Any) -> cf.Executor:
        threading.Thread(target=threading.Event().wait, daemon=True, name="monitor").start()
        return super().open(workers, **options)


class _EarlyShutdown(cf.ThreadPoolExecutor):
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=False, cancel_futures=cancel_futures)  # ignores wait


class EarlyShutdown(ThreadBackend):
    """``shutdown(wait=True)`` returns before the submitted calls finished."""

    name = "early_shutdown"

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _EarlyShutdown(workers)


class _HangingShutdown(cf.ThreadPoolExecutor):
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:  # joins a monitor thread that never ends (and holds up interpreter exit)
            monitor = threading.Thread(target=threading.Event().wait, name="monitor")
            monitor.start()
            monitor.join()


class HangingShutdown(ThreadBackend):
    """``shutdown(wait=True)`` never returns."""

    name = "hang_shutdown"

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _HangingShutdown(workers)


class _IgnoresCancelFutures(cf.ThreadPoolExecutor):
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait)


class IgnoresCancelFutures(ThreadBackend):
    """``shutdown(cancel_futures=True)`` cancels nothing."""

    name = "ignore_cancel_futures"

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _IgnoresCancelFutures(workers)


class _Uncancellable(cf.ThreadPoolExecutor):
    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        outer: cf.Future[Any] = cf.Future()
        outer.set_running_or_notify_cancel()  # "running" from the start: cancel() says no
        inner = super().submit(fn, *args, **kwargs)

        def copy(f: cf.Future[Any]) -> None:
            if f.cancelled():
                outer.set_exception(cf.CancelledError())
            elif f.exception() is not None:
                outer.set_exception(f.exception())  # type: ignore[arg-type]
            else:
                outer.set_result(f.result())

        inner.add_done_callback(copy)
        return outer


class Uncancellable(ThreadBackend):
    """Marks every future running at submit, so none can be cancelled."""

    name = "uncancellable"

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _Uncancellable(workers)


class _FakeCancel(cf.ThreadPoolExecutor):
    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        outer: cf.Future[Any] = cf.Future()

        def run() -> None:
            try:
                value = fn(*args, **kwargs)
            except BaseException as exc:
                if not outer.done():
                    outer.set_exception(exc)
            else:
                if not outer.done():
                    outer.set_result(value)

        super().submit(run)  # runs even once the future was cancelled
        return outer


class FakeCancel(ThreadBackend):
    """``cancel()`` says True, but the call runs anyway (set_running_or_notify_cancel is
    never called)."""

    name = "fake_cancel"

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _FakeCancel(workers)


class _Inline(cf.Executor):
    def __init__(self) -> None:
        self._closed = False

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        fut: cf.Future[Any] = cf.Future()
        fut.set_running_or_notify_cancel()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True


class Inline(ThreadBackend):
    """Claims to run tasks in threads but runs each inside ``submit``."""

    name = "inline"

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _Inline()


class OneWorker(ThreadBackend):
    """Opens one worker whatever ``workers`` says."""

    name = "one_worker"

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return cf.ThreadPoolExecutor(1)


class BlockingBatch(ThreadBackend):
    """A "native" batch path that waits for the whole batch before handing back its
    futures, so ``map``'s deadline is never looked at while tasks run."""

    name = "blocking_batch"

    def submit_batch(
        self, executor: cf.Executor, calls: Sequence[Callable[[], Any]]
    ) -> list[cf.Future[Any]]:
        futures = [executor.submit(call) for call in calls]
        cf.wait(futures)
        return futures


# -- process pools -----------------------------------------------------------------------


class ProcessExpired(Exception):
    """A pebble-like report of a dead worker: not a BrokenExecutor."""


class _Relaying(cf.ProcessPoolExecutor):
    """A process pool whose futures are copies of the real ones; ``error(exc)`` decides
    what a failed copy gets: an exception, or None to leave it pending forever."""

    def error(self, exc: BaseException) -> BaseException | None:
        return exc

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        outer: cf.Future[Any] = cf.Future()
        inner = super().submit(fn, *args, **kwargs)

        def copy(f: cf.Future[Any]) -> None:
            if f.cancelled():
                outer.cancel()
                outer.set_running_or_notify_cancel()
                return
            exc = f.exception()
            if exc is not None:
                exc = self.error(exc)
                if exc is None:
                    return  # dropped: the caller waits forever
            outer.set_running_or_notify_cancel()
            if exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(f.result())

        inner.add_done_callback(copy)
        return outer


class _OwnDeathError(_Relaying):
    """A process pool that reports a dead worker with its own exception type."""

    def error(self, exc: BaseException) -> BaseException | None:
        if isinstance(exc, cf.BrokenExecutor):
            return ProcessExpired(f"Abnormal termination: {exc}")
        return exc


def _spawn() -> Any:
    return multiprocessing.get_context("spawn")


class PebbleLike(ProcessBackend):
    """A process pool whose dead worker surfaces as ``ProcessExpired(Exception)``."""

    name = "pebble_like"
    options = {}

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _OwnDeathError(workers, mp_context=_spawn())


def _is_pickling_error(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, pickle.PicklingError):
        return True
    return isinstance(exc, (TypeError, AttributeError)) and "pickl" in str(exc).lower()


class _DropsPicklingErrors(_Relaying):
    """An mpire-like pool: a pickling error is logged nowhere and the future waits forever."""

    def error(self, exc: BaseException) -> BaseException | None:
        if _is_pickling_error(exc) or _is_pickling_error(exc.__cause__):
            return None
        return exc


class MpireLike(ProcessBackend):
    """A process pool that drops pickling errors silently (the future never completes)."""

    name = "mpire_like"
    options = {}

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _DropsPicklingErrors(workers, mp_context=_spawn())


class _LosesDeadWorkersTasks(_Relaying):
    """Like ``multiprocessing.Pool``: a dead worker is replaced, its task forgotten."""

    def error(self, exc: BaseException) -> BaseException | None:
        return None if isinstance(exc, cf.BrokenExecutor) else exc


class ForgetsDeadWorkers(ProcessBackend):
    """A process pool whose dead worker's task never completes."""

    name = "forgets_dead_workers"
    options = {}

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _LosesDeadWorkersTasks(workers, mp_context=_spawn())


class ShutdownExecutorError(RuntimeError):
    """What a loky-like pool gives the tasks it stopped on purpose."""


class _StopsWithItsOwnError(_Relaying):
    """A process pool that reports the tasks ``kill()`` stopped with its own error."""

    killed = False

    def error(self, exc: BaseException) -> BaseException | None:
        if self.killed and isinstance(exc, cf.BrokenExecutor):
            return ShutdownExecutorError(f"the pool was stopped: {exc}")
        return exc


class KillOwnError(ProcessBackend):
    """``kill_running()`` stops the workers, but the tasks it stopped fail with the pool's
    own ``ShutdownExecutorError``, not a BrokenExecutor (a worker that dies on its own is
    reported right)."""

    name = "kill_own_error"
    options = {}

    def open(self, workers: int, **options: Any) -> cf.Executor:
        return _StopsWithItsOwnError(workers, mp_context=_spawn())

    def kill(self, executor: cf.Executor) -> None:
        assert isinstance(executor, _StopsWithItsOwnError)
        executor.killed = True
        super().kill(executor)


def _backends() -> dict[str, Callable[[], Backend]]:
    out: dict[str, Callable[[], Backend]] = {}
    for tamper in (drop, reorder, twice, swallow, retype, none_fails):
        out[tamper.__name__] = lambda t=tamper: TamperingBackend(t)  # type: ignore[misc]
    for cls in (
        NeverOnError,
        LeakyProcess,
        LeakyThread,
        EarlyShutdown,
        HangingShutdown,
        IgnoresCancelFutures,
        Uncancellable,
        FakeCancel,
        Inline,
        OneWorker,
        BlockingBatch,
        PebbleLike,
        MpireLike,
        ForgetsDeadWorkers,
        KillOwnError,
    ):
        out[cls.name] = cls
    return out


#: Every broken backend, by the name of its defect.
BROKEN: dict[str, Callable[[], Backend]] = _backends()
